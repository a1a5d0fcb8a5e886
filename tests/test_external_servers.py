"""nginx and Node behind `python -m servers` (servers/nginx_server.py, servers/node_server.py).

Quick smoke tests of the wrappers: they start, print READY, serve, count, and stop leaving no
process or file behind. How nginx and Node behave against the spec is `make conformance-report`,
not a gate (and not part of `make test`). Each test skips, saying how to install, where the
binary is missing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from benchmarks.harness import cli as harness_cli
from benchmarks.harness.config import build
from benchmarks.harness.procs import ServerCpu
from servers import __main__ as entry
from servers import external
from servers import nginx_conf as conf
from servers.endpoints import HELLO
from servers.launch import ReadyInfo, ServerProcess
from servers.nginx_server import parse_stub_status
from servers.options import ServerName, ServerOptions, TlsVersion
from tests.wire_client import G, RawConnection

REPO = Path(__file__).resolve().parent.parent


def _installed(name: str) -> Any:
    why = external.missing_reason(ServerName(name))
    return pytest.param(name, marks=pytest.mark.skipif(why is not None, reason=why or ""))


FOREIGN = [_installed("nginx"), _installed("node")]


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _gone(procs: list[psutil.Process]) -> bool:
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.Error:
            continue
    return True


def _workdirs(procs: list[psutil.Process], name: str) -> set[Path]:
    """The wrapper's private directories, read from the command lines (nginx's -p, node's JSON):
    other runs on this machine may have their own at the same time."""
    pattern = re.compile(r"(/[^\s\"']*" + re.escape(external.workdir_prefix(name)) + r"[^/\s\"']+)")
    return {Path(found) for p in procs for arg in p.cmdline() for found in pattern.findall(arg)}


def _wait_counters(server: ServerProcess, requests: int) -> dict[str, Any]:
    """Counters once `requests_served` reached `requests` (counted just after the response)."""
    deadline = time.monotonic() + 5
    while True:
        snap = server.counters()
        if snap["requests_served"] >= requests or time.monotonic() > deadline:
            return snap
        time.sleep(0.02)


@pytest.mark.parametrize("name", FOREIGN)
def test_start_serve_count_and_stop_leaving_nothing(name: str, tmp_path: Path) -> None:
    options = ServerOptions(
        name=ServerName(name), keepalive_timeout_s=1.7, keepalive_max=3, log_connections=True
    )
    log_path = tmp_path / "stderr.log"
    # Other workers start nginx and Node too: only the directory this server made must go.
    workdirs = set(Path("/tmp").glob(external.workdir_prefix(name) + "*"))
    with log_path.open("wb") as log:
        server = ServerProcess(options, stderr=log)
        ready = server.start()
        ours = set(Path("/tmp").glob(external.workdir_prefix(name) + "*")) - workdirs
        try:
            assert server.proc is not None
            assert (ready.server, ready.pid) == (name, server.proc.pid)
            before = server.counters()
            assert (before["server"], before["pid"]) == (name, server.proc.pid)
            with RawConnection.open(ready.host, ready.port) as conn:
                conn.send(G("/") + G("/peer") + G("/bytes/5"))
                first, second, third = conn.response(), conn.response(), conn.response()
                conn.expect_graceful_close()  # N = 3: the third response ends the connection
            assert (first.status, first.body) == (200, HELLO)
            assert json.loads(second.body)["request_number"] == 2
            assert (third.status, third.body) == (200, b"xxxxx")
            assert "close" in third.connection_tokens
            after = _wait_counters(server, before["requests_served"] + 3)
            assert after["requests_served"] - before["requests_served"] == 3
            assert after["connections_accepted"] - before["connections_accepted"] == 1
            assert after["connections_peak_open"] >= 1
            procs = _tree(server.proc.pid)
        finally:
            status = server.stop()
    assert status == 0
    assert _gone(procs), [p.pid for p in procs]
    text = log_path.read_text()
    assert "req=2 GET /peer connection=-" in text, text[-500:]
    assert not any(d.exists() for d in ours), ours


@pytest.mark.parametrize("name", FOREIGN)
def test_tls_with_a_generated_certificate(name: str) -> None:
    options = ServerOptions(name=ServerName(name), tls=True)
    with ServerProcess(options) as server:
        ready = server.ready
        assert isinstance(ready, ReadyInfo) and ready.url.startswith("https://")
        assert ready.ca_path is not None and ready.ca_path.is_file()
        with RawConnection.open(ready.host, ready.port, ca_path=ready.ca_path) as conn:
            conn.send(G("/"))
            assert conn.response().body == HELLO
    assert not ready.ca_path.exists()  # removed with the work directory


def test_nginx_children_are_the_servers_cpu_and_die_with_a_killed_wrapper() -> None:
    if external.missing_reason(ServerName.NGINX):
        pytest.skip(external.missing_reason(ServerName.NGINX) or "")
    server = ServerProcess(ServerOptions(name=ServerName.NGINX))
    try:
        server.start()
        assert server.proc is not None
        cpu = ServerCpu(psutil.Process(server.proc.pid))
        assert [c.name() for c in cpu.children] == ["nginx", "nginx"]  # master and worker
        assert cpu.cpu_s() >= 0
        procs = _tree(server.proc.pid)
        (workdir,) = _workdirs(procs, "nginx")
        os.kill(server.proc.pid, signal.SIGKILL)  # no chance to stop nginx itself
        server.proc.wait()
        deadline = time.monotonic() + 5
        while not _gone(procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(procs), "nginx outlived its wrapper"
    finally:
        server.stop()
    assert workdir.is_dir()
    external.sweep_stale("nginx")  # what the next start does with the dead run's directory
    assert not workdir.exists()


def test_raw_client_closes_when_node_says_close_and_keeps_the_socket() -> None:
    """Node answers its maxRequestsPerSocket-th request with `Connection: close` but leaves the
    socket open for the client to close (RFC 9112 section 9.6: the client must). The pooled raw
    client used to wait for the server's FIN: T + 1 s per connection, closed as idle_timeout."""
    if external.missing_reason(ServerName.NODE):
        pytest.skip(external.missing_reason(ServerName.NODE) or "")
    from benchmarks.clients.contract import Mode
    from benchmarks.clients.raw_client import RawClient
    from benchmarks.clients.shared import Target

    options = ServerOptions(name=ServerName.NODE, keepalive_timeout_s=1, keepalive_max=2)
    with ServerProcess(options) as server:
        assert server.ready is not None
        client = RawClient(Target.from_url(server.ready.url), Mode.POOLED, 1)
        try:
            batch = client.run(6)
        finally:
            client.close()
        assert len(batch.latencies_ns) == 6 and not batch.errors
        deadline = time.monotonic() + 5
        while server.counters()["connections_open"] and time.monotonic() < deadline:
            time.sleep(0.05)
        counters = server.counters()
    assert counters["connections_accepted"] == 3
    assert counters["closed"] == {"client_closed": 3}, counters["closed"]


@pytest.mark.parametrize("name", ["nginx", "node"])
def test_not_installed_is_one_line_exit_2(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(external, "find_binary", lambda server: None)
    assert entry.main([name]) == 2
    hint = external.INSTALL_HINTS[ServerName(name)]
    assert capsys.readouterr().err == (
        f"python -m servers: error: {name} is not installed ({hint})\n"
    )


def test_missing_binary_message_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(external.shutil, "which", lambda name: None)
    assert external.missing_reason(ServerName.NGINX) == (
        "nginx is not installed (apt-get install nginx)"
    )
    assert external.missing_reason(ServerName.NODE) == (
        "node is not installed (apt-get install nodejs)"
    )
    assert external.missing_reason(ServerName.UVLOOP) is None


def test_harness_skips_cells_of_missing_servers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        harness_cli, "missing_reason", lambda s: "nginx is not installed (apt-get install nginx)"
        if s is ServerName.NGINX else None,
    )  # fmt: skip
    cells = build(quick=True, servers="nginx,uvloop").cells()
    kept = harness_cli.skip_uninstalled(cells)
    assert {c.server for c in kept} == {ServerName.UVLOOP}
    assert [c.index for c in kept] == list(range(1, len(kept) + 1))
    err = capsys.readouterr().err
    assert err == "skipping the nginx cells: nginx is not installed (apt-get install nginx)\n"


def test_cli_lists_nginx_and_node_but_defaults_to_ours() -> None:
    config = build(quick=True)
    assert config.values("server") == (ServerName.STDLIB, ServerName.AIOHTTP, ServerName.UVLOOP)
    named = build(quick=True, servers="nginx,node").values("server")
    assert named == (ServerName.NGINX, ServerName.NODE)


# -- nginx's configuration and what the wrapper reads back ------------------------------------


def test_keepalive_directive_in_nginx_units() -> None:
    assert conf.keepalive_directive(1.7) == "keepalive_timeout 1700ms 1;"
    assert conf.keepalive_directive(5) == "keepalive_timeout 5000ms 5;"
    assert conf.keepalive_directive(0.5) == "keepalive_timeout 500ms 0;"  # no Keep-Alive header
    assert conf.keepalive_directive(0) == "keepalive_timeout 0;"  # keep-alive off
    assert conf.milliseconds(0.0001) == "1ms"


def test_config_has_the_settings_and_endpoints(tmp_path: Path) -> None:
    spec = conf.NginxSpec(tmp_path, "[::1]:4311", 1.7, 13, 2.5, "127.0.0.1:9", None, None)
    text = conf.nginx_config(spec)
    for line in (
        "listen [::1]:4311 backlog=1024;", "keepalive_requests 13;",
        "client_header_timeout 2500ms;", '"13" 1;', "location = /status/599",
        'return 200 "Hello, keep-alive!\\n";', "proxy_pass http://127.0.0.1:9;",
    ):  # fmt: skip
        assert line in text
    unlimited = conf.nginx_config(conf.NginxSpec(tmp_path, "127.0.0.1:1", 5, 0, 5, "x:1"))
    assert f"keepalive_requests {conf.UNLIMITED_REQUESTS};" in unlimited
    assert " ssl " not in unlimited


def test_quoted_refuses_a_literal_dollar() -> None:
    assert conf.quoted('a "b"\n') == '"a \\"b\\"\\n"'
    with pytest.raises(ValueError, match="literal"):
        conf.quoted("$5")


def test_log_line_becomes_the_log_connections_line() -> None:
    line = conf.parse_log_line("3\t17\t2\t40244\tPOST /bytes/3?a=1 HTTP/1.1\tkeep-alive\t-\t1")
    assert line is not None and line.last and line.active == 3
    assert line.log_connections_line() == (
        "port=40244 conn=17 req=2 POST /bytes/3?a=1 connection=keep-alive"
    )
    assert conf.parse_log_line("garbage") is None


def test_stub_status_parsed() -> None:
    page = (
        "Active connections: 3 \nserver accepts handled requests\n 10 10 21 \n"
        "Reading: 0 Writing: 1 Waiting: 2 \n"
    )
    assert parse_stub_status(page) == {"active": 3, "accepts": 10, "handled": 10, "requests": 21}
    with pytest.raises(ValueError):
        parse_stub_status("<html>")


def test_python_m_servers_help_names_them() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "servers", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert "nginx" in done.stdout and "node" in done.stdout


@pytest.mark.parametrize("name", FOREIGN)
def test_tls_version_pinned_and_resumptions_counted(name: str) -> None:
    """--tls-version 1.2: a 1.3-only client is refused; a 1.2 client that offers the session of
    its previous connection resumes it (session ID or ticket), and /counters says so."""
    from tests.test_tls_resume import client_context, get_once

    options = ServerOptions(ServerName(name), tls=True, tls_version=TlsVersion.TLS12)
    with ServerProcess(options) as proc:
        assert proc.ready is not None
        # What get_once and client_context read of a tests.server_pool.Server.
        server: Any = SimpleNamespace(host="127.0.0.1", port=proc.ready.port,
                                      ca_path=proc.ready.ca_path)  # fmt: skip
        with pytest.raises(ssl.SSLError):
            get_once(server, client_context(server, TlsVersion.TLS13))
        ctx = client_context(server, TlsVersion.TLS12)
        session, reused, alpn = get_once(server, ctx)
        assert not reused and alpn == "http/1.1"
        _, reused, _ = get_once(server, ctx, session)
        assert reused
        deadline = time.monotonic() + 3
        while (counters := proc.counters())["tls_resumed"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # nginx's access log is read as it grows
    assert (counters["tls_handshakes"], counters["tls_resumed"]) == (2, 1), counters
