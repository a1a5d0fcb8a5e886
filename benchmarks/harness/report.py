"""What the user sees: one progress line per cell on stderr, a summary table at the end.

Progress goes to stderr so stdout stays the summary and the CSV path (scriptable). The time left
is re-estimated after every cell from the measured wall time per client (locust and pyperf start
up very differently), falling back to the configured warm-up + window + a start-up guess.

The summary pairs each configuration's pooled and unpooled rows: median throughput over the
repetitions and their ratio (what keep-alive buys), p50/p99 from the repetitions' histograms
merged (percentiles are never averaged), median connections opened, and flags.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from benchmarks import latency
from benchmarks.clientspec import Mode
from benchmarks.harness.config import Cell
from benchmarks.schema import ResultRow

FLAG_LEGEND = "flags: C client-bound (a lower bound), I invalid (mode not achieved), F failed"


def fmt_duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """`[k/n elapsed, ~left] cell: result` lines."""

    def __init__(
        self,
        cells: Sequence[Cell],
        estimate: Callable[[Cell], float],
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cells = list(cells)
        self.estimate = estimate
        self.stream = stream or sys.stderr  # resolved now, not at import (tests swap it)
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.walls: dict[str, list[float]] = {}

    def seconds_left(self) -> float:
        left = 0.0
        for cell in self.cells[self.done :]:
            seen = self.walls.get(cell.client.value)
            left += statistics.fmean(seen) if seen else self.estimate(cell)
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
        f"cpu server {row.server_cpu_pct:.0f}% client {row.client_cpu_pct:.0f}%"
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


def _mode_stats(rows: Sequence[ResultRow], hists: Sequence[str | None]) -> dict[str, float] | None:
    # Only rows whose mode was achieved: an invalid row's throughput is not this mode's.
    ok = [
        (r, h)
        for r, h in zip(rows, hists, strict=True)
        if r.status == "ok" and r.valid and r.requests > 0
    ]
    if not ok:
        return None
    encoded = [h for _, h in ok if h]
    if len(encoded) == len(ok):
        merged = latency.summary_us(latency.merge(encoded))
        p50, p99 = merged["p50"] / 1000, merged["p99"] / 1000
    else:
        p50 = statistics.median(r.latency_p50_ms for r, _ in ok)
        p99 = statistics.median(r.latency_p99_ms for r, _ in ok)
    return {
        "rps": statistics.median(r.throughput_rps for r, _ in ok),
        "p50": p50,
        "p99": p99,
        "conns": statistics.median(r.connections_opened for r, _ in ok),
    }


def summary_table(rows: Sequence[ResultRow], hists: Sequence[str | None] | None = None) -> str:
    """The end-of-run table, pooled and unpooled side by side per server and client."""
    hists = list(hists) if hists is not None else [None] * len(rows)
    groups: dict[tuple[object, ...], dict[str, list[int]]] = {}
    for i, r in enumerate(rows):
        key = (r.server, r.client, r.concurrency, r.keepalive_timeout_s, r.keepalive_max, r.tls)
        groups.setdefault(key, {}).setdefault(r.mode, []).append(i)
    header = [
        "server", "client", "c", "ka", "pooled req/s", "unpooled req/s", "ratio",
        "pooled p50/p99 ms", "unpooled p50/p99 ms", "conns pooled/unpooled", "reps", "flags",
    ]  # fmt: skip
    table = [header]
    for (server, client, conc, kt, km, tls), by_mode in groups.items():
        stats = {}
        for mode in (Mode.POOLED.value, Mode.UNPOOLED.value):
            idx = by_mode.get(mode, [])
            stats[mode] = _mode_stats([rows[i] for i in idx], [hists[i] for i in idx])
        pooled, unpooled = stats[Mode.POOLED.value], stats[Mode.UNPOOLED.value]
        all_rows = [rows[i] for idx in by_mode.values() for i in idx]
        ratio = (
            f"{pooled['rps'] / unpooled['rps']:.2f}x"
            if pooled and unpooled and unpooled["rps"]
            else "-"
        )
        table.append([
            str(server), str(client), str(conc), f"{kt:g}s/{km}" + (" tls" if tls else ""),
            f"{pooled['rps']:,.0f}" if pooled else "-",
            f"{unpooled['rps']:,.0f}" if unpooled else "-",
            ratio,
            f"{pooled['p50']:.3f}/{pooled['p99']:.3f}" if pooled else "-",
            f"{unpooled['p50']:.3f}/{unpooled['p99']:.3f}" if unpooled else "-",
            f"{_num(pooled, 'conns')}/{_num(unpooled, 'conns')}",
            str(max(len(v) for v in by_mode.values())),
            flags(all_rows) or "-",
        ])  # fmt: skip
    return render(table) + "\n" + FLAG_LEGEND


def _num(stats: dict[str, float] | None, key: str) -> str:
    return "-" if stats is None else f"{stats[key]:,.0f}"


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
