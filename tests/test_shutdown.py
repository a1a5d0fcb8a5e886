"""Stopping a server: a request being handled is answered (`Connection: close`), idle
connections close at once, the exit status is 0. The same on all three servers."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servers.launch import parse_ready_line
from servers.options import ServerName, ServerOptions
from tests.server_pool import REPO, SERVER_NAMES
from tests.wire_client import End, G, RawConnection

# stdlib also over TLS: it ends an idle TLS connection by shutting the plain socket's read side.
CASES = [pytest.param(name, False, id=name) for name in SERVER_NAMES]
CASES.append(pytest.param("stdlib", True, id="stdlib-tls"))


@pytest.mark.parametrize(("name", "tls"), CASES)
def test_sigterm_answers_the_request_in_flight_then_exits_0(
    name: str, tls: bool, tmp_path: Path
) -> None:
    options = ServerOptions(ServerName(name), keepalive_timeout_s=30, tls=tls, log_connections=True)
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "servers", *options.to_argv()],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        assert proc.stdout is not None
        info = parse_ready_line(proc.stdout.readline())
        idle = RawConnection.open("127.0.0.1", info.port, ca_path=info.ca_path, timeout_s=10)
        idle.send(G("/"))
        assert idle.response().status == 200
        busy = RawConnection.open("127.0.0.1", info.port, ca_path=info.ca_path, timeout_s=10)
        busy.send(G("/sleep?ms=800"))
        _wait_for_log(log_path, "GET /sleep?ms=800")  # dispatched: the handler is sleeping now
        proc.send_signal(signal.SIGTERM)
        ending = idle.wait_end(2.5)
        assert ending.kind is not End.OPEN and ending.data == b"", "idle connection kept open"
        resp = busy.response(timeout_s=5)
        assert (resp.status, resp.body) == (200, b"slept\n"), resp
        assert resp.connection_tokens == frozenset({"close"}), resp.headers
        assert "keep-alive" not in {k.lower() for k, _ in resp.headers}, resp.headers
        assert busy.wait_end(3.0).kind is not End.OPEN, "no close after the last answer"
        code = proc.wait(timeout=8)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)
    err = log_path.read_text()
    assert code == 0, f"exit status {code}; stderr: {err[-800:]}"
    assert "Traceback" not in err, err[-2000:]


def _wait_for_log(path: Path, fragment: str, timeout_s: float = 10.0) -> None:
    """Until the server's --log-connections line for a request appears (logged at dispatch)."""
    deadline = time.monotonic() + timeout_s
    while fragment not in path.read_text():
        if time.monotonic() > deadline:
            pytest.fail(f"the server never logged {fragment!r}")
        time.sleep(0.02)
