"""The load clients against a real uvloop server: results are valid and the mode is real.

Each client runs through `ClientConfig.command()` (exactly what the harness runs) for about a
second; the server's own counters then say how many connections it accepted. Pooled must open
one connection per user or per process-and-slot; unpooled one per request. Every client also
opens one bare TCP connection first to check the server is reachable: hence the `+ 1`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.clients.contract import ClientConfig, ClientKind, ClientResult, Mode
from benchmarks.common import REPO_ROOT
from servers.launch import ServerProcess
from servers.options import ServerName, ServerOptions, TlsVersion

CLIENT_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    options = ServerOptions(ServerName.UVLOOP, keepalive_max=0, keepalive_timeout_s=30)
    with ServerProcess(options) as proc:
        yield proc


def _run(server: ServerProcess, config: ClientConfig) -> tuple[ClientResult, int]:
    """Run one client; return its result and the connections the server accepted meanwhile."""
    before = server.counters()["connections_accepted"]
    done = subprocess.run(
        config.command(), capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr[-2000:]
    accepted = server.counters()["connections_accepted"] - before
    result = ClientResult.read(config.output)
    assert result.client == config.kind.value and result.mode == config.mode.value
    assert result.requests > 0 and result.errors == 0 and result.elapsed_s > 0
    assert result.requests_total >= result.requests
    assert 0 < result.latency_us["p50"] <= result.latency_us["p99"] <= result.latency_us["max"]
    return result, accepted


def _config(
    server: ServerProcess, tmp_path: Path, kind: ClientKind, mode: Mode, **kw
) -> ClientConfig:
    assert server.ready is not None
    defaults = {"concurrency": 1, "duration_s": 0.6, "warmup_s": 0.2}
    return ClientConfig(
        kind=kind, url=server.ready.url, mode=mode, output=tmp_path / "result.json",
        **{**defaults, **kw},
    )  # fmt: skip


# aiohttp unpooled is left out: the raw client covers unpooled concurrency, the suite stays short.
PYPERF_CASES = [
    (ClientKind.PYPERF_SEQUENTIAL, 1, Mode.POOLED),
    (ClientKind.PYPERF_SEQUENTIAL, 1, Mode.UNPOOLED),
    (ClientKind.PYPERF_CONCURRENT_RAW, 4, Mode.POOLED),
    (ClientKind.PYPERF_CONCURRENT_RAW, 4, Mode.UNPOOLED),
    (ClientKind.PYPERF_CONCURRENT_AIOHTTP, 4, Mode.POOLED),
]


@pytest.mark.parametrize(("kind", "concurrency", "mode"), PYPERF_CASES, ids=str)
def test_pyperf_clients_achieve_their_mode(
    server: ServerProcess, tmp_path: Path, kind: ClientKind, concurrency: int, mode: Mode
) -> None:
    config = _config(server, tmp_path, kind, mode, concurrency=concurrency)
    result, accepted = _run(server, config)
    pyperf_json = Path(str(config.output) + ".pyperf.json")
    assert result.artifacts == [str(pyperf_json)] and pyperf_json.is_file()
    if mode is Mode.POOLED:
        assert accepted == concurrency * result.load_processes + 1
    else:
        assert accepted == result.requests_total + 1


@pytest.mark.parametrize("mode", list(Mode), ids=str)
def test_locust_fasthttp_achieves_its_mode(
    server: ServerProcess, tmp_path: Path, mode: Mode
) -> None:
    config = _config(server, tmp_path, ClientKind.LOCUST_FASTHTTP, mode, concurrency=3,
                     duration_s=0.6, warmup_s=0.3)  # fmt: skip
    result, accepted = _run(server, config)
    # --run-time is rounded up to 1 s; the locustfile closes the window after exactly 0.6 s
    assert result.elapsed_s == pytest.approx(0.6, abs=1e-6)
    if mode is Mode.POOLED:
        assert accepted == 3 + 1
    else:
        assert abs(accepted - (result.requests_total + 1)) <= 3  # in flight at the stop


def test_locust_workers_report_every_request_to_the_master(
    server: ServerProcess, tmp_path: Path
) -> None:
    """--processes 2: the master's result holds both workers' requests, and only it writes.

    The server's own count is the reference: the requests the master reports (warm-up
    included) must be what the server served, less at most the few in flight at the stop.
    """
    config = _config(server, tmp_path, ClientKind.LOCUST_FASTHTTP, Mode.POOLED, concurrency=4,
                     duration_s=1.5, warmup_s=0.3, workers=2)  # fmt: skip
    served_before = server.counters()["requests_served"]
    result, accepted = _run(server, config)
    served = server.counters()["requests_served"] - served_before
    assert accepted == 4 + 1  # users split over the workers: still one connection each
    assert served - 8 <= result.requests_total <= served
    assert result.load_processes == 1


def test_bad_concurrency_is_one_line_and_exit_2(tmp_path: Path) -> None:
    argv = _config_for_url("http://127.0.0.1:9", tmp_path).command()
    argv[argv.index("--concurrency") + 1] = "0"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--concurrency" in done.stderr


@pytest.mark.parametrize("kind", [ClientKind.PYPERF_SEQUENTIAL, ClientKind.LOCUST_FASTHTTP])
def test_nan_duration_is_one_line_and_exit_2(tmp_path: Path, kind: ClientKind) -> None:
    argv = _config_for_url("http://127.0.0.1:9", tmp_path, kind=kind).command()
    flag = "--kab-duration" if kind.is_locust else "--duration"
    argv[argv.index(flag) + 1] = "nan"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "must be a finite number" in lines[0]


@pytest.mark.parametrize("kind", [ClientKind.PYPERF_SEQUENTIAL, ClientKind.LOCUST_FASTHTTP])
def test_unreachable_server_is_one_line_and_nonzero(tmp_path: Path, kind: ClientKind) -> None:
    config = _config_for_url(f"http://127.0.0.1:{_free_port()}", tmp_path, kind=kind)
    done = subprocess.run(config.command(), capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect" in lines[0]
    assert not config.output.exists()


def _free_port() -> int:
    """A port nobody listens on once this socket is closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config_for_url(
    url: str, tmp_path: Path, *, kind: ClientKind = ClientKind.PYPERF_CONCURRENT_RAW,
    concurrency: int = 1,
) -> ClientConfig:  # fmt: skip
    return ClientConfig(kind=kind, url=url, mode=Mode.POOLED, concurrency=concurrency,
                        duration_s=1, output=tmp_path / "result.json")  # fmt: skip


def test_connect_errors_are_counted_by_kind_not_raised() -> None:
    """Refused (or EADDRNOTAVAIL) connects become errors of their errno, and every loop counts."""
    from benchmarks.clients.pyperf_concurrent import AiohttpClient
    from benchmarks.clients.raw_client import RawClient
    from benchmarks.clients.shared import Target

    target = Target.from_url(f"http://127.0.0.1:{_free_port()}")
    for client in (RawClient(target, Mode.UNPOOLED, 3), AiohttpClient(target, Mode.POOLED, 3)):
        try:
            batch = client.run(10)
        finally:
            client.close()
        assert batch.latencies_ns == [] and batch.errors == {"ECONNREFUSED": 10}


def test_fasthttp_tls_factory_loads_no_bundle_per_connection(tmp_path: Path) -> None:
    """geventhttpclient builds a TLS context per client (one per request when unpooled): ours
    must hand back the one context, without the default bundle loaded into it each time."""
    code = """
import sys
import trustme
from geventhttpclient.connectionpool import init_ssl_context
from locustfiles import keepalive

path = sys.argv[1]
trustme.CA().cert_pem.write_to_path(path)
factory = keepalive.tls_context_factory(path)
first = init_ssl_context(factory, "/nonexistent/default-bundle.pem")
second = init_ssl_context(factory, "/nonexistent/default-bundle.pem")
print(first is second, len(first.get_ca_certs()))
"""
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "ca.pem")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-1500:]
    # The same context both times, trusting our one CA: a load of the default bundle would
    # have raised (the path does not exist) or added its certificates.
    assert done.stdout.split() == ["True", "1"], done.stdout


def test_pyperf_sequential_resume_resumes_every_new_connection(tmp_path: Path) -> None:
    """Unpooled over TLS 1.3 (tickets come after the handshake: the client takes its session
    from a connection once the response arrived): every connection but each process's first
    resumes a session, the client says how many, and the server's tls_resumed agrees (the
    harness's check). Both versions resume on every server: tests/test_tls_resume.py."""
    options = ServerOptions(ServerName.UVLOOP, tls=True, tls_version=TlsVersion.TLS13)
    with ServerProcess(options) as server:
        assert server.ready is not None and server.ready.ca_path is not None
        config = _config(server, tmp_path, ClientKind.PYPERF_SEQUENTIAL_RESUME, Mode.UNPOOLED,
                         ca_path=server.ready.ca_path, duration_s=0.4, warmup_s=0.1)  # fmt: skip
        before = server.counters()
        result, accepted = _run(server, config)
        after = server.counters()
    resumed = after["tls_resumed"] - before["tls_resumed"]
    handshakes = after["tls_handshakes"] - before["tls_handshakes"]
    assert accepted == result.requests_total + 1 == handshakes + 1
    assert result.tls_resumed == resumed == handshakes - result.load_processes
