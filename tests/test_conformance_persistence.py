"""Spec conformance (docs/keepalive-spec.md), sections A (persistence) and B (max requests).

Suite configuration T = 1 s, N = 3, H = 1 s unless a case needs another. The spec's `G(a)`
paths are 404s in `servers.endpoints`; cases that expect 200 use `/`, `/bytes/N` or `/peer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from servers.endpoints import HELLO
from tests.server_pool import Server, ServerPool, expect_close, expect_keep, peer, run_subcases
from tests.wire_client import End, G, RawConnection

Connect = Callable[..., RawConnection]


# -- A. Persistence ------------------------------------------------------------------------------


def ka01_check(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("/"))
    first = conn.response()
    assert (first.status, first.framing, first.body) == (200, "length", HELLO), first
    expect_keep(first, server, 2)
    conn.expect_open(0.2)
    conn.send(G("/bytes/10"))
    second = conn.response()
    assert (second.status, second.framing, second.body) == (200, "length", b"x" * 10), second
    expect_keep(second, server, 1)
    conn.expect_open(0.1)


def test_ka01_two_requests_on_one_socket(server: Server, connect: Connect) -> None:
    ka01_check(server, connect)


def ka02_check(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("/", "Connection: close"))
    resp = conn.response()
    assert (resp.status, resp.body) == (200, HELLO), resp
    expect_close(resp)
    conn.expect_graceful_close()


def test_ka02_connection_close(server: Server, connect: Connect) -> None:
    ka02_check(server, connect)


def test_ka03_http10_without_keep_alive(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(b"GET / HTTP/1.0\r\n\r\n")
    resp = conn.response()
    assert resp.status == 200, resp
    assert resp.framing == "length", f"HTTP/1.0 response framed by {resp.framing}"
    assert resp.values("Transfer-Encoding") == []
    assert resp.body == HELLO
    expect_close(resp)
    conn.expect_graceful_close()


def test_ka04_http10_keep_alive_twice(server: Server, connect: Connect) -> None:
    conn = connect(server)
    for remaining in (2, 1):
        conn.send(G("/", "Connection: keep-alive", version="1.0"))
        resp = conn.response()
        assert (resp.status, resp.framing, resp.body) == (200, "length", HELLO), resp
        expect_keep(resp, server, remaining)
        conn.expect_open(0.15)


def test_ka05_close_token_variants(server: Server, connect: Connect) -> None:
    def variant(value: str) -> Callable[[], None]:
        def check() -> None:
            conn = connect(server)
            conn.send(G("/", f"Connection: {value}"))
            resp = conn.response()
            assert resp.status == 200, resp
            expect_close(resp)
            conn.expect_graceful_close()

        return check

    run_subcases({v: variant(v) for v in ("CLOSE", "keep-alive, close", "TE, close")})


def test_ka06_handler_closes_pipelined_request_ignored(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("/peer"))
    conn_id = peer(conn.response())["connection_id"]
    conn.send(G("/close") + G("/b-never"))
    resp = conn.response()
    assert (resp.status, resp.body) == (200, b"closing\n"), resp
    expect_close(resp)
    conn.expect_graceful_close()
    assert server.dispatched(conn_id) == ["/peer", "/close"]


@pytest.mark.parametrize("subcase", ["asked", "decided"])
def test_ka07_asked_close_is_at_once_decided_close_lingers(
    server: Server, connect: Connect, subcase: str
) -> None:
    """Rule 4 as amended: `Connection: close` alone in its write closes at once (a byte sent
    after the FIN gets a reset); after the N-th response (MAX-01) the server lingers and reads
    and discards that byte."""
    if subcase == "asked":
        conn = connect(server)
        conn.send(G("/", "Connection: close"))
        resp = conn.response()
        assert (resp.status, resp.body) == (200, HELLO), resp
        expect_close(resp)
        conn.expect_graceful_close()
        assert conn.poke_after_close(3.0), "no reset: the server lingered after an asked close"
        return
    conn = connect(server)
    for remaining in (2, 1):
        conn.send(G("/"))
        expect_keep(conn.response(), server, remaining)
    conn.send(G("/"))
    expect_close(conn.response())
    conn.expect_graceful_close()
    assert not conn.poke_after_close(0.5), "reset: the server did not linger after the N-th"
    conn.shutdown_write()  # the linger ends at our EOF


# -- B. Max requests -----------------------------------------------------------------------------


def max01_check(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("/peer"))
    first = conn.response()
    conn_id = peer(first)["connection_id"]
    expect_keep(first, server, 2)
    conn.send(G("/"))
    expect_keep(conn.response(), server, 1)
    conn.send(G("/bytes/3"))
    third = conn.response()
    assert (third.status, third.body) == (200, b"xxx"), third
    expect_close(third)
    conn.expect_graceful_close()
    conn.try_send(G("/fourth"))  # may fail: the server is gone
    ending = conn.wait_end(0.3)
    assert ending.data == b"", f"a response after the N-th: {ending.data[:200]!r}"
    assert ending.kind is not End.OPEN
    assert server.dispatched(conn_id) == ["/peer", "/", "/bytes/3"]


def test_max01_three_sequential_requests(server: Server, connect: Connect) -> None:
    max01_check(server, connect)


def test_max02_five_pipelined_three_answered(server: Server, connect: Connect) -> None:
    max02_check(server, connect)


def max02_check(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("/peer") + G("/bytes/1") + G("/bytes/2") + G("/fourth") + G("/fifth"))
    # Let the server answer and close before reading: a close that leaves the unread 4th and
    # 5th requests in its receive buffer turns into a reset that destroys our unread responses.
    time.sleep(0.3)
    first, second, third = conn.responses(3)
    info = peer(first)
    assert info["request_number"] == 1
    expect_keep(first, server, 2)
    assert (second.status, second.body) == (200, b"x"), second
    expect_keep(second, server, 1)
    assert (third.status, third.body) == (200, b"xx"), third
    expect_close(third)
    conn.expect_graceful_close()
    assert server.dispatched(info["connection_id"]) == ["/peer", "/bytes/1", "/bytes/2"]


def test_max03_n1_and_t0_every_response_closes(pool: ServerPool, connect: Connect) -> None:
    def variant(server: Server) -> Callable[[], None]:
        def check() -> None:
            ids = []
            for _ in range(2):
                conn = connect(server)
                conn.send(G("/peer") + G("/bytes/1"))
                resp = conn.response()
                info = peer(resp)
                assert info["request_number"] == 1
                expect_close(resp)
                conn.expect_graceful_close()
                assert server.dispatched(info["connection_id"], settle_s=0.1) == ["/peer"]
                ids.append(info["connection_id"])
            assert ids[0] != ids[1]

        return check

    run_subcases(
        {
            "N=1": variant(pool.get(keepalive_max=1)),
            "T=0": variant(pool.get(keepalive_timeout_s=0.0)),
        }
    )


def test_max04_404_counts_and_keeps(pool: ServerPool, connect: Connect) -> None:
    server = pool.get(keepalive_max=2)
    conn = connect(server)
    conn.send(G("/missing"))
    first = conn.response()
    assert first.status == 404, first
    expect_keep(first, server, 1)
    conn.expect_open(0.1)
    conn.send(G("/"))
    second = conn.response()
    assert (second.status, second.body) == (200, HELLO), second
    expect_close(second)
    conn.expect_graceful_close()
