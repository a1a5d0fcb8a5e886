"""Load for `ports`, in a process of its own inside the client namespace (argv in, JSON out).

    python -m benchmarks.scenarios.ports_client unpooled|pooled HOST PORT SECONDS

`unpooled`: a new connection per request that the client closes itself after the response (as
`requests.get` without a session does), so TIME_WAIT stays on the client side and holds the
port for 60 s. `pooled`: one keep-alive connection for every request. Stops at the first
EADDRNOTAVAIL (connect found no free ephemeral port) or after SECONDS.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: ports\r\n\r\n"


def read_response(sock: socket.socket) -> None:
    """One response, framed by its Content-Length (the reference servers always send one)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )  # fmt: skip
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk


def main(argv: list[str]) -> int:
    mode, host, port_text, seconds_text = argv
    address = (host, int(port_text))
    start = time.monotonic()
    deadline = start + float(seconds_text)
    requests = connections = 0
    failed_at: float | None = None
    other_errors: dict[str, int] = {}
    sock: socket.socket | None = None
    while time.monotonic() < deadline:
        try:
            if sock is None:
                sock = socket.create_connection(address, timeout=5)
                connections += 1
            sock.sendall(REQUEST)
            read_response(sock)
            requests += 1
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                failed_at = time.monotonic() - start
                break
            other_errors[type(exc).__name__] = other_errors.get(type(exc).__name__, 0) + 1
            if sock is not None:
                sock.close()
            sock = None
            continue
        if mode == "unpooled":
            sock.close()  # the client closes first: its side keeps the TIME_WAIT
            sock = None
    elapsed = time.monotonic() - start
    if sock is not None:
        sock.close()
    out = {
        "mode": mode, "requests": requests, "connections": connections, "elapsed_s": elapsed,
        "eaddrnotavail_at_s": failed_at, "other_errors": other_errors,
    }  # fmt: skip
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
