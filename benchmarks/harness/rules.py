"""Verdicts on a measured cell: was the mode achieved (valid), was the client the bottleneck.

Pure functions of numbers, so they are unit-tested exhaustively and applied the same way by
every cell. The server's counters (connections accepted, requests served: deltas over the client's
whole run, warm-up included) are compared with the client's own `requests_total` over the same
span:

* pooled: every load process keeps `concurrency` connections, and the server closes one after
  every `keepalive_max` requests, so about `concurrency * load_processes +
  ceil(requests_total / keepalive_max)` connections; more than 1.25x that (+2 for rounding)
  means connections were not reused. And the server must have seen `concurrency` connections
  open at once (at least 90% of them): fewer means the cell ran at a lower concurrency than it
  claims (users that never spawned, a capped pool).
* unpooled: one connection per request: requests per connection must be <= 1.1 and connections
  >= 0.9 x requests_total.
* either: the server must have served about what the client sent (else the client measured
  something else), the client must have accounted for about what the server served (else it
  lost measurements, e.g. a Locust worker's report), the client must have completed requests,
  and errors must stay under 1%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.clientspec import Mode
from benchmarks.harness.procs import Cores

CLIENT_BOUND_PCT = 85.0
FOREIGN_LOAD_PCT = 20.0  # CPU used on our cores by other processes before a row says "contended"
POOLED_SLACK = 1.25
POOLED_EXTRA = 2
UNPOOLED_MIN_SHARE = 0.9
UNPOOLED_MAX_REQ_PER_CONN = 1.1
SERVED_MIN_SHARE = 0.9
ACCOUNTED_SLACK = 1.1  # served may exceed the client's total by requests in flight at its stop
POOLED_MIN_PEAK_SHARE = 0.9
MAX_ERROR_SHARE = 0.01


@dataclass(frozen=True)
class Verdict:
    valid: bool
    reason: str = ""  # why not valid; empty when valid


def expected_pooled_connections(
    concurrency: int, load_processes: int, requests_total: int, keepalive_max: int
) -> int:
    recycled = math.ceil(requests_total / keepalive_max) if keepalive_max > 0 else 0
    return concurrency * max(load_processes, 1) + recycled


def judge(
    *,
    mode: Mode,
    concurrency: int,
    load_processes: int,
    keepalive_timeout_s: float,
    keepalive_max: int,
    requests: int,
    errors: int,
    requests_total: int,
    connections_opened: int,
    requests_served: int,
    peak_open_connections: int,
) -> Verdict:
    """Valid when the client measured our server in the mode it claims.

    `concurrency` is the connections the client holds at once (1 for a sequential client).
    """
    if requests <= 0:
        return Verdict(False, "no request completed in the measured window")
    if errors > MAX_ERROR_SHARE * (requests + errors):
        return Verdict(False, f"{errors} errors for {requests} requests (> {MAX_ERROR_SHARE:.0%})")
    if requests_served < SERVED_MIN_SHARE * requests_total:
        return Verdict(
            False,
            f"server served {requests_served} requests but the client sent {requests_total}: "
            "the client did not measure this server",
        )
    in_flight = concurrency * max(load_processes, 1) + POOLED_EXTRA
    if requests_served > ACCOUNTED_SLACK * requests_total + in_flight:
        return Verdict(
            False,
            f"server served {requests_served} requests but the client accounted for only "
            f"{requests_total}: the client lost measurements",
        )
    if connections_opened <= 0:
        return Verdict(False, "the server accepted no connection")
    if mode is Mode.POOLED:
        if keepalive_timeout_s == 0:
            return Verdict(
                False, "keep-alive disabled on the server (timeout 0): pooled mode impossible"
            )
        expected = expected_pooled_connections(
            concurrency, load_processes, requests_total, keepalive_max
        )
        limit = POOLED_SLACK * expected + POOLED_EXTRA
        if connections_opened > limit:
            return Verdict(
                False,
                f"pooled but {connections_opened} connections opened for {requests_total} requests "
                f"(expected about {expected}): connections were not reused",
            )
        if peak_open_connections < POOLED_MIN_PEAK_SHARE * concurrency:
            return Verdict(
                False,
                f"pooled at concurrency {concurrency} but at most {peak_open_connections} "
                "connections were open at once",
            )
        return Verdict(True)
    per_conn = requests_served / connections_opened
    if (
        per_conn > UNPOOLED_MAX_REQ_PER_CONN
        or connections_opened < UNPOOLED_MIN_SHARE * requests_total
    ):
        return Verdict(
            False,
            f"unpooled but {connections_opened} connections for {requests_total} requests "
            f"({per_conn:.2f} requests per connection): connections were reused",
        )
    return Verdict(True)


def client_cpu_pct(tree_pct: float, max_proc_pct: float, client_cores: int) -> float:
    """The busiest client core's share, from what psutil can see.

    Pinned to one core (the usual case), every client process shares it: the tree's total is that
    core's load. Spread over n cores, the tree's average per core understates the busiest one and
    a single process cannot exceed one core, so take the larger of the two.
    """
    if client_cores <= 1:
        return tree_pct
    return max(tree_pct / client_cores, max_proc_pct)


def is_client_bound(cpu_pct: float) -> bool:
    return cpu_pct >= CLIENT_BOUND_PCT


def contention_note(
    cores: Cores, core_busy_pct: dict[int, float], server_pct: float, client_pct: float
) -> str:
    """`contended: ...` when other processes used our pinned cores, else empty.

    A client at 30% of its core looks idle, but if the core was 100% busy it was starved: the
    row then measures the machine's other tenants as much as keep-alive."""
    parts = []
    for role, core, ours in (
        ("server", cores.server, server_pct),
        ("client", cores.client, client_pct),
    ):
        busy = core_busy_pct.get(core)
        if busy is not None and busy - ours >= FOREIGN_LOAD_PCT:
            parts.append(f"{role} core {core} {busy:.0f}% busy, {ours:.0f}% ours")
    return "contended: " + ", ".join(parts) if parts else ""
