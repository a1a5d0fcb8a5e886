"""What `serverperf` measures: each target's name, and how to start it pinned to a core.

Three kinds of target share one interface (a context manager yielding the base URL):
the reference servers (`servers.launch.ServerProcess`), the bare apps of the same libraries
(`python -m benchmarks.serverperf.bare`, same READY line) and nginx
(`benchmarks.serverperf.nginx`). Each is checked to answer `GET /` with the same body before it
is measured, so no row compares a 404 page with a hello.
"""

from __future__ import annotations

import http.client
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlsplit

from benchmarks.serverperf.nginx import NginxProcess
from servers.endpoints import HELLO
from servers.launch import (
    ReadyInfo,
    ServerProcess,
    ServerStartError,
    parse_ready_line,
    terminate,
)
from servers.options import REFERENCE_SERVERS, ServerName, ServerOptions

OUR_SERVERS = tuple(n.value for n in REFERENCE_SERVERS)  # stdlib, aiohttp, uvloop
BARE_PREFIX = "bare-"
NGINX = "nginx"
ALL_TARGETS = (
    NGINX,
    "uvloop",
    "bare-uvloop",
    "aiohttp",
    "bare-aiohttp",
    "stdlib",
    "bare-stdlib",
)  # run order: each server next to the reference it is compared with
READY_TIMEOUT_S = 20.0


class TargetError(RuntimeError):
    """A target would not start or answered `/` wrongly; one-line message."""


@dataclass(frozen=True)
class KeepAlive:
    """The keep-alive policy every target gets, so no row wins by a different setting."""

    timeout_s: float = 5.0
    max_requests: int = 0  # 0 = unlimited


class BareProcess:
    """A bare app as a child process, stopped like a `ServerProcess`."""

    def __init__(self, name: str, keepalive: KeepAlive, cpu: int | None) -> None:
        self.name = name
        self.command = [
            sys.executable, "-m", "benchmarks.serverperf.bare", name,
            "--keepalive-timeout", f"{keepalive.timeout_s:g}",
            "--keepalive-max", str(keepalive.max_requests),
        ]  # fmt: skip
        self.cpu = cpu
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> ReadyInfo:
        cpu = self.cpu
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
        )
        return parse_ready_line(self._first_line())

    def _first_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if select.select([self.proc.stdout], [], [], 0.1)[0]:
                line = self.proc.stdout.readline()
                if line:
                    return line
            if self.proc.poll() is not None:
                raise TargetError(f"bare-{self.name} exited with status {self.proc.returncode}")
        raise TargetError(f"bare-{self.name} printed no READY line in {READY_TIMEOUT_S:g} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc)


def check_hello(url: str) -> None:
    """One `GET /` on a fresh connection: status 200 and exactly our HELLO body."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise TargetError(f"GET {url}/ failed: {exc}") from None
    finally:
        conn.close()
    if response.status != 200 or body != HELLO:
        raise TargetError(f"GET {url}/ answered {response.status} {body[:40]!r}, not the hello")


@contextmanager
def running(target: str, keepalive: KeepAlive, cpu: int | None) -> Iterator[str]:
    """Start `target` pinned to `cpu`, check its `/`, yield its base URL, always stop it."""
    if target == NGINX:
        with NginxProcess(keepalive.timeout_s, keepalive.max_requests, cpu=cpu) as nginx:
            check_hello(nginx.url)
            yield nginx.url
        return
    if target.startswith(BARE_PREFIX):
        bare = BareProcess(target.removeprefix(BARE_PREFIX), keepalive, cpu)
        try:
            url = bare.start().url
            check_hello(url)
            yield url
        finally:
            bare.stop()
        return
    options = ServerOptions(
        ServerName(target),
        keepalive_timeout_s=keepalive.timeout_s,
        keepalive_max=keepalive.max_requests,
    )
    with tempfile.TemporaryFile() as stderr:
        server = ServerProcess(options, stderr=stderr, cpu=cpu)
        try:
            server.start()
        except ServerStartError as exc:
            server.stop()
            raise TargetError(f"{exc}: {_last_line(stderr)}") from None
        try:
            assert server.ready is not None
            check_hello(server.ready.url)
            yield server.ready.url
        finally:
            server.stop()


def _last_line(fh: IO[bytes]) -> str:
    """The last stderr line of a server that failed to start (usually the exception)."""
    fh.seek(0)
    lines = fh.read().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no stderr)"
