"""Spec conformance (docs/keepalive-spec.md), sections F (malformed input) and G (robustness).

Every error: the expected status on a real status line, `Connection: close` without
`Keep-Alive`, a readable (Content-Length or chunked framed) response, then a graceful close. Each
variant of a case runs on its own connection; all failing variants are reported together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

import pytest

from servers.endpoints import HELLO
from tests.server_pool import Server, expect_close, expect_keep, peer, run_subcases
from tests.wire_client import End, G, RawConnection

Connect = Callable[..., RawConnection]


def error_check(
    server: Server, connect: Connect, request: bytes, statuses: Collection[int]
) -> Callable[[], None]:
    def check() -> None:
        conn = connect(server)
        conn.try_send(request)  # an oversized request may be cut short by the answer
        resp = conn.response()
        assert resp.status in statuses, f"status {resp.status}, expected one of {statuses}"
        assert resp.framing in ("length", "chunked"), f"error response framed by {resp.framing}"
        expect_close(resp)
        conn.expect_graceful_close()

    return check


# -- F. Malformed and oversized input ------------------------------------------------------------


def test_err01_garbage_request_line(server: Server, connect: Connect) -> None:
    run_subcases({"HELLO": error_check(server, connect, b"HELLO\r\n\r\n", {400})})


def test_err02_space_before_colon(server: Server, connect: Connect) -> None:
    request = b"GET / HTTP/1.1\r\nHost : t\r\n\r\n"
    run_subcases({"Host : t": error_check(server, connect, request, {400})})


def test_err03_http11_without_host(server: Server, connect: Connect) -> None:
    request = b"GET / HTTP/1.1\r\nUser-Agent: t\r\n\r\n"
    run_subcases({"no Host": error_check(server, connect, request, {400})})


def test_err04_oversized_header_and_request_line(server: Server, connect: Connect) -> None:
    err04_check(server, connect)


def err04_check(server: Server, connect: Connect) -> None:
    big_header = G("/", "X-Big: " + "a" * 16 * 1024)
    long_line = b"GET /" + b"a" * 70 * 1024 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    run_subcases(
        {
            "16 KB header": error_check(server, connect, big_header, {431, 400}),
            "70 KB request line": error_check(server, connect, long_line, {414, 400, 431}),
        }
    )


def test_err05_bad_transfer_codings(server: Server, connect: Connect) -> None:
    def te(value: str) -> bytes:
        return G("/", f"Transfer-Encoding: {value}", method="POST") + b"5\r\nhello\r\n0\r\n\r\n"

    run_subcases(
        {
            "pigeons": error_check(server, connect, te("pigeons"), {400}),
            "gzip, chunked": error_check(server, connect, te("gzip, chunked"), {501, 400}),
        }
    )


def test_err06_bad_content_length(server: Server, connect: Connect) -> None:
    def cl(*headers: str) -> bytes:
        return G("/", *headers, method="POST") + b"hello"

    run_subcases(
        {
            "Content-Length: abc": error_check(server, connect, cl("Content-Length: abc"), {400}),
            # Rule 9 "invalid Content-Length": a non-ASCII digit (latin-1 superscript two).
            "Content-Length: \\xb2": error_check(
                server, connect, cl("Content-Length: \xb2"), {400}
            ),
            "5 and 6": error_check(
                server, connect, cl("Content-Length: 5", "Content-Length: 6"), {400}
            ),
            "CL with chunked": error_check(
                server,
                connect,
                G("/", "Content-Length: 5", "Transfer-Encoding: chunked", method="POST")
                + b"5\r\nhello\r\n0\r\n\r\n",
                {400},
            ),
        }
    )


def test_err07_http10_chunked(server: Server, connect: Connect) -> None:
    request = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + G(
        "/never"
    )
    run_subcases({"1.0 chunked": error_check(server, connect, request, {400, 200})})


@pytest.mark.parametrize("subcase", ["HTTP/2.0", "HTTP/1.2", "HTTP/1"])
def test_err08_http_versions(server: Server, connect: Connect, subcase: str) -> None:
    """One test id per version, so a deviation in one (DEVIATIONS `ERR-08[HTTP/2.0]`) cannot
    hide a regression in another."""

    def served_as_11() -> None:
        conn = connect(server)
        conn.send(G("/", version="1.2"))
        resp = conn.response()
        assert (resp.status, resp.body) == (200, HELLO), resp
        expect_keep(resp, server, 2)
        conn.send(G("/bytes/1"))
        assert conn.response().body == b"x"

    checks = {
        "HTTP/2.0": error_check(server, connect, G("/", version="2.0"), {505}),
        "HTTP/1.2": served_as_11,
        "HTTP/1": error_check(server, connect, b"GET / HTTP/1\r\nHost: t\r\n\r\n", {400}),
    }
    checks[subcase]()


# -- G. Robustness -------------------------------------------------------------------------------


def test_rob01_leading_crlf_ignored(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(b"\r\n" + G("/"))
    resp = conn.response()
    assert (resp.status, resp.body) == (200, HELLO), resp
    expect_keep(resp, server, 2)
    conn.send(G("/peer"))
    assert peer(conn.response())["request_number"] == 2


def test_rob02_half_close_after_pipelined_requests(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("/peer") + G("/bytes/2"))
    conn.shutdown_write()
    first, second = conn.responses(2)
    assert peer(first)["request_number"] == 1
    assert (second.status, second.body) == (200, b"xx"), second
    conn.expect_graceful_close(timeout_s=server.close_limit_s() + 1.0)


def test_rob03_no_bytes_before_idle_eof(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("/missing"))
    resp = conn.response()
    assert resp.status == 404, resp
    expect_keep(resp, server, 2)
    ending = conn.wait_end(server.close_limit_s() + 1.0, since=time.monotonic())
    assert ending.kind is End.EOF, f"expected EOF, got {ending.kind.value}"
    assert ending.data == b"", f"unsolicited bytes before EOF: {ending.data[:200]!r}"
