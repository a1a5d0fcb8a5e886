"""`python -m benchmarks noise [bench flags] --rounds N`: this machine's noise floor (A/A).

compare's thresholds are guesses until someone measures how far identical code moves between
runs here. This runs the work tree N times (one repetition per round), then per cell and metric
reports the coefficient of variation and the max/min ratio, and replays compare's rule on
A/A splits of the rounds (some as "baseline", others as "candidate"): every regression or
improvement there is a false positive. Replays: all rounds in two halves (which also gives the
suggested threshold, the floor compare uses), 2 + 2 (what two `make bench` runs give) and 5 + 5
(bench-compare's default), when there are enough rounds.

The stats go to results/<host_id>/noise-<UTC timestamp>.json (atomically, format described in
benchmarks.analysis.rule), the raw rows beside it as noise-<stamp>.csv, so the numbers can be
re-analysed later (`--from-csv`); a noise floor belongs to a machine.

`--scenario pageload` (`make noise SCENARIO=pageload`) measures the page-load scenario instead,
with its flags (benchmarks.pageload.noise): noise-pageload-<stamp>.json, the floor of
page_load_p50_ms and page_load_p90_ms that compare uses for page-load rows.
"""

from __future__ import annotations

import argparse
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

from benchmarks.analysis import rounds
from benchmarks.analysis.compare import (
    IMPROVEMENT,
    INCONCLUSIVE,
    REGRESSION,
    compare_rows,
    json_safe,
    window_of,
)
from benchmarks.analysis.rounds import RoundError, Side
from benchmarks.analysis.rule import FORMAT_VERSION, Rule, add_rule_arguments, rule_from_args
from benchmarks.common import REPO_ROOT, OneLineParser, UsageError, print_error, write_atomic
from benchmarks.matrix import FULL
from benchmarks.records.keys import FINGERPRINT_FIELDS, METRICS, PAGE_METRICS, Metric, group_by_cell
from benchmarks.records.schema import ResultRow, SchemaError, read_rows, write_rows

MAX_SPLITS = 200
ENUMERATE_UP_TO = 50_000  # more possible splits than this: sample them instead of listing all
SPLIT_QUANTILE = 0.95
# The repetition counts people actually compare at, replayed besides the halves.
REPLAYS = (
    (FULL.repeat, FULL.repeat, f"make bench: {FULL.repeat} repetitions a side"),
    (rounds.BENCH_COMPARE_ROUNDS, rounds.BENCH_COMPARE_ROUNDS, "bench-compare default rounds"),
)


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


Split = tuple[tuple[int, ...], tuple[int, ...]]


def splits(
    n_rounds: int, n_base: int | None = None, n_new: int | None = None,
    limit: int = MAX_SPLITS, seed: int = 0,
) -> list[Split]:  # fmt: skip
    """Distinct (baseline rounds, candidate rounds) pairs; default: all rounds in two halves.

    With equal sizes a split and its mirror image are the same test, so only one is kept; beyond
    `limit` a fixed-seed sample keeps the result reproducible.
    """
    a = n_rounds // 2 if n_base is None else n_base
    b = n_rounds - a if n_new is None else n_new
    if a < 1 or b < 1 or a + b > n_rounds:
        return []
    if math.comb(n_rounds, a) * math.comb(n_rounds - a, b) > ENUMERATE_UP_TO:
        return _sampled_splits(n_rounds, a, b, limit, seed)
    pairs = []
    for base in itertools.combinations(range(n_rounds), a):
        rest = [i for i in range(n_rounds) if i not in base]
        pairs += [(base, new) for new in itertools.combinations(rest, b) if a != b or base < new]
    return random.Random(seed).sample(pairs, limit) if len(pairs) > limit else pairs


def _sampled_splits(n_rounds: int, a: int, b: int, limit: int, seed: int) -> list[Split]:
    """`limit` distinct random splits, for round counts too large to list every split."""
    rng, seen = random.Random(seed), set[Split]()
    while len(seen) < limit:
        picked = rng.sample(range(n_rounds), a + b)
        base, new = tuple(sorted(picked[:a])), tuple(sorted(picked[a:]))
        seen.add((base, new) if a != b or base < new else (new, base))
    return sorted(seen)


def _quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by rank (no interpolation), nan for no values."""
    vals = sorted(values)
    if not vals:
        return math.nan
    return vals[min(len(vals) - 1, math.ceil(q * len(vals)) - 1)]


def _suggest(move: float) -> float | None:
    """Whole percent, never below 2%: a threshold at the noise floor flags every blip."""
    return max(0.02, math.ceil(move * 100) / 100) if math.isfinite(move) else None


def replay(
    per_round: Sequence[Sequence[ResultRow]], rule: Rule,
    n_base: int | None = None, n_new: int | None = None, used_by: str = "all rounds, halves",
) -> dict[str, object]:  # fmt: skip
    """Compare's rule on A/A splits: per-metric false-positive rates and suggested thresholds,
    and the share of splits with any regression (what one comparison of a run would show)."""
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
        verdicts = compare_rows(base, new, rule).verdicts
        hit += any(v.decision.verdict == REGRESSION for v in verdicts)
        for v in verdicts:
            c = counts[v.metric]
            c["decided"] += 1
            c["flagged"] += v.decision.verdict in (REGRESSION, IMPROVEMENT)
            c["inconclusive"] += v.decision.verdict == INCONCLUSIVE
            if v.decision.ratio is not None:
                moves[v.metric].append(abs(v.decision.ratio - 1.0))
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


def _joined(values: Sequence[object]) -> str:
    """One value, or every distinct one joined: a mixed field must show, not be averaged."""
    return " | ".join(sorted({str(v) for v in values}))


def summarize(
    per_round: Sequence[Sequence[ResultRow]], rule: Rule, bench_argv: Sequence[str] | None = None
) -> dict[str, object]:
    """Everything the JSON file holds (format FORMAT_VERSION); undefined statistics are None."""
    rows = [r for rs in per_round for r in rs]
    summary = {
        "format_version": FORMAT_VERSION,
        "rounds": len(per_round),
        "host_id": rows[0].host_id if rows else "",
        "git_commit": _joined([r.git_commit for r in rows]),
        "fingerprint": {f: _joined([getattr(r, f) for r in rows]) for f in FINGERPRINT_FIELDS},
        "bench": {
            "argv": list(bench_argv) if bench_argv is not None else None,
            "rounds": len(per_round),
            "cells": sorted({k.label() for k in group_by_cell(rows)}),
            "window_s": window_of(rows),
        },
        "run_ids": sorted({r.run_id for r in rows}),
        "rule": asdict(rule),
        "spread": [asdict(s) for s in spreads(rows)],
        "false_positives": replay(per_round, rule),
        "replays": [replay(per_round, rule, a, b, why) for a, b, why in REPLAYS],
    }
    safe = json_safe(summary)
    assert isinstance(safe, dict)  # json_safe maps a dict to a dict
    return safe


def _spread_lines(summary: dict) -> list[str]:
    """Per metric: how many cells, their median and worst CV, the worst max/min."""
    lines = [f"{'metric':<24}{'cells':>6}{'median cv':>11}{'worst cv':>10}{'worst max/min':>15}"]
    for m in METRICS:
        mine = [s for s in summary["spread"] if s["metric"] == m.column and s["cv"] is not None]
        cvs = [s["cv"] for s in mine]
        worst = max((s["max_min"] for s in mine if s["max_min"] is not None), default=math.nan)
        med = statistics.median(cvs) if cvs else math.nan
        lines.append(
            f"{m.column:<24}{len(mine):>6}{med:>11.1%}{max(cvs, default=math.nan):>10.1%}"
            f"{worst:>15.3f}"
        )
    return lines


def _replay_lines(rp: dict, metrics: Sequence[Metric] = METRICS) -> list[str]:
    """One replay: its split count and share of splits with a regression, then per metric."""
    title = f"compare's rule on A/A splits, {rp['base_reps']} + {rp['new_reps']} ({rp['used_by']})"
    if not rp["splits"]:
        return [f"{title}: skipped, {rp['skipped']}"]
    share = rp["splits_with_regression"]
    lines = [
        f"{title}: {rp['splits']} splits, {share:.0%} with a regression somewhere",
        f"{'metric':<24}{'threshold':>10}{'false pos.':>11}{'inconcl.':>10}{'suggested':>11}",
    ]
    for m in metrics:
        s = rp[m.column]
        rate, sugg = s["false_positive_rate"], s["suggested_threshold"]
        inc = s["inconclusive"] / s["decided"] if s["decided"] else math.nan
        lines.append(
            f"{m.column:<24}{s['threshold_in_use']:>10.0%}"
            f"{(f'{rate:.1%}' if rate is not None else '-'):>11}{inc:>10.0%}"
            f"{(f'{sugg:.0%}' if sugg is not None else '-'):>11}"
        )
    return lines


def format_summary(summary: dict) -> str:
    """The human-readable report printed after the rounds."""
    lines = [f"A/A noise over {summary['rounds']} rounds on host {summary['host_id']}", ""]
    lines += _spread_lines(summary)
    for rp in [summary["false_positives"], *summary["replays"]]:
        lines += ["", *_replay_lines(rp)]
    lines.append(
        f"suggested = {SPLIT_QUANTILE:.0%} quantile of |median ratio - 1| over splits "
        "and cells, whole percent, at least 2%; the halves' figure is compare's noise floor"
    )
    return "\n".join(lines)


def output_path(results_dir: Path, host_id: str, now: float | None = None) -> Path:
    """results/<host_id>/noise-<UTC stamp>.json: beside the runs it qualifies, newest last."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return results_dir / (host_id or "unknown-host") / f"noise-{stamp}.json"


def rounds_from_csv(path: Path) -> list[list[ResultRow]]:
    """The rounds of a saved noise-*.csv (one run_id per round, in start order)."""
    runs: dict[str, list[ResultRow]] = {}
    for row in sorted(read_rows(path), key=lambda r: r.started_utc):
        runs.setdefault(row.run_id, []).append(row)
    if len(runs) < 2:
        raise SchemaError(f"{path}: {len(runs)} run(s); an A/A replay needs at least 2")
    return list(runs.values())


def measure(args: argparse.Namespace) -> list[list[ResultRow]]:
    """Run the work tree `--rounds` times, one repetition each, in a scratch directory."""
    side = Side("A", REPO_ROOT, Path(sys.executable))
    rounds.check_harness(side, rounds.bench_args(args))
    per_round = []
    with tempfile.TemporaryDirectory(prefix="kab-noise-") as tmp:
        for r in range(1, args.rounds + 1):
            print(f"noise: round {r}/{args.rounds}", file=sys.stderr, flush=True)
            out = Path(tmp) / f"round-{r:03d}"
            csvs = rounds.run_round(side, rounds.bench_args(args), out)
            per_round.append(rounds.read_all(csvs))
    return per_round


def save(summary: dict, per_round: Sequence[Sequence[ResultRow]], results_dir: Path) -> Path:
    """The rows CSV first, then the JSON naming it: a JSON never points at a missing file."""
    path = output_path(results_dir, str(summary["host_id"]))
    write_rows(path.with_suffix(".csv"), [r for rs in per_round for r in rs])
    summary["rows_csv"] = path.with_suffix(".csv").name
    write_atomic(path, json.dumps(summary, indent=1, allow_nan=False))
    return path


def build_parser(scenario: str = "bench") -> argparse.ArgumentParser:
    """The noise CLI: round count, output directory, the scenario's and the rule's flags."""
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
    parser.add_argument(
        "--from-csv",
        type=Path,
        metavar="CSV",
        help="re-analyse a saved noise-*.csv instead of running (prints, writes nothing)",
    )
    parser.add_argument(
        "--scenario",
        choices=("bench", "pageload"),
        default="bench",
        help="bench (default): `python -m benchmarks run` rows; pageload: `python -m "
        "benchmarks pageload` rows, with its flags (see --scenario pageload --help)",
    )
    if scenario == "pageload":
        from benchmarks.pageload import rounds as pages

        pages.add_arguments(parser)
    else:
        rounds.add_bench_arguments(parser)
    add_rule_arguments(parser)
    return parser


def main(argv: list[str]) -> int:
    """Measure (or re-read) the rounds, print the summary, write JSON and rows when measured."""
    from benchmarks.analysis.bench_compare import PAGELOAD, scenario_of

    scenario = scenario_of(argv)
    parser = build_parser(scenario)
    args = parser.parse_args(argv)
    if args.from_csv is None and args.rounds < 2:
        parser.error("--rounds must be at least 2")
    if scenario == PAGELOAD:
        return main_pages(args)
    try:
        rule = rule_from_args(args)
        per_round = rounds_from_csv(args.from_csv) if args.from_csv else measure(args)
    except (RoundError, UsageError) as exc:
        return print_error("noise", exc)
    except KeyboardInterrupt:
        sys.stderr.write("noise: interrupted\n")
        return 130
    summary = summarize(per_round, rule, None if args.from_csv else rounds.bench_args(args))
    if not args.from_csv:
        print(f"written: {save(summary, per_round, args.results_dir)}", file=sys.stderr)
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    return 0


def main_pages(args: argparse.Namespace) -> int:
    """The page-load scenario's A/A runs (benchmarks.pageload.noise), as `main` for bench."""
    from benchmarks.pageload import noise as pages
    from benchmarks.pageload import rounds as page_rounds

    try:
        rule = rule_from_args(args, PAGE_METRICS)
        per_round = pages.rounds_from_csv(args.from_csv) if args.from_csv else pages.measure(args)
    except (RoundError, UsageError) as exc:
        return print_error("noise", exc)
    except KeyboardInterrupt:
        sys.stderr.write("noise: interrupted\n")
        return 130
    argv = None if args.from_csv else page_rounds.scenario_args(args)
    summary = pages.summarize(per_round, rule, argv)
    if not args.from_csv:
        print(f"written: {pages.save(summary, per_round, args.results_dir)}", file=sys.stderr)
    print(json.dumps(summary, indent=1) if args.json else pages.format_summary(summary))
    return 0
