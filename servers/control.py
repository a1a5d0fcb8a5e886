"""The control listener: counters as JSON on a port of its own.

It is a separate socket served by a separate thread, so reading the counters during a load test
neither adds connections or requests to what is counted nor waits behind the load in the
server's own accept queue or event loop.

    GET /counters  -> {"server": ..., "pid": ..., "connections_accepted": ..., ...}
"""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from servers.counters import Counters


class _ControlServer(HTTPServer):
    """HTTPServer binds AF_INET unless told otherwise; follow the main listener's family."""

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], family: int
    ) -> None:
        self.address_family = family
        super().__init__(address, handler)


def start_control_listener(
    listener: socket.socket, counters: Counters, server_name: str
) -> HTTPServer:
    """Serve the counters on the main listener's address (any free port) from a daemon thread.

    The address is the one the listener really bound (a name like `localhost` or `::1`
    resolved once), so both sockets are reachable the same way.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] != "/counters":
                self.send_error(404)
                return
            payload = {"server": server_name, "pid": os.getpid(), **counters.snapshot()}
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Silent: stderr belongs to --log-connections."""

    httpd = _ControlServer((listener.getsockname()[0], 0), Handler, listener.family)
    threading.Thread(target=httpd.serve_forever, name="control", daemon=True).start()
    return httpd
