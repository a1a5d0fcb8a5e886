"""The performance targets of issue 2, evaluated on `serverperf` rows: PASS, FAIL or SKIP.

- the uvloop server serves at least as many requests per second as nginx (one worker), with
  keep-alive and with `Connection: close`: the Python server is meant to be no bottleneck;
- the aiohttp server is within 5% of a bare aiohttp app, in both modes: the keep-alive policy
  code must cost next to nothing on top of the library;
- the stdlib server answers a reused connection in under 1 ms at the median (wrk -c1).

A target whose rows are missing (server not selected) or failed is SKIP, never PASS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.serverperf.wrk import WrkResult

KEEP_ALIVE, CLOSE, SEQUENTIAL = "keep-alive", "close", "sequential"
AIOHTTP_TOLERANCE = 0.05
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


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS, FAIL or SKIP
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


def at_least_nginx(rows: Sequence[Row], mode: str) -> Check:
    name = f"uvloop >= nginx ({mode})"
    ours, nginx = find(rows, "uvloop", mode), find(rows, "nginx", mode)
    if ours is None or nginx is None:
        return _skip(name, rows, ("uvloop", mode), ("nginx", mode))
    status = "PASS" if ours.requests_per_s >= nginx.requests_per_s else "FAIL"
    ratio = ours.requests_per_s / nginx.requests_per_s
    detail = f"{ours.requests_per_s:,.0f} vs {nginx.requests_per_s:,.0f} req/s ({ratio:.0%})"
    return Check(name, status, detail)


def near_bare_aiohttp(rows: Sequence[Row], mode: str) -> Check:
    name = f"aiohttp within {AIOHTTP_TOLERANCE:.0%} of bare-aiohttp ({mode})"
    ours, bare = find(rows, "aiohttp", mode), find(rows, "bare-aiohttp", mode)
    if ours is None or bare is None:
        return _skip(name, rows, ("aiohttp", mode), ("bare-aiohttp", mode))
    ratio = ours.requests_per_s / bare.requests_per_s
    status = "PASS" if ratio >= 1 - AIOHTTP_TOLERANCE else "FAIL"
    detail = f"{ours.requests_per_s:,.0f} vs {bare.requests_per_s:,.0f} req/s ({ratio:.0%})"
    return Check(name, status, detail)


def stdlib_reused_p50(rows: Sequence[Row]) -> Check:
    name = f"stdlib reused-connection p50 < {STDLIB_P50_LIMIT_US / 1000:g} ms"
    seq = find(rows, "stdlib", SEQUENTIAL)
    if seq is None:
        return _skip(name, rows, ("stdlib", SEQUENTIAL))
    status = "PASS" if seq.p50_us < STDLIB_P50_LIMIT_US else "FAIL"
    return Check(name, status, f"p50 {seq.p50_us / 1000:.3f} ms (wrk -c1, keep-alive)")


def evaluate(rows: Sequence[Row]) -> list[Check]:
    return [
        at_least_nginx(rows, KEEP_ALIVE),
        at_least_nginx(rows, CLOSE),
        near_bare_aiohttp(rows, KEEP_ALIVE),
        near_bare_aiohttp(rows, CLOSE),
        stdlib_reused_p50(rows),
    ]
