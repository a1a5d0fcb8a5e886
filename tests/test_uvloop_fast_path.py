"""The uvloop server's memoised responses answer byte for byte what its slow path does.

Without `--log-connections`, a plain `GET` (HTTP/1.1, no Connection field, or `Connection:
close` alone) is answered from whole responses remembered by target, and with N limited by
request number (`uvloop_wire.ServerState.numbered`). The conformance suite runs every server
with `--log-connections`, which routes every request, so it never takes those paths: here the
same requests go to a server with and one without it, and the transcripts (bytes, and where the
server closed) must be equal, on more connections than one so that the memo is used.
"""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from servers.launch import ServerProcess
from servers.options import ServerName, ServerOptions

TIMEOUT_S = 5.0


def _response(sock: socket.socket, buffer: bytearray) -> bytes:
    """One response framed by Content-Length (what `/` answers), from `buffer` and `sock`."""
    while b"\r\n\r\n" not in buffer:
        _fill(sock, buffer)
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end]).lower()
    length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
    while len(buffer) < end + length:
        _fill(sock, buffer)
    data = bytes(buffer[: end + length])
    del buffer[: end + length]
    return data


def _fill(sock: socket.socket, buffer: bytearray) -> None:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("closed before a whole response")
    buffer += chunk


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True


def _transcript(host: str, port: int, requests: int, close: bool) -> list[object]:
    """Two connections, `requests` sequential `GET /` each; then whether the server closed."""
    extra = b"Connection: close\r\n" if close else b""
    request = b"GET / HTTP/1.1\r\nHost: t\r\n%s\r\n" % extra
    out: list[object] = []
    for _ in range(2):
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as sock:
            buffer = bytearray()
            for _ in range(requests):
                sock.sendall(request)
                out.append(_response(sock, buffer))
            sock.settimeout(0.5)
            try:
                out.append(_closed(sock))
            except TimeoutError:
                out.append("open")
    return out


def _counters(control_url: str) -> dict[str, object]:
    with urllib.request.urlopen(control_url + "/counters", timeout=TIMEOUT_S) as answer:
        data = json.loads(answer.read())
    return {k: data[k] for k in ("requests_served", "closed", "connections_accepted")}


@pytest.mark.parametrize("keepalive_max", [0, 3])
def test_memoised_answers_equal_the_routed_ones(keepalive_max: int) -> None:
    results = []
    for log in (True, False):
        options = ServerOptions(
            ServerName.UVLOOP,
            keepalive_timeout_s=5.0,
            keepalive_max=keepalive_max,
            log_connections=log,
        )
        with ServerProcess(options) as server:
            ready = server.ready
            assert ready is not None
            keep = _transcript(ready.host, ready.port, 3, close=False)
            asked = _transcript(ready.host, ready.port, 1, close=True)
            results.append((keep, asked, _counters(ready.control_url)))
    assert results[0] == results[1]
    keep = results[0][0]
    if keepalive_max:  # the countdown, then the N-th response closes
        assert b"max=2" in keep[0] and b"max=1" in keep[1]  # type: ignore[operator]
        assert b"Connection: close" in keep[2] and keep[3] is True  # type: ignore[operator]
    else:
        assert keep[3] == "open"
