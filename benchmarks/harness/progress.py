"""What the user sees: one progress line per cell on stderr, a summary table at the end.

Progress goes to stderr so stdout stays the summary and the CSV path (scriptable). The time left
is re-estimated after every cell from the measured wall time per client (locust and pyperf start
up very differently), falling back to the configured warm-up + window + a start-up guess.

The summary pairs each configuration's pooled and unpooled rows: median throughput over the
repetitions and their ratio (what keep-alive buys), p50/p99 from the repetitions' histograms
merged (percentiles are never averaged; "-" without them), median connections opened, and
flags. When the sequential client ran in both modes, a line says how many microseconds a
reused connection saves per request (the seed experiment as a number).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TextIO

from benchmarks import latency
from benchmarks.clients.contract import SEQUENTIAL_CLIENTS, Mode
from benchmarks.harness.config import Cell
from benchmarks.matrix import DIMENSION_COLUMNS, NO_TLS
from benchmarks.records.keys import CellKey, cell_key
from benchmarks.records.schema import ResultRow

SEQUENTIAL = tuple(kind.value for kind in SEQUENTIAL_CLIENTS)

FLAG_LEGEND = "flags: C client-bound (a lower bound), I invalid (mode not achieved), F failed"


def fmt_duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """`[k/n elapsed, ~left] cell: result` lines."""

    def __init__(
        self,
        cells: Sequence[Cell],
        estimate_s: float,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cells = list(cells)
        self.estimate_s = estimate_s  # a cell whose client has not run yet (config's guess)
        self.stream = stream or sys.stderr  # resolved now, not at import (tests swap it)
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.walls: dict[str, list[float]] = {}

    def seconds_left(self) -> float:
        left = 0.0
        for cell in self.cells[self.done :]:
            seen = self.walls.get(cell.client.value)
            left += statistics.fmean(seen) if seen else self.estimate_s
        return left

    def _prefix(self, k: int) -> str:
        elapsed = self.clock() - self.start
        width = len(str(len(self.cells)))
        return (
            f"[{k:>{width}}/{len(self.cells)} {fmt_duration(elapsed)} elapsed, "
            f"~{fmt_duration(self.seconds_left())} left]"
        )

    def started(self, cell: Cell) -> None:
        self._write(f"{self._prefix(cell.index)} {cell.label()} ...")

    def finished(self, cell: Cell, row: ResultRow, wall_s: float) -> None:
        self.done += 1
        self.walls.setdefault(cell.client.value, []).append(wall_s)
        self._write(f"{self._prefix(cell.index)} {cell.label()}: {describe(row)} ({wall_s:.1f} s)")

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


def describe(row: ResultRow) -> str:
    """One-line outcome of a cell."""
    if row.status not in ("ok",):
        return f"FAILED {row.status}: {row.note}"
    text = (
        f"{row.throughput_rps:,.0f} req/s p50 {row.latency_p50_ms:.3f} ms p99 "
        f"{row.latency_p99_ms:.3f} ms, {row.connections_opened} conns, "
        f"cpu server {_pct(row.server_cpu_pct)} client {row.client_cpu_pct:.0f}%"
    )
    if row.client_bound:
        text += " [client-bound]"
    if not row.valid:
        text += f" [INVALID: {row.note.split('; ')[0]}]"
    return text


def flags(rows: Sequence[ResultRow]) -> str:
    out = ""
    if any(r.client_bound for r in rows):
        out += "C"
    if any(r.status == "ok" and not r.valid for r in rows):
        out += "I"
    if any(r.status != "ok" for r in rows):
        out += "F"
    return out


def _mode_stats(rows: Sequence[ResultRow], hists: Sequence[str | None]) -> ModeStats | None:
    # Only rows whose mode was achieved: an invalid row's throughput is not this mode's.
    ok = [
        (r, h)
        for r, h in zip(rows, hists, strict=True)
        if r.status == "ok" and r.valid and r.requests > 0
    ]
    if not ok:
        return None
    encoded = [h for _, h in ok if h]
    p50 = p99 = None  # a median of per-row percentiles is no percentile: shown as "-"
    if len(encoded) == len(ok):
        merged = latency.summary_us(latency.merge(encoded))
        p50, p99 = merged["p50"] / 1000, merged["p99"] / 1000
    return ModeStats(
        rps=statistics.median(r.throughput_rps for r, _ in ok),
        p50_ms=p50,
        p99_ms=p99,
        conns=statistics.median(r.connections_opened for r, _ in ok),
    )


@dataclass(frozen=True)
class ModeStats:
    """One mode of one configuration over its valid repetitions."""

    rps: float  # median throughput
    p50_ms: float | None  # from the merged histograms; None when one is missing
    p99_ms: float | None
    conns: float  # median connections opened

    def latencies(self) -> str:
        if self.p50_ms is None or self.p99_ms is None:
            return "-"
        return f"{self.p50_ms:.3f}/{self.p99_ms:.3f}"


def group_modes(rows: Sequence[ResultRow]) -> dict[CellKey, dict[str, list[int]]]:
    """Row indexes per configuration (the cell key without its mode), then per mode."""
    groups: dict[CellKey, dict[str, list[int]]] = {}
    for i, r in enumerate(rows):
        key = replace(cell_key(r), mode="")
        groups.setdefault(key, {}).setdefault(r.key.mode, []).append(i)
    return groups


def summary_table(rows: Sequence[ResultRow], hists: Sequence[str | None] | None = None) -> str:
    """The end-of-run table, pooled and unpooled side by side per server and client, then the
    sequential client's headline when it ran in both modes."""
    hists = list(hists) if hists is not None else [None] * len(rows)
    header = [
        "server", "client", "c", "ka", "pooled req/s", "unpooled req/s", "ratio",
        "pooled p50/p99 ms", "unpooled p50/p99 ms", "conns pooled/unpooled", "reps", "flags",
    ]  # fmt: skip
    table = [header]
    headlines = []
    for key, by_mode in group_modes(rows).items():
        stats = {
            mode: _mode_stats([rows[i] for i in idx], [hists[i] for i in idx])
            for mode, idx in by_mode.items()
        }
        pooled, unpooled = stats.get(Mode.POOLED.value), stats.get(Mode.UNPOOLED.value)
        all_rows = [rows[i] for idx in by_mode.values() for i in idx]
        ratio = f"{pooled.rps / unpooled.rps:.2f}x" if pooled and unpooled and unpooled.rps else "-"
        table.append([
            key.server, key.client, str(key.concurrency), _ka(key),
            f"{pooled.rps:,.0f}" if pooled else "-",
            f"{unpooled.rps:,.0f}" if unpooled else "-",
            ratio,
            pooled.latencies() if pooled else "-",
            unpooled.latencies() if unpooled else "-",
            f"{_num(pooled)}/{_num(unpooled)}",
            str(max(len(v) for v in by_mode.values())),
            flags(all_rows) or "-",
        ])  # fmt: skip
        if key.client in SEQUENTIAL and pooled and unpooled:
            headlines.append(sequential_headline(key, pooled, unpooled))
    return "\n".join([render(table), FLAG_LEGEND, *headlines])


def sequential_headline(key: CellKey, pooled: ModeStats, unpooled: ModeStats) -> str:
    """The seed experiment as a number: what one reused connection saves per request.

    Microseconds per request are 1e6 / req/s (the mean, which is what pyperf itself reports;
    one request at a time, so it is also the mean latency seen by the client), from the median
    throughput of the valid repetitions; p50 from the merged histograms is shown beside it."""
    reused, fresh = 1e6 / pooled.rps, 1e6 / unpooled.rps
    p50 = ""
    if pooled.p50_ms is not None and unpooled.p50_ms is not None:
        p50 = f"; p50 {pooled.p50_ms * 1000:.0f} vs {unpooled.p50_ms * 1000:.0f} us"
    return (
        f"{key.client} {key.server} {_ka(key)}: {reused:.1f} us per request reused, {fresh:.1f} us "
        f"with a new connection each: reuse saves {fresh - reused:.1f} us per request "
        f"(mean = 1e6 / req/s{p50})"
    )


# Shown in columns of their own (server, client, c) or as the keep-alive policy (`5s/100 tls1.3`);
# any other dimension follows the policy as `name=value`.
_SHOWN = (
    "server", "client", "mode", "concurrency", "keepalive_timeout_s", "keepalive_max", "tls",
    "target_url",  # one per run: the server column says `target`, the CSV says which
)  # fmt: skip


def _ka(key: CellKey) -> str:
    """The keep-alive policy as the table and the headline both show it: timeout/max [tls],
    then the cell's other settings."""
    others = key.settings(only=[c for c in DIMENSION_COLUMNS if c not in _SHOWN])
    tls = f" tls{key.tls}" if key.tls != NO_TLS else ""
    policy = f"{key.keepalive_timeout_s:g}s/{key.keepalive_max}{tls}"
    return f"{policy} {others}" if others else policy


def _num(stats: ModeStats | None) -> str:
    return "-" if stats is None else f"{stats.conns:,.0f}"


def render(table: list[list[str]]) -> str:
    """Plain aligned columns: text left, numbers right."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for n, row in enumerate(table):
        cells = []
        for i, cell in enumerate(row):
            numeric = n > 0 and i >= 2
            cells.append(cell.rjust(widths[i]) if numeric else cell.ljust(widths[i]))
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _pct(value: float) -> str:
    """`42%`, or `-` when not measured (a target without --target-pid)."""
    return "-" if math.isnan(value) else f"{value:.0f}%"
