"""Request smuggling: a request hidden inside what must be a body is never answered.

Every case below carries `GET /status/418` where a front end that frames strictly (nginx,
llhttp) sees body bytes. Each server must either frame the body and answer exactly one request
(then the connection is still in step: the next request gets its own answer), or reject the
request with an error that closes the connection. 418 is never answered, and the three servers
give the same status for every case (the expected status is one number per case, not per
server). Each case runs on its own connection; all failing cases are reported together.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.server_pool import Server, expect_close, run_subcases
from tests.wire_client import G, RawConnection

Connect = Callable[..., RawConnection]

SMUGGLED = b"GET /status/418 HTTP/1.1\r\nHost: t\r\n\r\n"
N = len(SMUGGLED)
CHUNKED_SMUGGLED = b"%x\r\n" % N + SMUGGLED + b"\r\n0\r\n\r\n"


def head(*lines: str, start: str = "POST / HTTP/1.1") -> bytes:
    """A request head: the start line, `Host: t`, the given field lines, the empty line."""
    return ("\r\n".join([start, "Host: t", *lines]) + "\r\n\r\n").encode("latin-1")


def cl(*lines: str, start: str = "POST / HTTP/1.1") -> bytes:
    """A head with `Content-Length` of the smuggled request, then that request as the body."""
    return head(f"Content-Length: {N}", *lines, start=start) + SMUGGLED


def te(*lines: str, start: str = "POST / HTTP/1.1") -> bytes:
    """A head with the given framing lines, then the smuggled request as one chunk."""
    return head(*lines, start=start) + CHUNKED_SMUGGLED


UPGRADE = ("Connection: Upgrade", "Upgrade: foo")
CONNECT = "CONNECT t:443 HTTP/1.1"

# case -> (request bytes, the status every server answers). A protocol error closes the
# connection; any other status (a 404 for CONNECT) means the body was framed and the connection
# stays in step.
PROTOCOL_ERRORS = frozenset({400, 414, 431, 501, 505})
CASES: dict[str, tuple[bytes, int]] = {
    # Baselines: the smuggled bytes are a body by Content-Length or by chunks.
    "CL body": (cl(), 200),
    "CL with leading zeros": (head(f"Content-Length: 00{N}") + SMUGGLED, 200),
    "chunked body": (te("Transfer-Encoding: chunked"), 200),
    "chunked, CHUNKED spelled upper-case": (te("Transfer-Encoding: CHUNKED"), 200),
    "chunked with an extension": (
        head("Transfer-Encoding: chunked") + b"%x;a=b\r\n" % N + SMUGGLED + b"\r\n0\r\n\r\n",
        200,
    ),
    # Upgrade and CONNECT: no protocol is switched, so the body is framed as for any request.
    "Upgrade: foo with CL": (cl(*UPGRADE), 200),
    "Upgrade: websocket POST with CL": (cl("Connection: Upgrade", "Upgrade: websocket"), 200),
    "h2c GET with CL": (
        cl(
            "Connection: Upgrade, HTTP2-Settings",
            "Upgrade: h2c",
            "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
            start="GET / HTTP/1.1",
        ),
        200,
    ),
    "Upgrade with a chunked body": (te(*UPGRADE, "Transfer-Encoding: chunked"), 200),
    "CONNECT with CL": (cl(start=CONNECT), 404),
    "CONNECT with a chunked body": (te("Transfer-Encoding: chunked", start=CONNECT), 404),
    # CL.TE and TE.CL: both headers is a 400, whichever comes first.
    "CL.TE": (head(f"Content-Length: {N}", "Transfer-Encoding: chunked") + CHUNKED_SMUGGLED, 400),
    "TE.CL": (head("Transfer-Encoding: chunked", f"Content-Length: {N}") + CHUNKED_SMUGGLED, 400),
    "TE.CL with CL 0": (head("Transfer-Encoding: chunked", "Content-Length: 0") + SMUGGLED, 400),
    # Transfer-Encoding obfuscations.
    "TE: xchunked": (te("Transfer-Encoding: xchunked"), 400),
    "TE: chunked, identity": (te("Transfer-Encoding: chunked, identity"), 400),
    'TE: "chunked"': (te('Transfer-Encoding: "chunked"'), 400),
    "TE space before colon": (te("Transfer-Encoding : chunked"), 400),
    "TE twice, last not chunked": (te("Transfer-Encoding: chunked", "Transfer-Encoding: x"), 400),
    "TE with a VT": (te("Transfer-Encoding: chunked\x0b"), 400),
    "TE with a NUL": (te("Transfer-Encoding: chunked\x00"), 400),
    "TE after a bare CR": (te("X: y\rTransfer-Encoding: chunked"), 400),
    "TE after a bare LF": (te("X: y\nTransfer-Encoding: chunked"), 400),
    "TE by obs-fold": (te("X: y", " Transfer-Encoding: chunked"), 400),
    "TE folded value": (te("Transfer-Encoding: x", " chunked"), 400),
    "TE in HTTP/1.0": (te("Transfer-Encoding: chunked", start="POST / HTTP/1.0"), 400),
    # Content-Length: duplicated or malformed.
    "CL twice": (head(f"Content-Length: {N}", f"Content-Length: {N}") + SMUGGLED, 400),
    "CL list": (head(f"Content-Length: {N}, {N}") + SMUGGLED, 400),
    "CL 0 then CL": (head("Content-Length: 0", f"Content-Length: {N}") + SMUGGLED, 400),
    "CL +N": (head(f"Content-Length: +{N}") + SMUGGLED, 400),
    "CL hex": (head(f"Content-Length: 0x{N:x}") + SMUGGLED, 400),
    "CL with a NUL": (head(f"Content-Length: {N}\x00") + SMUGGLED, 400),
    "CL space inside": (head(f"Content-Length: {N // 10} {N % 10}") + SMUGGLED, 400),
    # Chunk framing.
    "chunk size overflow": (
        head("Transfer-Encoding: chunked") + b"1" + b"0" * 16 + b"\r\n" + SMUGGLED,
        400,
    ),
    "chunk size with a trailing space": (
        head("Transfer-Encoding: chunked") + b"%x \r\n" % N + SMUGGLED + b"\r\n0\r\n\r\n",
        400,
    ),
    "chunk size with a leading space": (
        head("Transfer-Encoding: chunked") + b" %x\r\n" % N + SMUGGLED + b"\r\n0\r\n\r\n",
        400,
    ),
    "chunk size ended by a bare LF": (
        head("Transfer-Encoding: chunked") + b"%x\n" % N + SMUGGLED + b"\r\n0\r\n\r\n",
        400,
    ),
    "bare CR in a chunk extension": (
        head("Transfer-Encoding: chunked") + b"%x;a\rb\r\n" % N + SMUGGLED + b"\r\n0\r\n\r\n",
        400,
    ),
    "chunk longer than its size": (
        head("Transfer-Encoding: chunked") + b"1\r\nx" + SMUGGLED + b"\r\n0\r\n\r\n",
        400,
    ),
    "trailer line starting with a space": (
        head("Transfer-Encoding: chunked") + b"0\r\n X: y\r\n\r\n" + SMUGGLED,
        400,
    ),
    # The request line and the header section.
    "\\r\\r\\n line end": (head(f"Content-Length: {N}\r") + SMUGGLED, 400),
    "control byte in a field value": (head("X: a\x01b", f"Content-Length: {N}") + SMUGGLED, 400),
    "DEL in a field value": (head("X: a\x7fb", f"Content-Length: {N}") + SMUGGLED, 400),
    "lowercase method": (cl(start="post / HTTP/1.1"), 400),
    "TAB between method and target": (cl(start="POST\t/ HTTP/1.1"), 400),
    "VT between method and target": (cl(start="POST\x0b/ HTTP/1.1"), 400),
    "NBSP between method and target": (cl(start="POST\xa0/ HTTP/1.1"), 400),
    "NUL in the request line": (cl(start="POST /\x00 HTTP/1.1"), 400),
}


def smuggling_check(
    server: Server, connect: Connect, request: bytes, status: int
) -> Callable[[], None]:
    def check() -> None:
        conn = connect(server)
        conn.try_send(request)
        resp = conn.response()
        assert resp.status != 418, "the smuggled request was answered"
        assert resp.status == status, f"status {resp.status}, expected {status}"
        if status in PROTOCOL_ERRORS:
            expect_close(resp)
            conn.expect_graceful_close()  # and nothing, 418 least of all, before the FIN
            return
        # Framed: the next request gets the next answer, so the body produced none.
        conn.send(G("/bytes/3"))
        after = conn.response()
        assert (after.status, after.body) == (200, b"xxx"), f"then {after.status} {after.body!r}"

    return check


def test_smuggled_request_is_never_answered(server: Server, connect: Connect) -> None:
    run_subcases(
        {
            name: smuggling_check(server, connect, request, status)
            for name, (request, status) in CASES.items()
        }
    )


# -- Pipelines that mix valid requests with an upgrade or an error (issue 8, item 7) ---------

# Named deviations beyond the spec's cases (the same text as in servers/aiohttp_server.py).
AIOHTTP_DEVIATIONS = {
    "PIPELINE-AFTER-UPGRADE": (
        "aiohttp's parser pauses after a GET with Connection: Upgrade and an Upgrade other than "
        "websocket and returns no tail unless it accepts the upgrade: requests in the same read "
        "after it are dropped"
    ),
    "PIPELINE-BEFORE-ERROR": (
        "aiohttp's RequestHandler.data_received answers a parser error with one 400 for every "
        "request parsed from the same read: the valid requests before it are not answered"
    ),
}


def deviation(name: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        "server_name",
        [
            pytest.param(
                n,
                marks=pytest.mark.xfail(
                    reason=f"aiohttp deviation {name}: {AIOHTTP_DEVIATIONS[name]}", strict=True
                )
                if n == "aiohttp"
                else (),
            )
            for n in ("stdlib", "aiohttp", "uvloop")
        ],
        indirect=True,
        scope="module",
    )


@deviation("PIPELINE-AFTER-UPGRADE")
def test_requests_after_an_upgrade_get_are_answered(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(head(*UPGRADE, start="GET / HTTP/1.1") + G("/bytes/2"))
    first, second = conn.responses(2, timeout_s=2.0)
    assert first.status == 200, first
    assert (second.status, second.body) == (200, b"xx"), second


@deviation("PIPELINE-BEFORE-ERROR")
def test_valid_requests_before_a_malformed_one_are_answered(
    server: Server, connect: Connect
) -> None:
    conn = connect(server)
    conn.send(G("/bytes/1") + G("/bytes/2") + b"GET / HTTP/1.1\r\nHost : t\r\n\r\n")
    first, second, error = conn.responses(3, timeout_s=2.0)
    assert [(r.status, r.body) for r in (first, second)] == [(200, b"x"), (200, b"xx")]
    assert error.status == 400, error
    expect_close(error)


SPLIT_CASES = {
    "Upgrade with CL": cl(*UPGRADE),
    "Upgrade with a chunked body": te(*UPGRADE, "Transfer-Encoding: chunked"),
    "CONNECT with CL": cl(start=CONNECT),
    "CONNECT with a chunked body": te("Transfer-Encoding: chunked", start=CONNECT),
}


@pytest.mark.parametrize("case", list(SPLIT_CASES))
def test_body_after_the_head_in_later_reads_is_framed(
    server: Server, connect: Connect, case: str
) -> None:
    """The head, then the body in two later writes: a server that frames the body itself
    (uvloop and aiohttp after Upgrade or CONNECT) keeps framing across reads."""
    request = SPLIT_CASES[case]
    body_at = request.index(b"\r\n\r\n") + 4
    conn = connect(server)
    for piece in (request[:body_at], request[body_at : body_at + 20], request[body_at + 20 :]):
        conn.send(piece)
        time.sleep(0.05)  # each piece its own read (a lower bound, never a speed target)
    conn.send(G("/bytes/3"))
    first, after = conn.responses(2)
    assert first.status in (200, 404), first
    assert (after.status, after.body) == (200, b"xxx"), after
