"""Spec conformance (docs/keepalive-spec.md), sections D (pipelining) and E (bodies, framing).

Order is proven by the bodies (`/bytes/N`, `/sleep`) and by `/peer`'s `request_number`; "never
processed" by the server's `--log-connections` lines for that connection.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import psutil

from servers.endpoints import HELLO
from tests.server_pool import Server, ServerPool, expect_close, expect_keep, peer
from tests.wire_client import G, RawConnection, post

Connect = Callable[..., RawConnection]

CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"


def chunked_post(path: str, body: bytes) -> bytes:
    return G(path, "Transfer-Encoding: chunked", method="POST") + body


# -- D. Pipelining -------------------------------------------------------------------------------


def test_pipe01_slow_request_first_answers_in_order(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("/sleep?ms=300") + G("/bytes/1") + G("/peer"))
    slow, small, last = conn.responses(3, timeout_s=5)
    assert (slow.status, slow.body) == (200, b"slept\n"), slow
    expect_keep(slow, server, 2)
    assert (small.status, small.body) == (200, b"x"), small
    expect_keep(small, server, 1)
    assert peer(last)["request_number"] == 3
    expect_close(last)  # N = 3
    conn.expect_graceful_close()


def test_pipe02_close_in_the_middle(server: Server, connect: Connect) -> None:
    pipe02_check(server, connect)


def pipe02_check(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("/peer") + G("/bytes/2", "Connection: close") + G("/c-never"))
    first, second = conn.responses(2)
    info = peer(first)
    expect_keep(first, server, 2)
    assert (second.status, second.body) == (200, b"xx"), second
    expect_close(second)
    conn.expect_graceful_close()
    assert server.dispatched(info["connection_id"]) == ["/peer", "/bytes/2"]


def test_pipe03_bodies_keep_pipeline_in_sync(pool: ServerPool, connect: Connect) -> None:
    server = pool.get(keepalive_max=0)  # four requests on a connection that stays open
    conn = connect(server)
    conn.send(post("/", b"hello") + G("/bytes/1") + chunked_post("/", CHUNKED_HELLO) + G("/peer"))
    responses = conn.responses(4)
    assert [(r.status, r.body) for r in responses[:3]] == [(200, HELLO), (200, b"x"), (200, HELLO)]
    assert peer(responses[3])["request_number"] == 4
    for resp in responses:
        expect_keep(resp, server, None)
    conn.expect_open(0.2)


def test_pipe04_2000_pipelined_bounded_and_in_order(pool: ServerPool, connect: Connect) -> None:
    """2,000 pipelined requests, unread for 2 s: all answered in order on one connection, and
    memory stays bounded. The spec's `G(a)` is tried twice: `/peer` proves order, and
    `/bytes/65536` makes the bound observable (an unbounded server would hold the whole
    128 MiB of responses while the client does not read; a bounded one its write buffer)."""
    server = pool.get(keepalive_max=0)
    count = 2000
    process = psutil.Process(server.ready.pid)
    rss_before = _tree_rss(process)
    conn = connect(server, timeout_s=30, rcvbuf=16 * 1024)
    writer, errors = _pipeline_unread(conn, G("/bytes/65536") * count)
    rss_during = _tree_rss(process)
    for _ in range(count):
        resp = conn.response(timeout_s=10)
        assert (resp.status, len(resp.body)) == (200, 65536), resp
    writer.join(10)
    assert not errors, errors
    growth_mib = (rss_during - rss_before) / 2**20
    assert growth_mib < 48, f"server RSS grew {growth_mib:.0f} MiB while the client did not read"

    conn = connect(server, timeout_s=30, rcvbuf=16 * 1024)
    writer, errors = _pipeline_unread(conn, G("/peer") * count)
    numbers = []
    conn_ids = set()
    for i in range(count):
        resp = conn.response(timeout_s=10)
        info = peer(resp)
        numbers.append(info["request_number"])
        conn_ids.add(info["connection_id"])
        if i in (0, count - 1):
            expect_keep(resp, server, None)
    writer.join(10)
    assert not errors, errors
    assert numbers == list(range(1, count + 1))
    assert len(conn_ids) == 1


def _tree_rss(process: psutil.Process) -> int:
    """RSS of the server and its children (nginx's worker runs under `python -m servers`)."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def _pipeline_unread(
    conn: RawConnection, requests: bytes, unread_s: float = 2.0
) -> tuple[threading.Thread, list[BaseException]]:
    """Write `requests` from a thread (the server's backpressure may block it) and read
    nothing for `unread_s`."""
    errors: list[BaseException] = []

    def write_all() -> None:
        try:
            conn.send(requests)
        except OSError as exc:  # reported by the caller; its reader fails too
            errors.append(exc)

    writer = threading.Thread(target=write_all, daemon=True)
    writer.start()
    time.sleep(unread_s)
    return writer, errors


# -- E. Bodies and framing -----------------------------------------------------------------------


def test_body01_ignored_body_that_looks_like_a_request(server: Server, connect: Connect) -> None:
    conn = connect(server)
    body = b"GET /x HTTP"
    assert len(body) == 11
    conn.send(post("/", body) + G("/peer"))
    first, second = conn.responses(2)
    assert (first.status, first.body) == (200, HELLO), first
    expect_keep(first, server, 2)
    info = peer(second)
    assert info["request_number"] == 2
    expect_keep(second, server, 1)
    assert server.dispatched(info["connection_id"], settle_s=0.1) == ["/", "/peer"]


def test_body02_chunk_extension_and_trailer(server: Server, connect: Connect) -> None:
    conn = connect(server)
    body = b"5;name=value\r\nhello\r\n6;x\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    conn.send(chunked_post("/", body) + G("/peer"))
    first, second = conn.responses(2)
    assert (first.status, first.body) == (200, HELLO), first
    expect_keep(first, server, 2)
    assert peer(second)["request_number"] == 2
    expect_keep(second, server, 1)
    conn.expect_open(0.1)


def test_body03_expect_100_continue(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("/peer", "Content-Length: 5", "Expect: 100-continue", method="POST"))
    interim = conn.response(timeout_s=3, interim=True)
    assert interim.status == 100, f"expected 100 Continue before the body, got {interim}"
    conn.send(b"hello")
    final = conn.response()
    assert peer(final)["request_number"] == 1
    expect_keep(final, server, 2)
    conn.send(G("/bytes/1"))
    assert conn.response().body == b"x"


def test_body04_no_body_after_head_or_204(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("/", method="HEAD") + G("/status/204") + G("/peer"))
    head = conn.response("HEAD")
    assert head.status == 200 and head.body == b"", head
    assert head.header("Content-Length") in (None, str(len(HELLO))), head
    no_content = conn.response()
    assert no_content.status == 204, no_content
    assert no_content.values("Content-Length") == [], "RFC 9110 §8.6: no Content-Length in 204"
    assert no_content.values("Transfer-Encoding") == [], no_content
    last = conn.response()  # strict parse: a stray body byte above would break this status line
    assert peer(last)["request_number"] == 3
    expect_close(last)
    conn.expect_graceful_close()
