"""The page load on paper: how many round trips a page of N resources needs.

Assumptions: every response fits in one flight (a resource of a few KiB is well under the
initial congestion window of ten segments, about 14 KiB), so a request costs exactly one round
trip; server time is nil; the client fetches the document on one connection, then its N
resources over at most C = 6 connections to the host (a browser's HTTP/1.1 limit), one request
at a time per connection (no pipelining), each new connection costing h round trips before its
first request can leave:

    h = 1  TCP (SYN, SYN-ACK; the request rides with the final ACK)
    h = 2  TCP + TLS 1.3, full or resumed (one round trip for the handshake: no 0-RTT here)
    h = 3  TCP + TLS 1.2 full (two round trips); a resumed TLS 1.2 session is h = 2

With keep-alive (the server keeps connections for more requests than a page needs):

    h             the first connection
  + 1             the document (the page's resource list is known only once it has arrived)
  + min(N, h)     meanwhile the other min(C, N) - 1 connections open, which takes h round
                  trips; the first connection, idle now, fetches one resource per round trip
  + ceil((N - min(N, h)) / C)   the rest, C at a time
  = 1 + 1 + 1 + ceil((N - 1) / 6) for plain HTTP: 15 round trips for N = 70, 5 for N = 10

(The issue's first form, 1 + 1 + 1 + ceil(N / 6), differs only when N - 1 is a multiple of 6:
then the first connection's resource during the handshake round is counted once too often. For
N of 2 to h the new connections' first resources, h + 1 round trips, finish last.)

Without keep-alive every request needs a connection of its own, C at a time, h + 1 each:

    (h + 1) * (1 + ceil(N / C)) = 2 + 2 * ceil(N / 6) for plain HTTP: 26 for N = 70

The saving is largest where it matters: at N = 70, 11 of 26 round trips plain (42%) and 22
of 39 over TLS 1.3 (56%). A server's keep-alive max M between those: `round_trips` simulates
the same greedy client (the first free connection takes the next resource; a connection that
carried M requests is closed by the server and replaced) for any M, and gives both closed forms
above for M unlimited and M = 1 (tests check that they agree).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

CONNECTIONS_PER_HOST = 6
UNLIMITED = 0  # a keep-alive max of 0: the server never closes for the count


@dataclass(frozen=True)
class Schedule:
    """The paper load: round trips to the load event and connections it opens."""

    round_trips: int
    connections: int


def handshake_round_trips(tls: str, *, resumed: bool = False) -> int:
    """h: round trips before a new connection can carry its first request.

    `tls` is "none", "1.3" or "1.2"; TLS 1.3 resumption saves CPU, not a round trip."""
    if tls == "none":
        return 1
    if tls == "1.3":
        return 2
    if tls == "1.2":
        return 2 if resumed else 3
    raise ValueError(f"unknown TLS mode {tls!r}")


def keepalive_round_trips(resources: int, handshake: int) -> int:
    """The closed form with keep-alive (see the module docstring). With 2 <= N <= h the
    resources handed to new connections at once (h + 1 round trips) finish last."""
    if resources <= 1:
        return handshake + 1 + resources
    first = min(resources, handshake)
    rest = first + math.ceil((resources - first) / CONNECTIONS_PER_HOST)
    return handshake + 1 + max(handshake + 1, rest)


def no_keepalive_round_trips(resources: int, handshake: int) -> int:
    """The closed form without keep-alive: every request on a connection of its own."""
    return (handshake + 1) * (1 + math.ceil(resources / CONNECTIONS_PER_HOST))


def schedule(
    resources: int,
    handshake: int,
    max_requests: int = UNLIMITED,
    connections: int = CONNECTIONS_PER_HOST,
) -> Schedule:
    """Simulate the greedy client in whole round trips.

    `max_requests` is what a connection carries before the server closes it: UNLIMITED (0)
    for keep-alive, 1 for none (the client's own unpooled mode is the same schedule). The
    document goes first on connection 1; once it has arrived, `min(connections, resources)`
    workers share the resources: worker 1 keeps connection 1 if the server left it open,
    the others open connections of their own.
    """
    if resources < 0 or handshake < 1 or max_requests < 0 or connections < 1:
        raise ValueError("resources >= 0, handshake >= 1, max_requests >= 0, connections >= 1")
    capacity = max_requests or math.inf
    start = handshake + 1  # connection 1 open, document received
    opened = 1
    end = start
    pending = resources
    # (time the worker is free, worker number, requests its connection may still carry)
    workers = [(start, 0, capacity - 1)]
    workers += [(start, i, 0) for i in range(1, min(connections, resources))]
    heapq.heapify(workers)
    while pending and workers:
        free_at, number, left = heapq.heappop(workers)
        if left <= 0:  # closed by the server (or never opened): a new connection first
            free_at += handshake
            left = capacity
            opened += 1
        pending -= 1
        free_at += 1
        end = max(end, free_at)
        heapq.heappush(workers, (free_at, number, left - 1))
    return Schedule(round_trips=end, connections=opened)


def model_ms(round_trips: int, rtt_ms: float) -> float:
    return round_trips * rtt_ms
