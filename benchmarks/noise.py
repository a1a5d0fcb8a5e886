"""`python -m benchmarks noise [bench flags] --rounds N`: this machine's noise floor (A/A).

compare's thresholds are guesses until someone measures how far identical code moves between
runs here. This runs the work tree N times (one repetition per round), then per cell and metric
reports the coefficient of variation and the max/min ratio, and replays compare's rule on
A/A splits of the rounds (half of them as "baseline", the rest as "candidate"): every verdict
other than "no change" or "inconclusive" there is a false positive. From the split medians it
suggests thresholds that identical code would cross in at most 5% of splits.

The stats go to results/<host_id>/noise-<UTC timestamp>.json (atomically), next to the runs
they qualify; a noise floor belongs to a machine.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import rounds
from benchmarks.cells import METRICS, group_by_cell
from benchmarks.clientspec import REPO_ROOT, write_atomic
from benchmarks.compare import (
    IMPROVEMENT,
    INCONCLUSIVE,
    REGRESSION,
    Rule,
    add_rule_arguments,
    compare_rows,
    rule_from_args,
)
from benchmarks.rounds import RoundError, Side
from benchmarks.schema import ResultRow, SchemaError
from servers.options import OneLineParser

MAX_SPLITS = 200
SPLIT_QUANTILE = 0.95


@dataclass(frozen=True)
class Spread:
    """Run-to-run spread of one metric of one cell over all rounds."""

    cell: str
    metric: str
    n: int
    mean: float
    cv: float  # sample standard deviation / mean
    max_min: float  # max / min


def spread(values: Sequence[float]) -> tuple[float, float]:
    """(coefficient of variation, max/min); nan when undefined (one value, zero mean or min)."""
    vals = [v for v in values if math.isfinite(v)]
    if len(vals) < 2:
        return math.nan, math.nan
    mean = statistics.fmean(vals)
    cv = statistics.stdev(vals) / mean if mean else math.nan
    return cv, (max(vals) / min(vals) if min(vals) > 0 else math.nan)


def spreads(rows: Sequence[ResultRow]) -> list[Spread]:
    """Run-to-run spread per cell and metric, over rows that measured something: a failed row's
    zero throughput or an invalid row's wrong mode is not noise."""
    out = []
    measured = [r for r in rows if r.status == "ok" and r.valid]
    for key, cell_rows in group_by_cell(measured).items():
        for m in METRICS:
            vals = [float(getattr(r, m.column)) for r in cell_rows]
            cv, max_min = spread(vals)
            mean = statistics.fmean(vals) if vals else math.nan
            out.append(Spread(key.label(), m.column, len(vals), mean, cv, max_min))
    return out


def splits(n_rounds: int, limit: int = MAX_SPLITS, seed: int = 0) -> list[tuple[int, ...]]:
    """Distinct ways to pick the "baseline" half of the rounds (its complement is the other).

    Round 0 is always on the baseline side, so a split and its mirror image are not both
    counted; beyond `limit` a fixed-seed sample keeps the result reproducible.
    """
    if n_rounds < 2:
        return []
    half = n_rounds // 2
    combos = list(itertools.combinations(range(n_rounds), half))
    if n_rounds % 2 == 0:  # equal halves: keep one of each mirrored pair
        combos = [c for c in combos if 0 in c]
    if len(combos) > limit:
        combos = random.Random(seed).sample(combos, limit)
    return combos


def _quantile(values: Sequence[float], q: float) -> float:
    vals = sorted(values)
    if not vals:
        return math.nan
    return vals[min(len(vals) - 1, math.ceil(q * len(vals)) - 1)]


def _suggest(move: float) -> float | None:
    """Whole percent, never below 2%: a threshold at the noise floor flags every blip."""
    return max(0.02, math.ceil(move * 100) / 100) if math.isfinite(move) else None


def false_positives(per_round: Sequence[Sequence[ResultRow]], rule: Rule) -> dict[str, object]:
    """Replay compare's rule on A/A splits: rates per metric and a suggested threshold each."""
    counts = {m.column: {"decided": 0, "flagged": 0, "inconclusive": 0} for m in METRICS}
    moves: dict[str, list[float]] = {m.column: [] for m in METRICS}
    chosen = splits(len(per_round))
    for combo in chosen:
        base = [r for i in combo for r in per_round[i]]
        new = [r for i, rows in enumerate(per_round) if i not in combo for r in rows]
        for v in compare_rows(base, new, rule).verdicts:
            c = counts[v.metric]
            c["decided"] += 1
            c["flagged"] += v.decision.verdict in (REGRESSION, IMPROVEMENT)
            c["inconclusive"] += v.decision.verdict == INCONCLUSIVE
            if v.decision.ratio is not None:
                moves[v.metric].append(abs(v.decision.ratio - 1.0))
    result: dict[str, object] = {"splits": len(chosen)}
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


def _finite_or_none(value: object) -> object:
    """Strict JSON has no NaN: undefined statistics become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def summarize(per_round: Sequence[Sequence[ResultRow]], rule: Rule) -> dict[str, object]:
    """Everything the JSON file holds; undefined statistics are None."""
    rows = [r for rs in per_round for r in rs]
    summary = {
        "rounds": len(per_round),
        "host_id": rows[0].host_id if rows else "",
        "run_ids": sorted({r.run_id for r in rows}),
        "rule": asdict(rule),
        "spread": [asdict(s) for s in spreads(rows)],
        "false_positives": false_positives(per_round, rule),
    }
    return _finite_or_none(summary)  # type: ignore[return-value]


def format_summary(summary: dict[str, object]) -> str:
    lines = [f"A/A noise over {summary['rounds']} rounds on host {summary['host_id']}", ""]
    lines.append(
        f"{'metric':<24}{'cells':>6}{'median cv':>11}{'worst cv':>10}{'worst max/min':>15}"
    )
    spread_rows = summary["spread"]
    assert isinstance(spread_rows, list)
    for m in METRICS:
        mine = [s for s in spread_rows if s["metric"] == m.column and s["cv"] is not None]
        cvs = [s["cv"] for s in mine]
        worst = max((s["max_min"] for s in mine if s["max_min"] is not None), default=math.nan)
        med = statistics.median(cvs) if cvs else math.nan
        lines.append(
            f"{m.column:<24}{len(mine):>6}{med:>11.1%}{max(cvs, default=math.nan):>10.1%}"
            f"{worst:>15.3f}"
        )
    fp = summary["false_positives"]
    assert isinstance(fp, dict)
    lines += [
        "",
        f"compare's rule on {fp['splits']} A/A splits of the rounds:",
        f"{'metric':<24}{'threshold':>10}{'false pos.':>11}{'inconcl.':>10}{'suggested':>11}",
    ]
    for m in METRICS:
        s = fp[m.column]
        rate = s["false_positive_rate"]
        inc = s["inconclusive"] / s["decided"] if s["decided"] else math.nan
        sugg = s["suggested_threshold"]
        lines.append(
            f"{m.column:<24}{s['threshold_in_use']:>10.0%}"
            f"{(f'{rate:.1%}' if rate is not None else '-'):>11}{inc:>10.0%}"
            f"{(f'{sugg:.0%}' if sugg is not None else '-'):>11}"
        )
    lines.append(
        f"suggested = {SPLIT_QUANTILE:.0%} quantile of |median ratio - 1| over splits "
        "and cells, whole percent, at least 2%"
    )
    return "\n".join(lines)


def output_path(results_dir: Path, host_id: str, now: float | None = None) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return results_dir / (host_id or "unknown-host") / f"noise-{stamp}.json"


def main(argv: list[str]) -> int:
    parser = OneLineParser(
        prog="python -m benchmarks noise",
        description="A/A runs of the work tree: run-to-run spread and the compare rule's "
        "false-positive rate on this machine.",
    )
    parser.add_argument("--rounds", type=int, default=6, help="rounds (default 6)")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=REPO_ROOT / "results",
        help="where results/<host_id>/noise-*.json goes",
    )
    rounds.add_bench_arguments(parser)
    add_rule_arguments(parser)
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    try:
        rule = rule_from_args(args)
        side = Side("A", REPO_ROOT, Path(sys.executable))
        flag = rounds.detect_output_flag(side)
        per_round = []
        with tempfile.TemporaryDirectory(prefix="kab-noise-") as tmp:
            for r in range(1, args.rounds + 1):
                print(f"noise: round {r}/{args.rounds}", file=sys.stderr, flush=True)
                out = Path(tmp) / f"round-{r:03d}"
                csvs = rounds.run_round(side, rounds.bench_args(args), out, flag)
                per_round.append(rounds.read_all(csvs))
    except (RoundError, SchemaError) as exc:
        sys.stderr.write(f"noise: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("noise: interrupted\n")
        return 130
    summary = summarize(per_round, rule)
    path = output_path(args.results_dir, str(summary["host_id"]))
    write_atomic(path, json.dumps(summary, indent=1, allow_nan=False))
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    print(f"written: {path}", file=sys.stderr)
    return 0
