"""Bare http.server: ThreadingHTTPServer speaking HTTP/1.1 with Nagle off, nothing else.

`protocol_version = "HTTP/1.1"` is what makes BaseHTTPRequestHandler keep connections open;
`disable_nagle_algorithm` avoids the 40 ms delayed-ACK stall on small responses; the socket
timeout is the idle keep-alive timeout.
"""

from __future__ import annotations

import contextlib
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from servers.endpoints import HELLO, TEXT
from servers.policy import KeepAlivePolicy


def make_handler(settings: KeepAlivePolicy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        timeout = settings.timeout_s or None
        served = 0

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.served += 1
            last = settings.max_requests and self.served >= settings.max_requests
            self.send_response(200)
            self.send_header("Content-Type", TEXT)
            self.send_header("Content-Length", str(len(HELLO)))
            # close_connection is already True when the request said `Connection: close`.
            if self.close_connection or last or settings.timeout_s == 0:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(HELLO)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Silent: logging every request would measure the terminal."""

    return Handler


def serve(sock: socket.socket, settings: KeepAlivePolicy, ready: str) -> None:
    server = ThreadingHTTPServer(sock.getsockname()[:2], make_handler(settings), False)
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    print(ready, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
