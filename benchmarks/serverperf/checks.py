"""The performance targets (issues 2 and 14), evaluated on `serverperf` rows: PASS, FAIL or SKIP.

- the uvloop server serves at least as many requests per second as nginx (one worker), with
  keep-alive and with `Connection: close`: the Python server is meant to be no bottleneck
  (issue 14 asks for close mode only, and for the keep-alive ratio to be reported);
- the uvloop server reaches at least 95% of its bare app (uvloop + httptools, no policy) in both
  modes, and the aiohttp server 95% of a bare aiohttp app: the keep-alive policy code must cost
  next to nothing on top of the library;
- the uvloop server recycling connections (`--keepalive-max 100`, row mode `recycle`) keeps at
  least 85% of its own unlimited keep-alive throughput (nginx's own ratio is printed beside it,
  as INFO: nginx kept 86% when the target was set);
- the stdlib server answers a reused connection in under 1 ms at the median (wrk -c1).

A target whose rows are missing (server not selected) or failed is SKIP, never PASS. When
instruction counts (callgrind, `benchmarks.serverperf.instructions`) were measured for the rows
a check compares, its line ends with them: the same ratio in instructions, which this shared
machine's load does not move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.serverperf.wrk import WrkResult

NGINX = "nginx"
KEEP_ALIVE, CLOSE, SEQUENTIAL = "keep-alive", "close", "sequential"
RECYCLE = "recycle"  # keep-alive with at most RECYCLE_MAX requests per connection
RECYCLE_MAX = 100  # what every `make bench` cell runs with
BARE_TOLERANCE = 0.05  # uvloop and aiohttp: at least 95% of their bare apps
RECYCLE_FLOOR = 0.85  # uvloop at max RECYCLE_MAX: at least 85% of its unlimited throughput
STDLIB_P50_LIMIT_US = 1_000.0


@dataclass(frozen=True)
class Row:
    """One wrk run of one target in one mode; `result` is None when it failed (`error` says why)."""

    target: str
    mode: str
    connections: int
    result: WrkResult | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "mode": self.mode,
            "connections": self.connections,
            "result": self.result.to_json() if self.result else None,
            "error": self.error,
        }


# Instructions per request by (target, mode), from callgrind; empty when not measured.
Counts = dict[tuple[str, str], float]


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS, FAIL or SKIP; INFO for a figure reported beside a target, not one
    detail: str

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.detail}"


def find(rows: Sequence[Row], target: str, mode: str) -> WrkResult | None:
    for row in rows:
        if row.target == target and row.mode == mode:
            return row.result
    return None


def _skip(name: str, rows: Sequence[Row], *needed: tuple[str, str]) -> Check:
    """SKIP naming only the rows that are missing or failed."""
    missing = [f"{t}/{m}" for t, m in needed if find(rows, t, m) is None]
    return Check(name, "SKIP", f"no result for {' and '.join(missing)}")


def _compare(
    name: str,
    rows: Sequence[Row],
    ours: tuple[str, str],
    reference: tuple[str, str],
    floor: float | None,
    counts: Counts,
) -> Check:
    """`ours` / `reference` in req/s against `floor` (None: INFO), instructions beside."""
    mine, ref = find(rows, *ours), find(rows, *reference)
    if mine is None or ref is None or not ref.requests_per_s:
        return _skip(name, rows, ours, reference)
    ratio = mine.requests_per_s / ref.requests_per_s
    status = "INFO" if floor is None else "PASS" if ratio >= floor else "FAIL"
    detail = f"{mine.requests_per_s:,.0f} vs {ref.requests_per_s:,.0f} req/s ({ratio:.0%})"
    return Check(name, status, detail + _instructions(counts, ours, reference))


def _instructions(counts: Counts, ours: tuple[str, str], reference: tuple[str, str]) -> str:
    """`; instructions A vs B per request (A/B)` when both were counted, else nothing."""
    mine, ref = counts.get(ours), counts.get(reference)
    if mine is None or ref is None or not ref:
        return ""
    return f"; instructions {mine:,.0f} vs {ref:,.0f} per request ({mine / ref:.0%})"


def at_least_nginx(rows: Sequence[Row], mode: str, counts: Counts | None = None) -> Check:
    name = f"uvloop >= nginx ({mode})"
    return _compare(name, rows, ("uvloop", mode), ("nginx", mode), 1.0, counts or {})


def near_bare(rows: Sequence[Row], target: str, mode: str, counts: Counts | None = None) -> Check:
    name = f"{target} within {BARE_TOLERANCE:.0%} of bare-{target} ({mode})"
    ours, bare = (target, mode), (f"bare-{target}", mode)
    return _compare(name, rows, ours, bare, 1 - BARE_TOLERANCE, counts or {})


def recycle_ratio(rows: Sequence[Row], target: str, counts: Counts | None = None) -> Check:
    """Keep-alive max RECYCLE_MAX against unlimited, the same server: a target for uvloop,
    INFO for nginx (the reference the target was set from)."""
    floor = RECYCLE_FLOOR if target == "uvloop" else None
    at = f">= {RECYCLE_FLOOR:.0%} " if floor is not None else ""
    name = f"{target} keep-alive max {RECYCLE_MAX} {at}of unlimited"
    return _compare(name, rows, (target, RECYCLE), (target, KEEP_ALIVE), floor, counts or {})


def stdlib_reused_p50(rows: Sequence[Row]) -> Check:
    name = f"stdlib reused-connection p50 < {STDLIB_P50_LIMIT_US / 1000:g} ms"
    seq = find(rows, "stdlib", SEQUENTIAL)
    if seq is None:
        return _skip(name, rows, ("stdlib", SEQUENTIAL))
    status = "PASS" if seq.p50_us < STDLIB_P50_LIMIT_US else "FAIL"
    return Check(name, status, f"p50 {seq.p50_us / 1000:.3f} ms (wrk -c1, keep-alive)")


def evaluate(rows: Sequence[Row], counts: Counts | None = None) -> list[Check]:
    """Every target, in the order the README's server-performance section lists them."""
    counts = counts or {}
    return [
        at_least_nginx(rows, CLOSE, counts),
        near_bare(rows, "uvloop", CLOSE, counts),
        near_bare(rows, "uvloop", KEEP_ALIVE, counts),
        at_least_nginx(rows, KEEP_ALIVE, counts),
        recycle_ratio(rows, "uvloop", counts),
        recycle_ratio(rows, NGINX, counts),
        near_bare(rows, "aiohttp", KEEP_ALIVE, counts),
        near_bare(rows, "aiohttp", CLOSE, counts),
        stdlib_reused_p50(rows),
    ]
