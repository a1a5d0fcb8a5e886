"""Beyond the spec's listed cases: the three servers agree on request framing.

stdlib validates with `servers.framing`, uvloop and aiohttp with llhttp (plus `servers.framing`
on uvloop); a request any of them rejects, all of them reject with the same status.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.server_pool import Server, expect_keep, run_subcases
from tests.test_conformance_errors import error_check
from tests.wire_client import G, RawConnection

Connect = Callable[..., RawConnection]

STRICT_FRAMING = {
    "Content-Length: 5, 5": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello",
        {400},
    ),
    "Content-Length twice": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        {400},
    ),
    "chunked, chunked": (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    "bare LF": (b"GET / HTTP/1.1\nHost: t\n\n", {400}),
    "GET foo": (b"GET foo HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
    "GET *": (b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
    "raw 0xff in target": (b"GET /\xff HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
}

# Issue 8, item 3: what stdlib accepted and llhttp rejects; each is followed by a request that
# must never be answered. Item 9: limits, one status on all three.
NEXT = G("/status/418")


def chunked(chunks: bytes) -> bytes:
    return G("/", "Transfer-Encoding: chunked", method="POST") + chunks + NEXT


LLHTTP_STRICT = {
    "\\x01 in a header value": (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n" + NEXT, {400}),
    "\\x7f in a header value": (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x7fb\r\n\r\n" + NEXT, {400}),
    "\\r\\r\\n after a field": (b"GET / HTTP/1.1\r\nHost: t\r\r\n\r\n" + NEXT, {400}),
    "bare CR in a chunk extension": (chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n"), {400}),
    "chunk size '5 '": (chunked(b"5 \r\nhello\r\n0\r\n\r\n"), {400}),
    "chunk size ' 5'": (chunked(b" 5\r\nhello\r\n0\r\n\r\n"), {400}),
    "chunk size '5;'": (chunked(b"5;\r\nhello\r\n0\r\n\r\n"), {400}),
    "trailer line starting with a space": (chunked(b"5\r\nhello\r\n0\r\n X: y\r\n\r\n"), {400}),
    "control byte in a trailer": (chunked(b"0\r\nX: a\x01\r\n\r\n"), {400}),
    "lowercase method": (b"get / HTTP/1.1\r\nHost: t\r\n\r\n" + NEXT, {400}),
    "unknown method": (b"FOO / HTTP/1.1\r\nHost: t\r\n\r\n" + NEXT, {400}),
    "TAB separator": (b"GET\t/ HTTP/1.1\r\nHost: t\r\n\r\n" + NEXT, {400}),
    "VT separator": (b"GET\x0b/ HTTP/1.1\r\nHost: t\r\n\r\n" + NEXT, {400}),
    "NBSP separator": (b"GET\xa0/ HTTP/1.1\r\nHost: t\r\n\r\n" + NEXT, {400}),
    "SP after the version": (b"GET / HTTP/1.1 \r\nHost: t\r\n\r\n" + NEXT, {400}),
    "SP before the method": (b" GET / HTTP/1.1\r\nHost: t\r\n\r\n" + NEXT, {400}),
    "9 KiB header field": (G("/", "X: " + "a" * 9 * 1024), {431}),
    "9000-byte method": (b"A" * 9000 + b" / HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
    "9000-byte target": (G("/" + "a" * 9000), {414}),
    "GET /x without a version": (b"GET /x\r\nHost: t\r\n\r\n", {505}),
    "CONNECT without a port": (b"CONNECT t HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
}

# ... and what llhttp accepts, so that being stricter than it is caught too.
LLHTTP_ACCEPTS = {
    "runs of SP in the request line": b"GET  /bytes/2  HTTP/1.1\r\nHost: t\r\n\r\n",
    "TAB and obs-text in a value": G("/bytes/2", "X: a\tb\xe9"),
    "chunk extensions": chunked(b'2;a=b;c="d e";f\r\nxx\r\n0;g=h\r\nT: v\r\n\r\n')[: -len(NEXT)],
    "17-digit chunk size": chunked(b"00000000000000002\r\nxx\r\n0\r\n\r\n")[: -len(NEXT)],
    "empty chunk extension name": chunked(b"2;;a\r\nxx\r\n0\r\n\r\n")[: -len(NEXT)],
}


def test_servers_agree_on_strict_framing(server: Server, connect: Connect) -> None:
    """stdlib parses with servers.framing, uvloop and aiohttp with llhttp: one answer for all."""
    run_subcases(
        {
            name: error_check(server, connect, request, statuses)
            for name, (request, statuses) in STRICT_FRAMING.items()
        }
    )


def test_servers_reject_what_llhttp_rejects(server: Server, connect: Connect) -> None:
    """Issue 8, items 3 and 9: one status on all three, the connection closed, and the request
    after it never answered (it would be, were the first one accepted)."""
    run_subcases(
        {
            name: error_check(server, connect, request, statuses)
            for name, (request, statuses) in LLHTTP_STRICT.items()
        }
    )


def test_servers_accept_what_llhttp_accepts(server: Server, connect: Connect) -> None:
    def served(request: bytes) -> Callable[[], None]:
        def check() -> None:
            conn = connect(server)
            conn.send(request + G("/bytes/1"))
            first, second = conn.responses(2)
            assert first.status == 200, first
            assert (second.status, second.body) == (200, b"x"), second

        return check

    run_subcases({name: served(request) for name, request in LLHTTP_ACCEPTS.items()})


def test_asterisk_and_absolute_form_are_served(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("*", method="OPTIONS") + G("http://t/bytes/2"))
    options, absolute = conn.responses(2)
    assert options.status == 404, options  # no resource is `*`; the policy still applies
    expect_keep(options, server, 2)
    assert (absolute.status, absolute.body) == (200, b"xx"), absolute
    expect_keep(absolute, server, 1)
