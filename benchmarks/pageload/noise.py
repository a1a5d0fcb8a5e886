"""`python -m benchmarks noise --scenario pageload`: the page-load rows' A/A noise floor.

What benchmarks.analysis.noise does for `make bench` rows, for page loads: the work tree's
scenario runs `--rounds` times (one repetition each, flags as `make pageload` takes them), then
per cell the spread of page_load_p50_ms and page_load_p90_ms, and the page-load compare rule
(benchmarks.pageload.compare) replayed on A/A splits of the rounds: every regression or
improvement there is a false positive, and the 95% quantile of |median ratio - 1| over the
halves' splits is the floor `compare` raises each threshold to: per client (`by_client`: a
busy machine moves Chromium's loads far more than the Python client's), the whole file's for a
client it did not run. Written as
results/<host_id>/noise-pageload-<stamp>.json (the noise format, `scenario: pageload`) with the
rows beside it as noise-pageload-<stamp>.csv (page-load columns), which `--from-csv` re-reads.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.analysis.compare import IMPROVEMENT, INCONCLUSIVE, REGRESSION, json_safe
from benchmarks.analysis.noise import (
    SPLIT_QUANTILE,
    Spread,
    _joined,
    _quantile,
    _suggest,
    splits,
    spread,
)
from benchmarks.analysis.rounds import BENCH_COMPARE_ROUNDS, RoundError, Side
from benchmarks.analysis.rule import FORMAT_VERSION, Rule
from benchmarks.common import REPO_ROOT, write_atomic
from benchmarks.pageload import rounds
from benchmarks.pageload.compare import METRICS, SCENARIO, cells, compare_pages
from benchmarks.pageload.config import FULL
from benchmarks.pageload.rows import PageLoadRow, RowsError, read_rows, write_rows
from benchmarks.records.keys import FINGERPRINT_FIELDS

REPLAYS = (
    (FULL.repeat, FULL.repeat, f"make pageload: {FULL.repeat} repetitions a side"),
    (BENCH_COMPARE_ROUNDS, BENCH_COMPARE_ROUNDS, "bench-compare default rounds"),
)


def spreads(rows: Sequence[PageLoadRow]) -> list[Spread]:
    """Run-to-run spread per cell and metric, over the valid rows that loaded pages."""
    out = []
    measured = [r for r in rows if r.status == "ok" and r.valid]
    for key, cell_rows in cells(measured).items():
        for m in METRICS:
            vals = [float(getattr(r, m.column)) for r in cell_rows]
            cv, max_min = spread(vals)
            mean = statistics.fmean(vals) if vals else math.nan
            out.append(Spread(key.label(), m.column, len(vals), mean, cv, max_min))
    return out


def replay(
    per_round: Sequence[Sequence[PageLoadRow]], rule: Rule,
    n_base: int | None = None, n_new: int | None = None, used_by: str = "all rounds, halves",
) -> dict[str, object]:  # fmt: skip
    """The page-load rule on A/A splits: false-positive rates and suggested thresholds."""
    a = len(per_round) // 2 if n_base is None else n_base
    b = len(per_round) - a if n_new is None else n_new
    chosen = splits(len(per_round), a, b)
    head: dict[str, object] = {"base_reps": a, "new_reps": b, "used_by": used_by}
    if not chosen:
        return {**head, "splits": 0, "skipped": f"needs {a + b} rounds, have {len(per_round)}"}
    counts = {m.column: {"decided": 0, "flagged": 0, "inconclusive": 0} for m in METRICS}
    moves: dict[str, list[float]] = {m.column: [] for m in METRICS}
    hit = 0
    for base_idx, new_idx in chosen:
        base = [r for i in base_idx for r in per_round[i]]
        new = [r for i in new_idx for r in per_round[i]]
        verdicts, _, _ = compare_pages(base, new, rule)
        hit += any(v.decision.verdict == REGRESSION for v in verdicts)
        for v in verdicts:
            c = counts[v.metric.column]
            c["decided"] += 1
            c["flagged"] += v.decision.verdict in (REGRESSION, IMPROVEMENT)
            c["inconclusive"] += v.decision.verdict == INCONCLUSIVE
            if v.decision.ratio is not None:
                moves[v.metric.column].append(abs(v.decision.ratio - 1.0))
    result: dict[str, object] = {**head, "splits": len(chosen)}
    result["splits_with_regression"] = hit / len(chosen)
    for m in METRICS:
        c = counts[m.column]
        q = _quantile(moves[m.column], SPLIT_QUANTILE)
        result[m.column] = {
            **c,
            "false_positive_rate": c["flagged"] / c["decided"] if c["decided"] else None,
            "threshold_in_use": rule.thresholds[m.column],
            f"median_move_p{round(SPLIT_QUANTILE * 100)}": q,
            "suggested_threshold": _suggest(q),
        }
    return result


def summarize(
    per_round: Sequence[Sequence[PageLoadRow]], rule: Rule, argv: Sequence[str] | None = None
) -> dict[str, object]:
    """Everything the JSON file holds: the noise format (FORMAT_VERSION), scenario pageload."""
    rows = [r for rs in per_round for r in rs]
    summary = {
        "format_version": FORMAT_VERSION,
        "scenario": SCENARIO,
        "rounds": len(per_round),
        "host_id": rows[0].host_id if rows else "",
        "git_commit": _joined([r.git_commit for r in rows]),
        "fingerprint": {f: _joined([getattr(r, f) for r in rows]) for f in FINGERPRINT_FIELDS},
        "bench": {
            "argv": list(argv) if argv is not None else None,
            "rounds": len(per_round),
            "cells": sorted({k.label() for k in cells(rows)}),
        },
        "run_ids": sorted({r.run_id for r in rows}),
        "rule": asdict(rule),
        "spread": [asdict(s) for s in spreads(rows)],
        "false_positives": replay(per_round, rule),
        "replays": [replay(per_round, rule, a, b, why) for a, b, why in REPLAYS],
        "by_client": {
            client: {
                "false_positives": replay(
                    [[r for r in rs if r.client == client] for rs in per_round], rule
                )
            }
            for client in sorted({r.client for r in rows})
        },  # fmt: skip
    }
    safe = json_safe(summary)
    assert isinstance(safe, dict)
    return safe


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable report: spread per metric, then each replay's false positives."""
    from benchmarks.analysis import noise as bench

    lines = [f"A/A page-load noise over {summary['rounds']} rounds on host {summary['host_id']}"]
    lines += ["", f"{'metric':<24}{'cells':>6}{'median cv':>11}{'worst cv':>10}"]
    for m in METRICS:
        cvs = [
            s["cv"] for s in summary["spread"] if s["metric"] == m.column and s["cv"] is not None
        ]
        med = statistics.median(cvs) if cvs else math.nan
        lines.append(f"{m.column:<24}{len(cvs):>6}{med:>11.1%}{max(cvs, default=math.nan):>10.1%}")
    for rp in [summary["false_positives"], *summary["replays"]]:
        lines += ["", *bench._replay_lines(rp, METRICS)]
    for client, sub in summary.get("by_client", {}).items():
        rp = {**sub["false_positives"], "used_by": f"{client} rows alone, halves"}
        lines += ["", *bench._replay_lines(rp, METRICS)]
    lines.append(
        f"suggested = {SPLIT_QUANTILE:.0%} quantile of |median ratio - 1| over splits "
        "and cells, whole percent, at least 2%; the halves' figure is compare's noise floor"
    )
    return "\n".join(lines)


def output_path(results_dir: Path, host_id: str, now: float | None = None) -> Path:
    """results/<host_id>/noise-pageload-<UTC stamp>.json."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return results_dir / (host_id or "unknown-host") / f"noise-{SCENARIO}-{stamp}.json"


def rounds_from_csv(path: Path) -> list[list[PageLoadRow]]:
    """The rounds of a saved noise-pageload-*.csv (one run_id per round, in start order)."""
    try:
        rows = read_rows(path)
    except RowsError as exc:
        raise RoundError(str(exc)) from None
    runs: dict[str, list[PageLoadRow]] = {}
    for row in sorted(rows, key=lambda r: r.started_utc):
        runs.setdefault(row.run_id, []).append(row)
    if len(runs) < 2:
        raise RoundError(f"{path}: {len(runs)} run(s); an A/A replay needs at least 2")
    return list(runs.values())


def measure(args: argparse.Namespace) -> list[list[PageLoadRow]]:
    """Run the work tree's scenario `--rounds` times, one repetition each, in a scratch dir."""
    side = Side("A", REPO_ROOT, Path(sys.executable))
    argv = rounds.scenario_args(args)
    rounds.check_scenario(side, argv)
    per_round = []
    with tempfile.TemporaryDirectory(prefix="kab-noise-pageload-") as tmp:
        for r in range(1, args.rounds + 1):
            print(f"noise: round {r}/{args.rounds}", file=sys.stderr, flush=True)
            csvs = rounds.run_round(side, argv, Path(tmp) / f"round-{r:03d}")
            per_round.append(rounds.read_all(csvs))
    return per_round


def save(
    summary: dict[str, Any], per_round: Sequence[Sequence[PageLoadRow]], results_dir: Path
) -> Path:
    """The rows CSV first, then the JSON naming it: a JSON never points at a missing file."""
    path = output_path(results_dir, str(summary["host_id"]))
    write_rows(path.with_suffix(".csv"), [r for rs in per_round for r in rs])
    summary["rows_csv"] = path.with_suffix(".csv").name
    write_atomic(path, json.dumps(summary, indent=1, allow_nan=False))
    return path
