"""`run --target URL` (issue 13): the clients against a server the harness did not start.

A reference server started here (port 0, READY read back) stands in for "your server"; the
harness gets only its URL (and pid), so every figure comes from the clients and the kernel.
nginx, where installed, is the same check against a server nobody here wrote. The same over
https (the server's CA passed to every client, or no verification), and `--target-command`:
the server run by the harness in the delay line's server namespace (root and /dev/net/tun).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.harness.cli import main
from benchmarks.net import netns
from benchmarks.records.schema import ResultRow, read_rows
from servers import launch
from tests.test_net import needs_line

QUICK_CELL = ["--quick", "--duration", "0.6", "--warmup", "0.2", "--concurrency", "4"]
CLIENT = ["--clients", "pyperf-concurrent-raw"]


def _start(argv: list[str]) -> Iterator[tuple[str, int]]:
    for url, pid, _ in _start_ready(argv):
        yield url, pid


def _start_ready(argv: list[str]) -> Iterator[tuple[str, int, Path | None]]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        ready = launch.read_ready(proc, argv[3])
        yield ready.url, proc.pid, ready.ca_path
    finally:
        launch.terminate(proc, group=True)


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[str, int, Path | None]]:
    yield from _start_ready([sys.executable, "-m", "servers", "uvloop", "--tls", "--port", "0"])


@pytest.fixture(scope="module")
def uvloop_server() -> Iterator[tuple[str, int]]:
    yield from _start([sys.executable, "-m", "servers", "uvloop", "--port", "0"])


@pytest.fixture(scope="module")
def nginx_server() -> Iterator[tuple[str, int]]:
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    yield from _start([sys.executable, "-m", "servers", "nginx", "--port", "0"])


def _rows(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[ResultRow]:
    rc = main([*argv, "--results-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return read_rows(Path(out.strip().splitlines()[-1]))


def _check(rows: list[ResultRow], url: str, cpu: bool) -> None:
    assert {r.key.mode for r in rows} == {"pooled", "unpooled"}
    for r in rows:
        assert (r.status, r.key.server, r.key.target_url) == ("ok", "target", url), r.note
        # Pooled reused, unpooled did not, by the client's count. The peak comes from samples of
        # /proc/net/tcp five times a second: on a crowded machine a short window may miss the
        # moments with every connection open (an honest "at most N open at once"), never the
        # count of connections, which is what the reuse check is about.
        sampled_low = "connections were open at once" in r.note
        assert r.valid == 1 or sampled_low, r.note
        assert r.requests > 0 and r.connections_opened >= 4
        # Pooled connections stay open for a whole load window, and the monitor samples every
        # window (densely for its first second, from the moment its process appears); an
        # unpooled connection lives for microseconds, so any sample may see none open (peak 0).
        assert r.peak_open_connections >= 1 or r.key.mode == "unpooled", r.note
        assert "connections counted by the client" in r.note
        assert (r.server_cpu_s > 0) if cpu else (r.server_cpu_s != r.server_cpu_s)  # NaN: blank
    pooled, unpooled = sorted(rows, key=lambda r: r.key.mode)
    assert pooled.requests_per_connection > 5 and unpooled.requests_per_connection <= 1.1


def test_target_pooled_and_unpooled(
    uvloop_server: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, pid = uvloop_server
    rows = _rows([*QUICK_CELL, *CLIENT, "--target", url + "/", "--target-pid", str(pid)],
                 tmp_path, capsys)  # fmt: skip
    _check(rows, url + "/", cpu=True)


def test_target_without_pid_leaves_cpu_blank(
    uvloop_server: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = uvloop_server
    rows = _rows([*QUICK_CELL, *CLIENT, "--target", url], tmp_path, capsys)
    _check(rows, url, cpu=False)
    csv_text = next(tmp_path.rglob("*.csv")).read_text()
    assert ",," in csv_text  # the blank CPU fields


def test_target_nginx(
    nginx_server: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, pid = nginx_server
    rows = _rows([*QUICK_CELL, *CLIENT, "--target", url, "--target-pid", str(pid)],
                 tmp_path, capsys)  # fmt: skip
    _check(rows, url, cpu=True)


@pytest.mark.parametrize(
    "argv",
    [
        ["--target", "http://192.0.2.1:8080/"],
        ["--target", "http://example.com/"],
        ["--target", "http://127.0.0.1:1/", "--servers", "uvloop"],
        ["--target-pid", "1"],
    ],
)
def test_bad_targets_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*QUICK_CELL, *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "loopback" in err or "does not apply" in err or "needs --target" in err


def test_unreachable_target_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*QUICK_CELL, "--target", "http://127.0.0.1:1/"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "did not answer" in err


def test_https_target_verified_with_its_ca(
    tls_server: tuple[str, int, Path | None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, pid, ca = tls_server
    assert url.startswith("https://") and ca is not None
    rows = _rows([*QUICK_CELL, *CLIENT, "--target", url, "--target-pid", str(pid),
                  "--target-ca", str(ca)], tmp_path, capsys)  # fmt: skip
    _check(rows, url, cpu=True)
    assert {r.key.tls for r in rows} == {"1.3"}  # the version the clients negotiated


def test_https_target_insecure_reaches_both_locust_clients(
    tls_server: tuple[str, int, Path | None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unpooled: a TLS context per connection, where each client's insecure path differs."""
    url, _, _ = tls_server
    rows = _rows([*QUICK_CELL, "--clients", "locust-fasthttp,locust-requests", "--modes",
                  "unpooled", "--target", url, "--target-insecure"], tmp_path, capsys)  # fmt: skip
    assert {r.key.client for r in rows} == {"locust-fasthttp", "locust-requests"}
    for r in rows:
        # Handshakes that completed without a verification error are what this is about; on a
        # crowded machine a 0.6 s window may close before Locust's users got a request through.
        assert (r.status, r.key.tls, r.errors) == ("ok", "1.3", 0), r.note
        assert r.connections_opened_run and r.connections_opened_run >= r.requests, r.note


def test_https_target_without_its_ca_is_one_line(
    tls_server: tuple[str, int, Path | None], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _, _ = tls_server
    try:  # refused while the arguments are read (the handshake that finds the row's tls)
        code = main([*QUICK_CELL, "--target", url])
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "certificate not verified" in err, err
    assert "--target-ca" in err and "--target-insecure" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "http://127.0.0.1:1/", "--target-insecure"],
         "--target-insecure is for an https:// target"),
        (["--target", "https://127.0.0.1:1/", "--target-ca", "/nonexistent.pem"],
         "--target-ca: no such file: /nonexistent.pem"),
        (["--target-ca", "/etc/hostname"], "--target-ca needs --target (or --target-command)"),
        (["--target-command", "uvloop"], "--target-command runs the server behind the delay line"),
        (["--target-command", "uvloop", "--rtt", "20", "--target-pid", "1"],
         "--target-pid is for --target URL"),
        (["--target-command", "uvloop --port 80", "--rtt", "20"],
         "--target-command: the line chooses the server's --port"),
        (["--target-command", "nginx -c /etc/nginx/nginx.conf", "--rtt", "20"],
         "--target-command: 'nginx' is `python -m servers nginx`, which does not take -c"),
        (["--target-command", "'unclosed", "--rtt", "20"],
         "--target-command: No closing quotation"),
        (["--target-command", "uvloop", "--target", "http://127.0.0.1:1/"],
         "--target and --target-command: give one"),
    ],
)  # fmt: skip
def test_bad_target_flags_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*QUICK_CELL, *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err, err


def _no_namespaces_left() -> bool:
    """The lines this process made are gone (namespaces `kab<our pid>...`)."""
    mine = re.compile(rf"^{netns.PREFIX}{os.getpid()}[a-z]?(s|c\d+)$")
    return not any(mine.match(p.name) for p in netns.NETNS_DIR.glob("*"))


def _check_command(rows: list[ResultRow], command: str) -> None:
    """Connections from the server namespace's kernel, the command's CPU, the line's packets."""
    assert {r.key.mode for r in rows} == {"pooled", "unpooled"}
    for r in rows:
        assert (r.status, r.key.server, r.key.target_url) == ("ok", "target", command), r.note
        assert r.key.rtt_ms == 20.0 and r.link_packets and r.link_packets > 0, r.note
        passive = re.search(r"PassiveOpens=(\d+)", r.note)
        assert passive is not None and r.connections_opened_run == int(passive.group(1)), r.note
        assert "connections accepted by its kernel" in r.note
        # measured, not blank (NaN); a few hundred requests may cost nginx under one 4 ms tick
        assert r.server_cpu_s >= 0, r.note
        assert r.latency_p50_ms >= 20.0  # a request takes at least the round trip
        sampled_low = "connections were open at once" in r.note
        assert r.valid == 1 or sampled_low, r.note
    pooled, unpooled = sorted(rows, key=lambda r: r.key.mode)
    assert pooled.requests_per_connection > 2 and unpooled.requests_per_connection <= 1.1
    assert _no_namespaces_left()


LINE_CELL = [*QUICK_CELL, *CLIENT, "--rtt", "20"]


@needs_line
def test_target_command_behind_the_delay_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Debian's nginx with a config of its own, a command nobody here wrote (`{port}` is only in
    our argv, so the config listens on the port the harness is told: --target-port); without
    nginx, a reference server by name (its READY gives the port). One of them: 8 s a run."""
    nginx = shutil.which("nginx")
    if nginx is None:
        command, port = "uvloop --keepalive-max 0", "8080"
    else:
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            f"worker_processes 1; daemon off; pid {tmp_path}/nginx.pid; error_log stderr;\n"
            "events { worker_connections 256; }\n"
            f"http {{ access_log off; client_body_temp_path {tmp_path}/body;\n"
            "  server { listen 8090; location / { return 200 ok; } } }\n"
        )
        command, port = f"{nginx} -p {tmp_path} -c {conf}", "8090"
    rows = _rows([*LINE_CELL, "--target-command", command, "--target-port", port],
                 tmp_path / "results", capsys)  # fmt: skip
    _check_command(rows, f"command: {command}")
