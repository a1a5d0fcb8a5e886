"""The control listener and the accept loops under stress (issue 8 items 4 and 5), and the
control listener on a Unix socket (`--control-socket`, for servers in another network namespace).

Real server processes on real sockets. Nothing here measures time or CPU: a stuck listener
shows as a /counters request that never answers (within a generous socket timeout), a spinning
one as log lines and counters that count failures instead of episodes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from benchmarks.harness.monitor import ControlClient
from servers.accept import ACCEPT_BACKOFF_S, EPISODE_GAP_S, AcceptBackoff
from servers.control import ControlListener, _Handler
from servers.counters import Counters
from servers.launch import ReadyInfo, ServerProcess, fetch_counters, parse_ready_line
from servers.options import OptionsError, ServerName, ServerOptions, parse_args
from tests.server_pool import SERVER_NAMES

GENEROUS_S = 15.0  # socket timeouts: a healthy listener answers in milliseconds
REQUEST = b"GET /peer HTTP/1.1\r\nHost: t\r\n\r\n"
COUNTERS_REQUEST = b"GET /counters HTTP/1.1\r\nHost: t\r\n\r\n"


@dataclass(frozen=True)
class Running:
    """A started server: its READY line and pid (never None, unlike ServerProcess's)."""

    process: ServerProcess
    ready: ReadyInfo
    pid: int

    @property
    def control_address(self) -> tuple[str, int]:
        host, port = self.ready.control_url.split("://", 1)[1].rsplit(":", 1)
        return host.strip("[]"), int(port)

    def connect(self) -> socket.socket:
        return socket.create_connection((self.ready.host, self.ready.port), GENEROUS_S)


@contextlib.contextmanager
def running(options: ServerOptions, log: IO[bytes] | None = None) -> Iterator[Running]:
    with ServerProcess(options, stderr=log if log is not None else subprocess.DEVNULL) as server:
        assert server.ready is not None and server.proc is not None
        yield Running(server, server.ready, server.proc.pid)


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body (enough for these endpoints)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length: *(\d+)", head)
    assert match is not None, head
    length = int(match[1])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


# -- item 4: one client cannot block the control listener -------------------------------------


@pytest.mark.parametrize("name", SERVER_NAMES)
def test_counters_answer_past_an_idle_and_a_keepalive_control_client(name: str) -> None:
    """A keep-alive client that stays connected and a client that connects and sends nothing
    held the old single-threaded control listener forever; a third client must still be
    answered (every server shares the listener, so each is checked)."""
    with running(ServerOptions(ServerName(name))) as server:
        address = server.control_address
        with (
            socket.create_connection(address, timeout=GENEROUS_S) as keepalive,
            socket.create_connection(address, timeout=GENEROUS_S) as idle,
        ):
            keepalive.sendall(COUNTERS_REQUEST)  # HTTP/1.1, no Connection: close
            assert read_response(keepalive).startswith(b"HTTP/1.1 200 ")
            assert idle.fileno() >= 0  # connected, and it sends nothing at all
            third = fetch_counters(server.ready.control_url, timeout_s=GENEROUS_S)
            assert third["pid"] == server.pid
            keepalive.sendall(COUNTERS_REQUEST)  # the kept connection still works too
            assert read_response(keepalive).startswith(b"HTTP/1.1 200 ")


def test_control_listener_closes_a_silent_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection that sends nothing is closed after the read timeout, so silent clients do
    not pile up threads (in-process, with the timeout shortened)."""
    monkeypatch.setattr(_Handler, "timeout", 0.2)
    with socket.create_server(("127.0.0.1", 0)) as main:
        control = ControlListener(main, Counters(), "test", None)
        control.start()
        host_port = control.url.split("://", 1)[1].rsplit(":", 1)
        with socket.create_connection((host_port[0], int(host_port[1])), timeout=GENEROUS_S) as s:
            assert s.recv(1) == b""  # EOF from the server, not our timeout


# -- item 5: at the file-descriptor limit -----------------------------------------------------

FD_LIMIT = 64
EXCESS = 30  # connections beyond what the limit lets in; fewer than those that get in


def backoff_lines(text: str, which: str) -> list[str]:
    return [line for line in text.splitlines() if f"server: {which}: accept() failed" in line]


def wait_for(predicate: Callable[[], object], what: str, timeout_s: float = GENEROUS_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("name", SERVER_NAMES)
def test_descriptor_limit_backs_off_once_and_serves_the_queue(name: str, tmp_path: Path) -> None:
    """With RLIMIT_NOFILE lowered under the server, open more connections than descriptors:
    the server logs one back-off line and counts one episode (not one per failed accept, and
    no traceback), leaves the excess queued (no close without a response), and serves every one
    of them once the first connections close. The control listener queues the same way."""
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log, running(ServerOptions(ServerName(name)), log) as server:
        pid = server.pid
        _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (FD_LIMIT, hard))
        room = FD_LIMIT - len(os.listdir(f"/proc/{pid}/fd"))
        clients = [server.connect() for _ in range(room + EXCESS)]
        try:
            for sock in clients:
                sock.sendall(REQUEST)
            wait_for(lambda: select.select(clients, [], [], 0)[0], "a first response")
            wait_for(lambda: backoff_lines(log_path.read_text(), "listener"), "a back-off line")
            control = socket.create_connection(server.control_address, GENEROUS_S)
            control.sendall(COUNTERS_REQUEST)  # queued too: no descriptor to accept it with
            time.sleep(4 * ACCEPT_BACKOFF_S)  # several retries: a spinning loop logs hundreds
            served, queued = _answered_so_far(clients)
            assert len(queued) >= EXCESS, (len(served), len(queued))
            for sock in served:
                sock.close()
            for sock in queued:  # each one closed once answered frees a descriptor for the next
                reply = read_response(sock)
                assert reply.startswith(b"HTTP/1.1 200 "), f"queued connection got {reply[:60]!r}"
                sock.close()
            assert read_response(control).startswith(b"HTTP/1.1 200 ")
            control.close()
            # A server counts a request once its response is written: maybe just after we read it.
            wait_for(lambda: all_counted(server, len(clients)), "every request counted")
            counters = fetch_counters(server.ready.control_url, GENEROUS_S)
        finally:
            for sock in clients:
                sock.close()
    text = log_path.read_text()
    assert len(text.splitlines()) <= 6, text[-2000:]  # no line per failed accept, no traceback
    episodes = backoff_lines(text, "listener")
    assert 1 <= len(episodes) <= 3, episodes  # one per episode; a slow machine may split one
    assert counters["accept_backoffs"] == len(episodes), counters
    assert 1 <= len(backoff_lines(text, "control listener")) <= 3, text  # it queued ours too
    assert counters["requests_served"] == len(clients), counters


def all_counted(server: Running, requests: int) -> bool:
    return fetch_counters(server.ready.control_url, GENEROUS_S)["requests_served"] >= requests


def _answered_so_far(
    clients: list[socket.socket],
) -> tuple[list[socket.socket], list[socket.socket]]:
    """Split the connections into answered (a 200 read) and still waiting; a connection that
    was closed without a response fails the test (libuv's way of meeting EMFILE)."""
    served: list[socket.socket] = []
    readable, _, _ = select.select(clients, [], [], 0)
    for sock in readable:
        reply = read_response(sock)
        assert reply.startswith(b"HTTP/1.1 200 "), f"closed without a response: {reply[:60]!r}"
        served.append(sock)
    return served, [sock for sock in clients if sock not in served]


# -- --control-socket: the control listener on a Unix socket ----------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a Unix socket path is at most 107 bytes, and pytest's
    tmp_path under xdist can come close."""
    path = Path(tempfile.mkdtemp(prefix="kab-ctl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("name", SERVER_NAMES)
def test_control_socket_serves_counters_and_is_removed_at_exit(name: str, short_dir: Path) -> None:
    path = short_dir / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a socket left by a server that was killed: nobody accepts on it
    stale.close()
    with running(ServerOptions(ServerName(name), control_socket=path)) as server:
        assert server.ready.control_url == f"unix:{path}"
        assert path.is_socket()
        with server.connect() as s:
            s.sendall(REQUEST)
            assert read_response(s).startswith(b"HTTP/1.1 200 ")
        counters = server.process.counters()
        assert counters["server"] == name and counters["connections_accepted"] == 1
        monitor = ControlClient(server.ready.control_url)  # the harness's persistent client
        try:
            assert monitor.counters()["pid"] == server.pid
            assert monitor.counters()["connections_accepted"] == 1  # and again on one connection
        finally:
            monitor.close()
        assert server.process.stop() == 0
    assert not path.exists()


def test_control_socket_in_use_or_not_a_socket_is_one_line(short_dir: Path) -> None:
    """A live control socket is not taken over, a regular file is not deleted: one line, exit 2."""
    regular = short_dir / "file"
    regular.write_text("keep me")
    live = short_dir / "live.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as holder:
        holder.bind(str(live))
        holder.listen()
        for path, words in ((regular, "not a socket"), (live, "in use")):
            done = subprocess.run(
                [sys.executable, "-m", "servers", "stdlib", "--control-socket", str(path)],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 2, done
            assert len(done.stderr.splitlines()) == 1 and words in done.stderr, done.stderr
            assert "READY" not in done.stdout
    assert regular.read_text() == "keep me"


def test_control_socket_options_round_trip_and_validate(short_dir: Path) -> None:
    options = ServerOptions(ServerName.UVLOOP, control_socket=short_dir / "c.sock")
    assert "--control-socket" in options.to_argv()
    assert parse_args(options.to_argv()) == options
    with pytest.raises(OptionsError, match="too long"):
        ServerOptions(ServerName.STDLIB, control_socket=short_dir / ("x" * 120))
    with pytest.raises(OptionsError, match="no such directory"):
        ServerOptions(ServerName.STDLIB, control_socket=short_dir / "missing" / "c.sock")


def test_ready_line_with_a_unix_control_url_parses() -> None:
    info = parse_ready_line("READY http://127.0.0.1:1 control=unix:/tmp/a%20b.sock pid=3 server=x")
    assert info.control_url == "unix:/tmp/a%20b.sock"


# -- the episode logic, on a fake clock -------------------------------------------------------


def test_backoff_counts_and_logs_one_line_per_episode(capsys: pytest.CaptureFixture[str]) -> None:
    now = [100.0]
    counted: list[int] = []
    backoff = AcceptBackoff("x server: listener", on_episode=lambda: counted.append(1),
                            clock=lambda: now[0])  # fmt: skip
    emfile = OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    for _ in range(20):  # 5 s of retries, ACCEPT_BACKOFF_S apart: one episode
        assert backoff.must_pause(emfile)
        now[0] += ACCEPT_BACKOFF_S
    now[0] += 2 * EPISODE_GAP_S  # descriptors were free for a while: the next failure is new
    assert backoff.must_pause(OSError(errno.ENFILE, os.strerror(errno.ENFILE)))
    assert not backoff.must_pause(OSError(errno.ECONNABORTED, "aborted"))  # skipped, no pause
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 == len(counted) == backoff.episodes, lines
    assert "(EMFILE)" in lines[0] and "episode 1" in lines[0]
    assert "(ENFILE)" in lines[1] and "episode 2" in lines[1]
