"""What `serverperf` measures: each target's name, and how to start it pinned to a core.

Three kinds of target share one interface (a context manager yielding the base URL):
the reference servers (`servers.launch.ServerProcess`), the bare apps of the same libraries
(`python -m benchmarks.serverperf.bare`, same READY line) and nginx
(`benchmarks.serverperf.nginx`). Each is checked to answer `GET /` with the same body before it
is measured, so no row compares a 404 page with a hello.
"""

from __future__ import annotations

import http.client
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO
from urllib.parse import urlsplit

from benchmarks.serverperf import bare
from benchmarks.serverperf.nginx import NginxProcess
from servers.endpoints import HELLO
from servers.launch import ChildServer, ServerProcess, ServerStartError
from servers.options import ServerName, ServerOptions
from servers.policy import KeepAlivePolicy

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


class TargetError(RuntimeError):
    """A target would not start or answered `/` wrongly; one-line message."""


def bare_process(name: str, keepalive: KeepAlivePolicy, cpu: int | None) -> ChildServer:
    """A bare app as a child process, started and stopped like a `ServerProcess`."""
    return ChildServer(bare.command(name, keepalive), f"{BARE_PREFIX}{name}", cpu=cpu)


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
def running(target: str, keepalive: KeepAlivePolicy, cpu: int | None) -> Iterator[str]:
    """Start `target` pinned to `cpu`, check its `/`, yield its base URL, always stop it."""
    if target == NGINX:
        with NginxProcess(keepalive, cpu=cpu) as nginx:
            check_hello(nginx.url)
            yield nginx.url
        return
    if target.startswith(BARE_PREFIX):
        app = bare_process(target.removeprefix(BARE_PREFIX), keepalive, cpu)
        try:
            url = app.start().url
            check_hello(url)
            yield url
        finally:
            app.stop()
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
