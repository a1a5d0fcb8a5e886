"""Spec conformance (docs/keepalive-spec.md), section C (idle timeout, deadlines), T = H = 1 s.

A close must come no earlier than the timeout (minus a few ms of measurement skew: the client's
clock starts when it has read the last byte) and no later than T + 0.5 s (thread-based servers:
T + 1 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.server_pool import EARLY_SLACK_S, SUITE_H, SUITE_T, Server, expect_keep, peer
from tests.wire_client import End, Ending, G, RawConnection

Connect = Callable[..., RawConnection]


def assert_closed_in_window(ending: Ending, low_s: float, high_s: float) -> None:
    assert ending.kind is not End.OPEN, f"still open {ending.elapsed_s:.2f} s later"
    assert ending.elapsed_s >= low_s - EARLY_SLACK_S, (
        f"closed after {ending.elapsed_s:.3f} s, before the {low_s:g} s timeout"
    )
    assert ending.elapsed_s <= high_s, f"closed after {ending.elapsed_s:.2f} s, limit {high_s:g} s"


def idle01_check(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("/"))
    expect_keep(conn.response(), server, 2)
    since = time.monotonic()
    ending = conn.wait_end(server.close_limit_s() + 1.0, since=since)
    assert ending.data == b"", f"bytes on an idle connection: {ending.data[:200]!r}"
    assert_closed_in_window(ending, SUITE_T, server.close_limit_s())
    assert ending.kind is End.EOF, "idle close was a reset, not a graceful close"


def test_idle01_idle_connection_closed_silently_after_t(server: Server, connect: Connect) -> None:
    idle01_check(server, connect)


def test_idle02_requests_within_t_all_answered(server: Server, connect: Connect) -> None:
    conn = connect(server)
    infos = []
    for k in range(3):
        # 0.7 s of silence after reading each response (the spec: "each after reading the
        # previous response"), so a slow test process cannot push a gap past T.
        if k:
            time.sleep(0.7)
        assert conn.wait_end(0.02).kind is End.OPEN, "closed before the next request"
        conn.send(G("/peer"))
        resp = conn.response()
        infos.append(peer(resp))
        if k < 2:
            expect_keep(resp, server, 2 - k)
    assert [i["request_number"] for i in infos] == [1, 2, 3]
    assert len({i["connection_id"] for i in infos}) == 1


def test_idle03_slow_handler_not_cut_then_idle_t(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("/sleep?ms=2000"))
    sent = time.monotonic()
    resp = conn.response(timeout_s=10)
    assert time.monotonic() - sent >= 1.9, "the handler did not sleep 2 s"
    assert (resp.status, resp.body) == (200, b"slept\n"), resp
    expect_keep(resp, server, 2)
    ending = conn.wait_end(server.close_limit_s() + 1.0, since=time.monotonic())
    assert ending.data == b"", f"bytes on an idle connection: {ending.data[:200]!r}"
    assert_closed_in_window(ending, SUITE_T, server.close_limit_s())


def test_idle04_silent_connection_closed_after_h(server: Server, connect: Connect) -> None:
    idle04_check(server, connect(server))


def idle04_check(server: Server, conn: RawConnection) -> None:
    ending = conn.wait_end(server.close_limit_s(SUITE_H) + 1.0)
    assert ending.data == b"" or ending.data.startswith(b"HTTP/1.1 408 "), (
        f"expected silence or a 408, got {ending.data[:200]!r}"
    )
    assert_closed_in_window(ending, SUITE_H, server.close_limit_s(SUITE_H))
    assert ending.kind is End.EOF, "header-timeout close was a reset"


def test_idle05_slowloris_trickle_does_not_extend_h(server: Server, connect: Connect) -> None:
    conn = connect(server)
    trickle = iter(b"X-Slow: " + b"a" * 100)
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
    first_byte = time.monotonic()
    received = b""
    ending = conn.wait_end(0.3, since=first_byte)
    while ending.kind is End.OPEN and ending.elapsed_s < 5.0:
        received += ending.data
        conn.try_send(bytes([next(trickle)]))
        ending = conn.wait_end(0.3, since=first_byte)
    received += ending.data
    assert received == b"" or received.startswith(b"HTTP/1.1 408 "), (
        f"expected silence or a 408, got {received[:200]!r}"
    )
    assert_closed_in_window(ending, SUITE_H, server.close_limit_s(SUITE_H))


def test_idle06_short_body_never_dispatched(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(b"POST /sleep?ms=0 HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    ending = conn.wait_end(server.close_limit_s() + 1.5, since=time.monotonic())
    assert not ending.data.startswith(b"HTTP/1.1 2"), (
        f"a request with an incomplete body was answered: {ending.data[:200]!r}"
    )
    assert ending.data == b"" or ending.data[9:12] in (b"408", b"400"), ending.data[:200]
    assert_closed_in_window(ending, min(SUITE_T, SUITE_H), server.close_limit_s() + 0.5)
