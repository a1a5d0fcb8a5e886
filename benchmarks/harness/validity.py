"""Verdicts on a measured cell: was the mode achieved (valid), was the client the bottleneck.

Pure functions of numbers, so they are unit-tested exhaustively and applied the same way by
every cell. Contention (other processes on our pinned cores) is judged here too: see
`server_contended` and `is_client_bound`.

The server's counters (connections accepted, requests served) are deltas over the client's
whole run, warm-up included: the server cannot tell the client's measured window. They are
compared with the client's own counts over that same span (`requests_total`, and its own count
of the connections it opened): they must agree, which makes the client's count of the
connections it opened inside the window (the row's `connections_opened`, the span of
`requests`) the server's too. The mode must hold over both spans: over the whole run by
`requests_total` and the server's count, and over the window by `sent` (requests and errors of
the window) and `opened` (its connections), give or take the requests in flight at the
window's edges:

* pooled: impossible when the server allows one request per connection (keep-alive timeout 0
  or keep-alive max 1). Every load process keeps `concurrency` connections, and the server
  closes one after every `keepalive_max` requests, so at most about `concurrency *
  load_processes + ceil(sent / keepalive_max)` connections; more than 1.25x that (+2 for rounding)
  means connections were not reused. And the server must have seen `concurrency` connections
  open at once (at least 90% of them): fewer means the cell ran at a lower concurrency than it
  claims (users that never spawned, a capped pool).
* unpooled: one connection per request: sent per connection must be <= 1.1 and connections
  >= 0.9 x sent. Connections are short-lived, so the peak is checked leniently: at
  least half of `concurrency` open at once (the committed runs peak at 1.0-1.6x concurrency).
* either: the server must have served about what the client sent (else the client measured
  something else), the client must have accounted for about what the server served (else it
  lost measurements, e.g. a Locust worker's report), the server must have accepted about the
  connections the client counted (else its window count is not to be trusted), the client must
  have completed requests, and errors must stay under 1%.
* over TLS (our servers count `tls_handshakes` and `tls_resumed`): a client that never offers
  a session must have made full handshakes only; a resuming one, unpooled, must have resumed
  all but each load process's first (+2), and seen as many resumed as the server counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.clients.contract import Mode
from benchmarks.harness.procs import Cores

CLIENT_BOUND_PCT = 85.0  # the client's own CPU, or its core's total, at this % or more
FOREIGN_LOAD_PCT = 20.0  # CPU of other processes on the server's core that makes a row invalid
POOLED_SLACK = 1.25
POOLED_EXTRA = 2
UNPOOLED_MIN_SHARE = 0.9
UNPOOLED_MAX_REQ_PER_CONN = 1.1
SERVED_MIN_SHARE = 0.9
ACCOUNTED_SLACK = 1.1  # served may exceed the client's total by requests in flight at its stop
COUNTED_SLACK = 0.05  # client's and server's run-wide connection counts differ by at most this
POOLED_MIN_PEAK_SHARE = 0.9
UNPOOLED_MIN_PEAK_SHARE = 0.5
MAX_ERROR_SHARE = 0.01
# A target's keep-alive limit not declared (-1): pooled must still reuse, at least this many
# requests per connection on average beyond the ones each connection opened with.
UNKNOWN_MIN_REUSE = 10


@dataclass(frozen=True)
class Verdict:
    valid: bool
    reason: str = ""  # why not valid; empty when valid


def expected_pooled_connections(
    concurrency: int, load_processes: int, requests_total: int, keepalive_max: int
) -> int:
    if keepalive_max < 0:  # not known (a target): allow a limit as low as UNKNOWN_MIN_REUSE
        keepalive_max = UNKNOWN_MIN_REUSE
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
    connections_counted: int = -1,
    connections_window: int = -1,
) -> Verdict:
    """Valid when the client measured our server in the mode it claims.

    `concurrency` is the connections the client holds at once (1 for a sequential client).
    `connections_opened` and `requests_served` are the server's, over the client's whole run;
    `connections_counted` the client's own count over that run, `connections_window` over its
    window (-1: not counted).
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
    if connections_counted >= 0 and abs(connections_opened - connections_counted) > (
        COUNTED_SLACK * connections_opened + in_flight
    ):
        return Verdict(
            False,
            f"server accepted {connections_opened} connections but the client counted "
            f"{connections_counted}: its count of the window's connections is not the server's",
        )
    spans = [(requests_total, connections_opened, 0)]  # the whole run: no request cut in two
    if connections_window >= 0 and connections_counted >= 0:
        spans.append((requests + errors, connections_window, in_flight))
    for sent, opened, edge in spans:
        verdict = _mode_verdict(
            mode, concurrency, load_processes, keepalive_timeout_s, keepalive_max, sent, opened,
            edge, peak_open_connections,
        )  # fmt: skip
        if not verdict.valid:
            return verdict
    return Verdict(True)


def _mode_verdict(
    mode: Mode, concurrency: int, load_processes: int, keepalive_timeout_s: float,
    keepalive_max: int, sent: int, opened: int, edge: int, peak_open_connections: int,
) -> Verdict:  # fmt: skip
    """The mode's rules over one span: `sent` requests, `opened` connections in it. `edge`:
    requests that may straddle the span's ends (a window that closes mid-traffic, as Locust's
    does, can see a request's connect but not its response, or the reverse)."""
    if mode is Mode.POOLED:
        if keepalive_timeout_s == 0 or keepalive_max == 1:
            why = "timeout 0" if keepalive_timeout_s == 0 else "max 1 request per connection"
            return Verdict(
                False, f"keep-alive disabled on the server ({why}): pooled mode impossible"
            )
        expected = expected_pooled_connections(concurrency, load_processes, sent, keepalive_max)
        limit = POOLED_SLACK * expected + POOLED_EXTRA
        if opened > limit:
            return Verdict(
                False,
                f"pooled but {opened} connections opened for {sent} requests "
                f"(expected at most about {expected}): connections were not reused",
            )
        if peak_open_connections < POOLED_MIN_PEAK_SHARE * concurrency:
            return Verdict(
                False,
                f"pooled at concurrency {concurrency} but at most {peak_open_connections} "
                "connections were open at once",
            )
        return Verdict(True)
    per_conn = sent / opened if opened > 0 else math.inf
    if (
        sent - edge > UNPOOLED_MAX_REQ_PER_CONN * opened
        or opened + edge < UNPOOLED_MIN_SHARE * sent
    ):
        return Verdict(
            False,
            f"unpooled but {opened} connections for {sent} requests "
            f"({per_conn:.2f} requests per connection): connections were reused",
        )
    if peak_open_connections < UNPOOLED_MIN_PEAK_SHARE * concurrency:
        return Verdict(
            False,
            f"unpooled at concurrency {concurrency} but at most {peak_open_connections} "
            "connections were open at once",
        )
    return Verdict(True)


# A resuming client's processes (the probe, each pyperf worker) start with a full handshake:
# allowed beside each one, this many more (a reconnect whose session the server had dropped).
RESUME_MISSES = 2


def judge_tls(
    *,
    resuming: bool,
    mode: Mode,
    load_processes: int,
    handshakes: int,
    resumed: int,
    client_resumed: int,
) -> Verdict:
    """Valid when the server's TLS handshakes (its `tls_handshakes` and `tls_resumed` deltas)
    were the kind the client claims: all full for a client that never offers a session;
    unpooled, all but each process's first resumed for a resuming client, as many as the
    client itself saw resumed (`client_resumed`, -1 when it does not count)."""
    if not resuming:
        if resumed:
            return Verdict(
                False,
                f"{resumed} of {handshakes} TLS handshakes resumed a session: not the full "
                "handshakes this client makes",
            )
        return Verdict(True)
    if client_resumed >= 0 and abs(client_resumed - resumed) > RESUME_MISSES:
        return Verdict(
            False,
            f"the client saw {client_resumed} TLS sessions resumed, the server {resumed}",
        )
    full = handshakes - resumed
    if mode is Mode.UNPOOLED and full > max(load_processes, 1) + RESUME_MISSES:
        return Verdict(
            False,
            f"resuming client, but {full} of {handshakes} TLS handshakes were full: sessions "
            "were not resumed",
        )
    return Verdict(True)


def is_client_bound(client_pct: float, client_core_busy_pct: float | None = None) -> bool:
    """The client used 85% of its core, or its core was 85% busy with anything (ours and
    others'): either way the client could not go faster, so its throughput is a lower bound.

    A client at 30% of its core looks idle, but if the core was 100% busy it was starved.
    Over the delay line `client_pct` includes the relay's CPU (rows.measured_row adds it): the
    relay runs on the client's core and forwards every packet, so it is the client side's load."""
    busy = client_core_busy_pct if client_core_busy_pct is not None else 0.0
    return max(client_pct, busy) >= CLIENT_BOUND_PCT


def server_contended(cores: Cores, core_busy_pct: dict[int, float], server_pct: float) -> str:
    """`contended: ...` (the row's invalid reason) when other processes used >= 20% of the
    server's core, else empty: the row then measures the machine's other tenants as much as
    the server. The harness is pinned to the client's core, so none of this is ours."""
    busy = core_busy_pct.get(cores.server)
    if not cores.pinned or busy is None or busy - server_pct < FOREIGN_LOAD_PCT:
        return ""
    return (
        f"contended: server core {cores.server} {busy:.0f}% busy, {server_pct:.0f}% by the "
        f"server: {busy - server_pct:.0f}% was other processes'"
    )


def core_note(
    cores: Cores, core_busy_pct: dict[int, float], server_pct: float, client_pct: float,
    harness_pct: float, relay_pct: float | None = None,
) -> str:  # fmt: skip
    """Both cores' total load beside our share of it, for the note column; the delay line's
    relay, pinned to the client's core, is listed with the client's side."""
    server, client = core_busy_pct.get(cores.server), core_busy_pct.get(cores.client)
    if not cores.pinned or server is None or client is None:
        return ""
    relay = f"{relay_pct:.0f}% relay, " if relay_pct is not None else ""
    return (
        f"cores: server {cores.server} {server:.0f}% busy ({server_pct:.0f}% server), "
        f"client {cores.client} {client:.0f}% busy ({client_pct:.0f}% client, "
        f"{relay}{harness_pct:.1f}% harness)"
    )
