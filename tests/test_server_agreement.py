"""Beyond the spec's listed cases: the three servers agree on request framing.

stdlib validates with `servers.framing`, uvloop and aiohttp with llhttp (plus `servers.framing`
on uvloop); a request any of them rejects, all of them reject with the same status.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.server_pool import Server, expect_close, expect_keep, run_subcases
from tests.test_conformance_errors import error_check
from tests.wire_client import End, G, RawConnection

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
    # Issue 8 item 9 and the fuzzer's findings (`python -m benchmarks fuzz`):
    "HTTP/3.1": (G("/", version="3.1") + NEXT, {505}),  # aiohttp said 400
    "HTTP/2.0, then a control byte in a field": (
        b"GET / HTTP/2.0\r\nHost: t\r\nX: a\x01\r\n\r\n" + NEXT,
        {400},  # llhttp reads the header section before the version's 505; stdlib said 505
    ),
    "GET http://t, no version, then a line that is no field": (
        b"GET http://t\r\n/bytes/4 HTTP/1.1\r\nHost: t\r\n\r\n" + NEXT,  # fuzz seed 1 case 87
        {400},
    ),
    "two Host fields in HTTP/1.0": (G("/", "Host: t", "Host: u", version="1.0") + NEXT, {400}),
    "two Host fields before a 505": (b"GET /x\r\nHost: t\r\nHost: t\r\n\r\n" + NEXT, {400}),
    "scheme with a digit": (G("h1://t/") + NEXT, {400}),  # stdlib served these three
    "# in a host": (G("http://t#/") + NEXT, {400}),
    "{ in a CONNECT host": (b"CONNECT t{:443 HTTP/1.1\r\nHost: t\r\n\r\n" + NEXT, {400}),
    # llhttp checks framing fields as it reads them, so before a version's 505 (fuzz, 60 s):
    "HTTP/2.0 with Content-Length: x": (G("/", "Content-Length: x", version="2.0") + NEXT, {400}),
    "HTTP/0.9 syntax with Content-Length: NBSP 9": (
        b"POST /x\r\nHost: t\r\nContent-Length:\xa0 9\r\n\r\nabc=1&d=2" + NEXT,
        {400},
    ),
    "HTTP/2.0 with Content-Length twice": (
        G("/", "Content-Length: 1", "Content-Length: 1", version="2.0") + b"x" + NEXT,
        {400},
    ),
    "Transfer-Encoding: chunked+TAB": (  # `chunked ` is chunked, `chunked\t` is not
        G("/", "Transfer-Encoding: chunked\t", method="POST") + b"0\r\n\r\n" + NEXT,
        {400},
    ),
    "NBSP before a Content-Length value": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: \xa00\r\n\r\n" + NEXT,
        {400},  # str.strip() took the NBSP off: stdlib said 200
    ),
}

# ... and what llhttp accepts, so that being stricter than it is caught too.
LLHTTP_ACCEPTS = {
    "runs of SP in the request line": b"GET  /bytes/2  HTTP/1.1\r\nHost: t\r\n\r\n",
    "TAB and obs-text in a value": G("/bytes/2", "X: a\tb\xe9"),
    "chunk extensions": chunked(b'2;a=b;c="d e";f\r\nxx\r\n0;g=h\r\nT: v\r\n\r\n')[: -len(NEXT)],
    "17-digit chunk size": chunked(b"00000000000000002\r\nxx\r\n0\r\n\r\n")[: -len(NEXT)],
    "empty chunk extension name": chunked(b"2;;a\r\nxx\r\n0\r\n\r\n")[: -len(NEXT)],
    # llhttp skips any CR and LF bytes before a request (stdlib said 400 to a bare LF):
    "a bare LF before the request": b"\n" + G("/bytes/2"),
    "CR and LF bytes before the request": b"\r\n\n\r\r\n\r" + G("/bytes/2"),
    "Connection: close+NBSP is not close": G("/bytes/2", "Connection: close\xa0"),
    "userinfo in the absolute form": G("http://u@t/bytes/2"),
    "absolute form without a path": G("http://t"),  # aiohttp's router said 404
    "Transfer-Encoding: chunked+SP": G("/bytes/2", "Transfer-Encoding: chunked ", method="POST")
    + b"0\r\n\r\n",
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


# Issue 8's fuzzing: input cut short by the client's FIN. llhttp answers 400 at the first byte
# no request can continue with; so must stdlib, which reads whole lines. Sent in a read of its
# own after a valid request (aiohttp answers a read that holds an error with one 400).
CUT_SHORT = {
    "NBSP": (b"\xa0", (400,)),
    "SP": (b" ", (400,)),
    "GX": (b"GX", (400,)),
    "control byte in the target": (b"GET /\x01", (400,)),
    "no HTTP/ after the target": (b"GET / X", (400,)),
    "control byte in a field name": (b"GET / HTTP/1.1\r\nHo\x01", (400,)),
    "a second Host, then the next line begins": (G("/")[:-2] + b"Host: t\r\nX", (400,)),
    "Content-Length: +0, the section unfinished": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +0\r\n",
        (400,),
    ),
    "an empty Content-Length, and nothing after it": (  # fuzz seed 3 case 8918
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length:\r\n",
        (),
    ),
    "a second Content-Length at its first digit": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1",
        (400,),
    ),
    "GE": (b"GE", ()),
    "HTTP/0.9 line up to its CR": (b"GET /x\r", ()),
    "CR LF CR": (b"\r\n\r", ()),
    "a second Host, and nothing after it": (G("/")[:-2] + b"Host: t\r\n", ()),
}


def test_servers_agree_on_input_cut_short_by_fin(server: Server, connect: Connect) -> None:
    def check(tail: bytes, statuses: tuple[int, ...]) -> Callable[[], None]:
        def run() -> None:
            conn = connect(server)
            conn.send(G("/bytes/1"))
            first = conn.response()
            assert (first.status, first.body) == (200, b"x"), first
            conn.send(tail)
            conn.shutdown_write()
            answers = tuple(r.status for r in conn.responses(len(statuses)))
            assert answers == statuses, answers
            ending = conn.wait_end(3.0)
            assert ending.kind is End.EOF and ending.data == b"", ending

        return run

    run_subcases({name: check(*case) for name, case in CUT_SHORT.items()})


def test_a_malformed_chunk_in_a_later_read_is_answered(server: Server, connect: Connect) -> None:
    """The body's error comes in the second read (fuzz seed 1 case 2004): 400 and a close.
    aiohttp queued its 400 behind the request, whose body it then waited for until H."""
    conn = connect(server)
    conn.send(G("/", "Transfer-Encoding: chunked", method="POST") + b"5\r\nhello")
    time.sleep(0.05)  # a read of its own
    conn.send(b"\r\n6\x00\r\n world\r\n0\r\n\r\n" + NEXT)
    resp = conn.response()
    assert resp.status == 400, resp
    expect_close(resp)
    conn.expect_graceful_close()
