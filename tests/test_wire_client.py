"""The suite's own strict response parser, byte-exact, so a conformance failure is the server's."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

import pytest

from tests.wire_client import (
    End,
    G,
    ProtocolViolation,
    RawConnection,
    parse_responses,
    post,
)

Script = Callable[[socket.socket], None]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi"


def test_request_builders_are_byte_exact() -> None:
    assert G("/a") == b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
    assert (
        G("/a", "Connection: close") == b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert G("/a", version="1.0") == b"GET /a HTTP/1.0\r\n\r\n"
    assert G("/", method="HEAD") == b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
    assert post("/", b"hello") == (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")


@pytest.mark.parametrize(
    ("data", "methods", "expected"),
    [
        (OK, ["GET"], [(200, b"hi", "length")]),
        (OK + OK, ["GET", "GET"], [(200, b"hi", "length")] * 2),
        (
            b"HTTP/1.1 204 No Content\r\n\r\n" + OK,
            ["GET", "GET"],
            [(204, b"", "none")] + [(200, b"hi", "length")],
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n" + OK,
            ["HEAD", "GET"],
            [(200, b"", "none"), (200, b"hi", "length")],
        ),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", ["GET"], [(304, b"", "none")]),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2;x=y\r\nhi\r\n3\r\n!!!\r\n0\r\nT: v\r\n\r\n",
            ["GET"],
            [(200, b"hi!!!", "chunked")],
        ),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil close", ["GET"], [(200, b"until close", "eof")]),
        (b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", ["GET"], [(404, b"", "length")]),
    ],
)
def test_parser_accepts(
    data: bytes, methods: list[str], expected: list[tuple[int, bytes, str]]
) -> None:
    responses = parse_responses(data, methods)
    assert [(r.status, r.body, r.framing) for r in responses] == expected
    assert b"".join(r.raw for r in responses) == data


def test_parser_exposes_headers_in_order() -> None:
    (r,) = parse_responses(
        b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=1, max=2\r\n"
        b"Set-Cookie: a\r\nSet-Cookie: b\r\nContent-Length: 0\r\n\r\n",
        ["GET"],
    )
    assert r.headers[0] == ("Connection", "Keep-Alive")
    assert r.header("keep-alive") == "timeout=1, max=2"
    assert r.values("SET-COOKIE") == ["a", "b"]
    assert r.connection_tokens == {"keep-alive"}
    with pytest.raises(ProtocolViolation):
        r.header("Set-Cookie")
    assert r.header("X-Missing") is None


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",  # bare LF
        b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",  # no SP after the status code
        b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",  # space before colon
        b"HTTP/1.1 200 OK\r\n Folded: x\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiX\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",  # interim response not asked for
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\nhi",  # body bytes after a 204
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi!",  # trailing byte
    ],
)
def test_parser_rejects(data: bytes) -> None:
    with pytest.raises(AssertionError):  # ProtocolViolation, or Closed for a truncated response
        parse_responses(data, ["GET"])


def test_parser_reports_truncation() -> None:
    with pytest.raises(AssertionError, match="connection ended"):
        parse_responses(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi", ["GET"])


class _OneShotServer:
    """A loopback server that runs `script(conn)` on the first connection, in a thread."""

    def __init__(self, script: Script) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script: Script) -> None:
        conn, _ = self.listener.accept()
        with conn:
            script(conn)

    def close(self) -> None:
        self.thread.join(5)
        self.listener.close()


def _graceful(conn: socket.socket) -> None:
    conn.recv(1024)
    conn.sendall(OK)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1024)


def _reset(conn: socket.socket) -> None:
    conn.recv(1024)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _silent(conn: socket.socket) -> None:
    conn.recv(1024)
    conn.sendall(OK)
    conn.settimeout(2)
    with contextlib.suppress(TimeoutError):
        conn.recv(1024)


@pytest.mark.parametrize(
    ("script", "kind"), [(_graceful, End.EOF), (_reset, End.RESET), (_silent, End.OPEN)]
)
def test_connection_end_is_classified(script: Script, kind: End) -> None:
    server = _OneShotServer(script)
    try:
        with RawConnection.open("127.0.0.1", server.port, timeout_s=2) as conn:
            conn.send(G("/"))
            if script is not _reset:
                assert conn.response().body == b"hi"
            ending = conn.wait_end(0.5)
            assert ending.kind is kind
            assert ending.data == b""
    finally:
        server.close()
