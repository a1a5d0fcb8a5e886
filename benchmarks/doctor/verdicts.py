"""Verdicts: does a client's or load balancer's idle limit race with the server's timeout?

A pooled connection is safe to reuse only while the server still keeps it. When the client keeps
idle connections longer than the server does, the server closes one just as the client sends on
it, and the request fails (a reset, a 502 from a load balancer) or is retried. The side that
keeps connections for less time must be the client, by a margin that covers one round trip and
timer slack: SAFETY_MARGIN_S, the same second Node's Agent subtracts from the server's hint.

A server that never closed within --max-idle has an unknown timeout: clients with a longer idle
limit are judged unknown, never safe.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from benchmarks.doctor.defaults import Peer
from benchmarks.doctor.probes import Findings

SAFETY_MARGIN_S = 1.0
HINT_SLACK_S = 0.05  # a close this much before the advertised timeout is the server's, not jitter
EARLY_HINT_S = 1.5  # Node's server keeps a socket 1 s past what it advertises, on purpose


class Status(enum.StrEnum):
    OK = "ok"  # the peer lets go first, by at least the margin
    TIGHT = "tight"  # first, but by less than the margin
    RACES = "races"  # the peer keeps connections at least as long as the server
    UNKNOWN = "unknown"  # the server's timeout was not found
    NA = "n/a"  # the server does not keep connections alive


@dataclass(frozen=True)
class ServerIdle:
    """What the verdicts need from the measurements."""

    kept_alive: bool
    timeout_s: float | None  # measured idle timeout
    at_least_s: float | None  # lower bound when no close was seen (None when not even that)
    advertised_timeout_s: float | None = None


@dataclass(frozen=True)
class Verdict:
    peer: str
    kind: str
    default_idle_s: float | None
    effective_idle_s: float | None  # after the Keep-Alive hint, for hint-aware clients
    status: Status
    why: str
    fix: str | None
    source: str


def _s(value: float) -> str:
    return f"{value:g} s"


def effective_idle(peer: Peer, advertised_timeout_s: float | None) -> tuple[float | None, bool]:
    """(idle limit in effect, reuses at all) given the server's `Keep-Alive: timeout=`.

    Node's Agent takes `timeout=` minus one second when that is below its own timeout, and does
    not keep the socket when the result is 0 or less; with no timeout of its own the hint is
    ignored.
    """
    if peer.hint_aware_buffer_s is None or advertised_timeout_s is None:
        return peer.idle_s, True
    hinted = math.floor(advertised_timeout_s) - peer.hint_aware_buffer_s
    if hinted <= 0:
        return peer.idle_s, False
    if peer.idle_s is not None and hinted < peer.idle_s:
        return hinted, True
    return peer.idle_s, True


def _fix(peer: Peer, idle_s: float | None, server_s: float) -> str:
    below = math.floor(round(server_s, 1) - SAFETY_MARGIN_S)  # 14.999 s measured is 15 s
    above = math.ceil((idle_s or 0) + SAFETY_MARGIN_S)
    raise_server = f"raise the server's idle timeout to {above} s or more" if idle_s else None
    lower_peer = f"set {peer.setting} to at most {below} s" if below > 0 else None
    if peer.setting.startswith(("none", "fixed", "not configurable")):
        lower_peer = None
    options = [raise_server, lower_peer] if peer.fronts_server else [lower_peer, raise_server]
    if idle_s is None and lower_peer is None:
        options = [peer.setting]
    chosen = [o for o in options if o]
    return " or ".join(chosen) if chosen else "raise the server's idle timeout"


def judge(peer: Peer, server: ServerIdle) -> Verdict:
    """One peer against the server's measured idle timeout."""
    idle, reuses = effective_idle(peer, server.advertised_timeout_s)

    def verdict(status: Status, why: str, fix: str | None = None) -> Verdict:
        return Verdict(peer.name, peer.kind.value, peer.idle_s, idle, status, why, fix,
                       peer.source)  # fmt: skip

    if not server.kept_alive:
        return verdict(Status.NA, "the server keeps no connection alive: nothing to reuse")
    if not reuses:
        return verdict(Status.OK, "the server's Keep-Alive timeout is too short for it to reuse")
    limit = "no idle limit" if idle is None else f"keeps idle connections {_s(idle)}"
    if idle is not None and idle != peer.idle_s:
        limit += f" (its {_s(peer.idle_s or 0)} lowered by the server's Keep-Alive hint)"
    timeout = server.timeout_s
    if timeout is None:
        bound = server.at_least_s
        if idle is not None and bound is not None and idle + SAFETY_MARGIN_S <= bound:
            return verdict(Status.OK, f"{limit}; the server kept them at least {_s(bound)}")
        seen = f"at least {_s(bound)}" if bound is not None else "not measured"
        return verdict(Status.UNKNOWN, f"{limit}; the server's idle timeout is {seen}")
    misled = ""
    hint = server.advertised_timeout_s
    if peer.hint_aware_buffer_s is not None and hint is not None and hint > timeout:
        misled = f"; the server advertises timeout={hint:g} but closes after {timeout:.2f} s"
    if idle is None:
        why = f"{limit}; the server closes after {timeout:.2f} s{misled}"
        return verdict(Status.RACES, why, _fix(peer, None, timeout))
    lead = timeout - idle
    if lead >= SAFETY_MARGIN_S:
        return verdict(Status.OK, f"{limit}, {lead:.1f} s before the server closes them")
    if lead > 0:
        why = f"{limit}, only {lead:.2f} s before the server closes them{misled}"
        return verdict(Status.TIGHT, why, _fix(peer, idle, timeout))
    why = f"{limit}; the server closes them after {timeout:.2f} s{misled}"
    return verdict(Status.RACES, why, _fix(peer, idle, timeout))


def judge_all(peers: list[Peer], server: ServerIdle) -> list[Verdict]:
    return [judge(peer, server) for peer in peers]


def server_idle(findings: Findings) -> ServerIdle:
    """The server's idle behaviour as far as the probes can vouch for it.

    A request that failed before the measured timeout (the active check), or a connection that
    was dead at --max-idle without a FIN, means something drops connections silently: then the
    timeout is unknown, whatever the FINs said.
    """
    hint = findings.advertised.timeout_s
    idle = findings.idle
    if idle is None:
        return ServerIdle(findings.persistence.http11, None, None, hint)
    if not idle.kept_alive:
        return ServerIdle(False, None, None, hint)
    active = findings.active
    if idle.timeout_s is not None and (active is None or active.under == "answered"):
        return ServerIdle(True, idle.timeout_s, None, hint)
    if idle.timeout_s is None and idle.beyond == "answered":
        return ServerIdle(True, None, idle.at_least_s, hint)
    return ServerIdle(True, None, None, hint)


def notes(findings: Findings) -> list[str]:
    """What else the measurements say that a user should act on."""
    out: list[str] = []
    idle, adv, active = findings.idle, findings.advertised, findings.active
    measured = idle.timeout_s if idle is not None else None
    hint = adv.timeout_s
    if measured is not None and hint is not None and hint > measured + HINT_SLACK_S:
        out.append(
            f"Keep-Alive advertises timeout={hint:g} but the server closes idle connections "
            f"after {measured:.2f} s: clients that trust the header (Node's Agent) reuse "
            "connections the server has already closed."
        )
    if measured is not None and hint is not None and hint < measured - EARLY_HINT_S:
        out.append(
            f"Keep-Alive advertises timeout={hint:g}, the server keeps connections "
            f"{measured:.2f} s: clients that trust the header give them up early (safe)."
        )
    if idle is not None and idle.unsolicited:
        out.append(
            f"On idle connections the server sent {idle.unsolicited!r} before closing: a client "
            "that reuses the connection then can read it as the answer to its request."
        )
    if idle is not None and (idle.spread_s or 0) > 0.5:
        out.append(f"The idle closes spread over {idle.spread_s:.2f} s across connections.")
    if idle is not None and idle.beyond not in (None, "answered"):
        out.append(
            f"No FIN within --max-idle, yet a request then got '{idle.beyond}': something "
            "(server or middlebox) drops idle connections silently."
        )
    if active is not None and not active.consistent:
        out.append(
            f"Active check: a request after {active.under_s:g} s idle got '{active.under}', one "
            f"after {active.over_s:g} s got '{active.over}'."
        )
    mr = findings.max_requests
    if mr is not None and mr.limit is not None and not mr.announced:
        out.append(
            f"After {mr.limit} requests the connection ended without `Connection: close` "
            f"({mr.close_after}): every client's request {mr.limit + 1} on it fails."
        )
    if mr is not None and mr.announced and (mr.close_after_s is None or mr.close_after_s > 1.0):
        out.append(
            f"After `Connection: close` on response {mr.limit} the server did not close at once "
            f"({mr.close_after}): the client has to close it."
        )
    # max= counts the requests left after this one (Apache) or all of them (Node): both fit
    first_max = mr.advertised_max_first if mr is not None else None
    limit = mr.limit if mr is not None else None
    if limit is not None and first_max is not None and limit not in (first_max, first_max + 1):
        out.append(
            f"The first response advertised max={first_max}, yet the connection carried "
            f"{limit} requests."
        )
    closing = findings.closing
    if closing is not None and closing.close == "reset":
        out.append(
            "With more requests pending behind a `Connection: close`, the server resets the "
            "connection: a pipelining client or a proxy can lose the last response."
        )
    hd = findings.header_deadline
    if hd is not None and hd.tolerated_s is None and hd.at_least_s is not None:
        out.append(
            f"A request trickled one byte at a time was still tolerated after {hd.at_least_s:g} "
            "s: no header deadline (slowloris exposure), or one beyond --max-header-wait."
        )
    for name, error in findings.errors.items():
        out.append(f"Probe {name} failed: {error}")
    return out
