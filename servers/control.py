"""The control listener: counters as JSON on a socket of its own.

It is a separate socket served by separate threads, so reading the counters during a load test
neither adds connections or requests to what is counted nor waits behind the load in the
server's own accept queue or event loop.

    GET /counters  -> {"server": ..., "pid": ..., "connections_accepted": ..., ...}

It listens on TCP, on the main listener's address (any free port), or with `--control-socket
PATH` on a Unix socket at PATH: a path in the file system is reachable from every network
namespace, so a harness in the root namespace can read a server that runs in another one.

Every connection has a thread of its own and a read timeout (CONTROL_READ_TIMEOUT_S), so a
client that connects and sends nothing, or keeps its connection alive between polls (the
harness's monitor does, to add no TCP opens to a cell), never delays another client. Accept
failures (the descriptor limit) back off as on the servers' own listeners (`servers.accept`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import socketserver
import stat
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

from servers.accept import AcceptBackoff
from servers.counters import Counters

# A read that waits longer than this ends the connection. The harness polls every 0.2 s over
# one connection (and reconnects once if it was closed), so it never waits this long.
CONTROL_READ_TIMEOUT_S = 5.0
UNIX_URL_PREFIX = "unix:"  # control=unix:/path on the READY line; servers.launch reads it


class _Handler(BaseHTTPRequestHandler):
    """GET /counters; anything else 404. Keep-alive (HTTP/1.1), one thread per connection."""

    protocol_version = "HTTP/1.1"
    timeout = CONTROL_READ_TIMEOUT_S  # StreamRequestHandler sets it on the socket
    server: _Serving

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?")[0] != "/counters":
            self.send_error(404)
            return
        payload = {"server": self.server.server_label, "pid": os.getpid()}
        body = json.dumps({**payload, **self.server.counters.snapshot()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        """A Unix socket's peer has no address (http.server would index an empty string)."""
        return str(self.client_address[0]) if self.client_address else "unix"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Silent: stderr belongs to --log-connections."""


class _Serving(socketserver.ThreadingMixIn, socketserver.BaseServer):
    """A thread per connection (daemons: an open connection never delays exit), and accept
    failures that back off instead of spinning (socketserver retries at once, and a listener
    that stays readable at EMFILE makes its select loop spin)."""

    daemon_threads = True
    counters: Counters
    server_label: str
    backoff: AcceptBackoff

    def get_request(self) -> tuple[Any, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            self.backoff.pause_thread(exc)
            raise  # socketserver ignores it and selects again


class _TCPControl(_Serving, HTTPServer):
    def __init__(self, address: tuple[str, int], family: int) -> None:
        self.address_family = family  # HTTPServer binds AF_INET unless told otherwise
        super().__init__(address, _Handler)


class _UnixControl(_Serving, socketserver.UnixStreamServer):
    def __init__(self, path: Path) -> None:
        super().__init__(str(path), _Handler)


class ControlListener:
    """The bound control socket (bound at start-up, so that errors come before READY), served
    from `start()` on; `url` is what the READY line says after `control=`: `http://host:port`
    or `unix:/path` (percent-encoded)."""

    def __init__(
        self, listener: socket.socket, counters: Counters, server_name: str, path: Path | None
    ) -> None:
        """TCP on the main listener's address (the one it really bound: a name like
        `localhost` resolved once, so both are reachable the same way), or a Unix socket."""
        self._server: _Serving
        if path is None:
            self._server = _TCPControl((listener.getsockname()[0], 0), listener.family)
            host, port = self._server.socket.getsockname()[:2]
            self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        else:
            path = Path(os.path.abspath(path))  # printed on the READY line: cwd-independent
            self._server = _bind_unix(path)
            self.url = UNIX_URL_PREFIX + quote(str(path))
        self._server.counters = counters
        self._server.server_label = server_name
        self._server.backoff = AcceptBackoff(f"{server_name} server: control listener")

    def start(self) -> None:
        thread = threading.Thread(target=self._server.serve_forever, name="control", daemon=True)
        thread.start()


def _bind_unix(path: Path) -> _UnixControl:
    """Bind PATH, replacing a socket left there by a server that died (nothing accepts on
    it), never a live one or another kind of file; removed again at exit."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise OSError(f"{path} exists and is not a socket")
        if _accepts(path):
            raise OSError(f"{path} is in use by another process")
        path.unlink()
    server = _UnixControl(path)
    inode = path.stat().st_ino
    atexit.register(_unlink_if_ours, path, inode)
    return server


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _unlink_if_ours(path: Path, inode: int) -> None:
    """At exit: remove the socket unless another server has bound the path since."""
    with contextlib.suppress(OSError):
        if path.stat().st_ino == inode:
            path.unlink()
