"""The run's summary table and its verdict sentences, computed from the rows.

Percentiles are merged, never averaged: a cell's p50 and p90 are taken over every load of every
repetition. The verdict compares keep-alive on and off at one RTT and N (50 ms and 70 by
default, the issue's example; the largest measured otherwise), plain HTTP, per client.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from benchmarks.pageload.config import Batch
from benchmarks.pageload.rows import PageLoadRow
from benchmarks.pageload.run import Outcome, iter_cells, merged, percentile

HEADER = (
    "server", "client", "tls", "keep-alive", "rtt", "N", "p50 ms", "p90 ms", "model ms",
    "ratio", "client cpu ms", "conns/page", "reps", "flags",
)  # fmt: skip


def summary(outcomes: Sequence[tuple[Batch, Outcome]]) -> str:
    table = [HEADER]
    for batch, cell in iter_cells(outcomes):
        times = merged(cell)
        p50 = percentile(times, 50)
        model = cell[0].row.model_ms
        conns = statistics.median(o.row.connections_per_page for o in cell)
        cpu = statistics.median(o.row.client_cpu_p50_ms for o in cell)
        invalid = sum(not o.row.valid for o in cell)
        table.append(
            (
                batch.server.value,
                batch.client.value,
                batch.tls.value,
                batch.keepalive.label,
                f"{batch.rtt_ms:g}",
                str(batch.resources),
                _ms(p50),
                _ms(percentile(times, 90)),
                _ms(model),
                f"{p50 / model:.2f}" if model and times else "-",
                _ms(cpu),
                f"{conns:g}",
                str(len(cell)),
                f"{invalid} invalid" if invalid else "-",
            )  # fmt: skip
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = ["  ".join(v.rjust(w) if i >= 4 else v.ljust(w) for i, (v, w) in
                       enumerate(zip(r, widths, strict=True))).rstrip() for r in table]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _cells(rows: Sequence[PageLoadRow]) -> dict[tuple[Any, ...], list[PageLoadRow]]:
    cells: dict[tuple[Any, ...], list[PageLoadRow]] = {}
    for row in rows:
        key = (row.server, row.client, row.tls, row.rtt_ms, row.resources,
               row.keepalive_timeout_s, row.keepalive_max)  # fmt: skip
        cells.setdefault(key, []).append(row)
    return cells


def cell_p50(rows: Sequence[PageLoadRow]) -> float:
    """The cell's median load, from its repetitions' medians (one load each by default)."""
    values = [r.page_load_p50_ms for r in rows if r.valid and not math.isnan(r.page_load_p50_ms)]
    return statistics.median(values) if values else math.nan


def verdict(rows: Sequence[PageLoadRow], rtt_ms: float = 50.0, resources: int = 70) -> list[str]:
    """`at 50 ms and 70 resources keep-alive cuts chromium's load from X to Y ms (Z% less)`."""
    plain = [r for r in rows if r.tls == "none"] or list(rows)
    if not plain:
        return []
    if not any(r.rtt_ms == rtt_ms and r.resources == resources for r in plain):
        rtt_ms = max(r.rtt_ms for r in plain)
        resources = max(r.resources for r in plain if r.rtt_ms == rtt_ms)
    tls = plain[0].tls
    sentences = []
    for client in dict.fromkeys(r.client for r in plain):
        if client == "python-unpooled":
            continue
        here = [
            r for r in plain if (r.client, r.rtt_ms, r.resources) == (client, rtt_ms, resources)
        ]
        on = [r for r in here if r.keepalive_timeout_s > 0]
        off = [r for r in here if r.keepalive_timeout_s == 0]
        if not on or not off:
            continue
        best_max = max(r.keepalive_max or 10**9 for r in on)  # the largest max: the default
        on = [r for r in on if (r.keepalive_max or 10**9) == best_max]
        y, x = cell_p50(on), cell_p50(off)
        if math.isnan(x) or math.isnan(y):
            continue
        what = "plain HTTP" if tls == "none" else f"TLS {tls}"
        sentences.append(
            f"At {rtt_ms:g} ms and {resources} resources ({what}), keep-alive cuts {client}'s "
            f"page load from {x:,.0f} to {y:,.0f} ms ({(x - y) / x:.0%} less; model "
            f"{off[0].model_ms:,.0f} to {on[0].model_ms:,.0f} ms)."
        )
    return sentences


def model_agreement(rows: Sequence[PageLoadRow], client: str = "python") -> list[str]:
    """The Python client against the model at RTT >= 20 ms: worst ratio per cell."""
    out = []
    for key, cell in sorted(_cells(rows).items()):
        if key[1] != client or key[3] < 20:
            continue
        p50 = cell_p50(cell)
        model = cell[0].model_ms
        if model > 0 and not math.isnan(p50):
            out.append(f"{key}: p50 {p50:.0f} ms, model {model:.0f} ms, ratio {p50 / model:.3f}")
    return out
