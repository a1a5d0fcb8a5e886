"""Spec conformance (docs/keepalive-spec.md), section H (connection slots, rule 11): M = 2.

`--max-connections 2`: a third connection is not refused and not reset; the kernel completes its
handshake (the backlog has room) but the server does not accept it, so its request waits,
unanswered, until a slot frees up: the client closes one, or an idle one reaches T. With
`--reclaim-idle` the longest-idle keep-alive connection is closed for it at once (a FIN,
counted as `reclaimed`); a connection with a request in flight never is. Timing assertions are
lower bounds (a waiting request is not answered while the slots are held) and generous upper
bounds (the server's timers plus a loaded machine).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.server_pool import SUITE_T, Server, ServerPool, expect_keep
from tests.wire_client import End, G, RawConnection

Connect = Callable[..., RawConnection]
SLOTS = 2
HELD_S = 0.4  # how long the waiting connection is watched while the slots stay taken
SERVED_WITHIN_S = 3.0  # once a slot is free (a loaded machine, a thread server's poll)


def _limited(pool: ServerPool, *, reclaim: bool) -> Server:
    return pool.get(max_connections=SLOTS, reclaim_idle=reclaim)


def _idle_pair(server: Server, connect: Connect) -> list[RawConnection]:
    """Take both slots with keep-alive connections, each answered once and now idle."""
    held = []
    for _ in range(SLOTS):
        conn = connect(server)
        conn.send(G("/"))
        expect_keep(conn.response(), server, 2)
        held.append(conn)
    return held


def _counters_once(server: Server, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The counters once `done` holds of them, or after 3 s (closes are counted a little later
    than the client sees them)."""
    deadline = time.monotonic() + 3.0
    while not done(snap := server.counters()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return snap


def _expect_waiting(conn: RawConnection, for_s: float = HELD_S) -> None:
    """Connected (the kernel's handshake) and its request sent, but nothing back: not a
    refusal, not a reset, not an answer."""
    ending = conn.wait_end(for_s)
    assert ending.kind is End.OPEN, f"the waiting connection ended ({ending.kind.value})"
    assert ending.data == b"", f"answered while every slot was taken: {ending.data[:120]!r}"


def test_slot01_waits_in_the_backlog_until_a_connection_closes(
    pool: ServerPool, connect: Connect
) -> None:
    server = _limited(pool, reclaim=False)
    before = server.counters()
    first, _second = _idle_pair(server, connect)
    newcomer = connect(server)
    newcomer.send(G("/"))
    _expect_waiting(newcomer)
    first.close()  # the client frees a slot
    resp = newcomer.response(timeout_s=SERVED_WITHIN_S)
    assert resp.status == 200, resp
    expect_keep(resp, server, 2)
    after = server.counters()
    assert after["accept_pauses"] > before["accept_pauses"], after
    assert after["closed"]["reclaimed"] == before["closed"]["reclaimed"], after


def test_slot02_waits_until_an_idle_connection_times_out(
    pool: ServerPool, connect: Connect
) -> None:
    server = _limited(pool, reclaim=False)
    _idle_pair(server, connect)
    idle_since = time.monotonic()
    newcomer = connect(server)
    newcomer.send(G("/"))
    _expect_waiting(newcomer)
    resp = newcomer.response(timeout_s=server.close_limit_s() + SERVED_WITHIN_S)
    waited = time.monotonic() - idle_since
    assert resp.status == 200, resp
    # Served once the first idle connection reached T, not before (the seed's answer).
    assert waited >= SUITE_T - 0.05, f"served {waited:.2f} s after the slots went idle, T is 1 s"


def test_slot03_reclaim_idle_closes_the_longest_idle_for_the_newcomer(
    pool: ServerPool, connect: Connect
) -> None:
    server = _limited(pool, reclaim=True)
    before = server.counters()
    older, newer = _idle_pair(server, connect)
    newcomer = connect(server)
    sent = time.monotonic()
    newcomer.send(G("/"))
    resp = newcomer.response(timeout_s=SERVED_WITHIN_S)
    served_after = time.monotonic() - sent
    assert resp.status == 200, resp
    assert served_after < SUITE_T, f"served after {served_after:.2f} s: it waited for T"
    older.expect_graceful_close(timeout_s=SERVED_WITHIN_S)  # FIN, no bytes, no reset
    assert newer.wait_end(0.2).kind is End.OPEN, "the newer idle connection was closed too"
    newer.send(G("/"))
    expect_keep(newer.response(), server, 1)
    after = _counters_once(
        server, lambda c: c["closed"]["reclaimed"] > before["closed"]["reclaimed"]
    )
    assert after["closed"]["reclaimed"] == before["closed"]["reclaimed"] + 1, after


def test_slot04_reclaim_idle_never_cuts_a_request_in_flight(
    pool: ServerPool, connect: Connect
) -> None:
    server = _limited(pool, reclaim=True)
    short, long = connect(server), connect(server)
    short.send(G("/sleep?ms=600"))
    long.send(G("/sleep?ms=1400"))
    time.sleep(0.1)  # both requests are being handled: nothing is idle
    newcomer = connect(server)
    newcomer.send(G("/"))
    _expect_waiting(newcomer, 0.3)
    assert short.response(timeout_s=SERVED_WITHIN_S).status == 200
    # `short` is idle now, the longest idle one: closed for the newcomer.
    assert newcomer.response(timeout_s=SERVED_WITHIN_S).status == 200
    short.expect_graceful_close(timeout_s=SERVED_WITHIN_S)
    assert long.response(timeout_s=SERVED_WITHIN_S).status == 200, "the request in flight was cut"
