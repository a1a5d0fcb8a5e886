"""`python -m benchmarks compare BASE.csv NEW.csv`: is the candidate slower, noise considered?

The rule is asv's and pyperf's two-part test, per cell and metric:

1. practical: the median moved by more than a threshold in the bad (or good) direction
   (defaults: throughput 10%, server CPU per request 10%, p50 10%, p99 20%; p99 is a tail and
   moves more between identical runs);
2. beyond noise: with enough repetitions on both sides (>= 3 each and enough that the exact
   two-sided Mann-Whitney U can reach p < alpha at all: 4+4, 3+5, ...), the rank test rejects at
   alpha = 0.05; with fewer, every candidate value lies outside the baseline's min-max range.

alpha = 0.05 rather than asv's 0.002: repetitions here cost seconds each, and with 4-5 a side
0.002 is unreachable, so the test would never speak. False positives are held down by the
practical threshold, which must also be crossed; `python -m benchmarks noise` measures the
combined false-positive rate on this machine. Both parts must hold; a change that crosses the
threshold but not the noise test is "inconclusive", not "no change", because a noisy cell cannot
vouch for the absence of a regression. Rows that are client-bound, invalid or failed, and cells
whose machine fingerprint differs, are inconclusive too: never a silent pass.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scipy.stats import mannwhitneyu

from benchmarks.cells import (
    FINGERPRINT_FIELDS,
    METRICS,
    CellKey,
    Metric,
    fingerprint_diff,
    group_by_cell,
    row_problem,
)
from benchmarks.schema import ResultRow, SchemaError, read_rows
from servers.options import OneLineParser

REGRESSION = "regression"
IMPROVEMENT = "improvement"
NO_CHANGE = "no change"
INCONCLUSIVE = "inconclusive"
VERDICT_ORDER = (REGRESSION, IMPROVEMENT, INCONCLUSIVE, NO_CHANGE)

DEFAULT_ALPHA = 0.05
MIN_REPS_FOR_RANK_TEST = 3
# "No change" is a claim too: when repetitions on one side spread over more than this many
# thresholds ((max - min) / median), a threshold-sized shift would be buried in them, so the
# cell cannot vouch for itself and the verdict is inconclusive instead.
NOISY_SPREAD_FACTOR = 2.0


@dataclass(frozen=True)
class Rule:
    """Settings of the decision rule; thresholds are fractions keyed by metric column."""

    thresholds: dict[str, float] = field(
        default_factory=lambda: {m.column: m.default_threshold for m in METRICS}
    )
    alpha: float = DEFAULT_ALPHA
    ignore_fingerprint: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """The verdict on one metric of one cell, with the evidence shown to the reader."""

    verdict: str
    ratio: float | None  # median(new) / median(base)
    test: str  # "U p=0.029", "range", or "" when no noise test was needed or possible
    p_value: float | None
    reason: str


@dataclass(frozen=True)
class MetricVerdict:
    cell: CellKey
    metric: str
    base: tuple[float, ...]
    new: tuple[float, ...]
    decision: Decision


@dataclass
class Comparison:
    verdicts: list[MetricVerdict]
    only_base: list[CellKey]
    only_new: list[CellKey]

    def count(self, verdict: str) -> int:
        return sum(v.decision.verdict == verdict for v in self.verdicts)


def min_exact_p(n_base: int, n_new: int) -> float:
    """Smallest two-sided p the exact U test can return: complete separation, 2 / C(n+m, n)."""
    return min(1.0, 2.0 / math.comb(n_base + n_new, n_base))


def rank_test_usable(n_base: int, n_new: int, alpha: float) -> bool:
    """A rank test that cannot reach alpha whatever the data would only ever say "no change"."""
    return min(n_base, n_new) >= MIN_REPS_FOR_RANK_TEST and min_exact_p(n_base, n_new) < alpha


def relative_spread(values: Sequence[float]) -> float:
    """(max - min) / median; 0 for fewer than two values (no spread seen, none assumed)."""
    if len(values) < 2:
        return 0.0
    med = statistics.median(values)
    return (max(values) - min(values)) / abs(med) if med else 0.0


def decide(
    base: Sequence[float], new: Sequence[float], metric: Metric, threshold: float, alpha: float
) -> Decision:
    """The two-part rule on one metric's repetitions; pure, so tests can pin every branch."""
    base = [v for v in base if math.isfinite(v)]
    new = [v for v in new if math.isfinite(v)]
    if not base or not new:
        return Decision(INCONCLUSIVE, None, "", None, "no finite values on one side")
    b, n = statistics.median(base), statistics.median(new)
    if b == 0:
        if n == 0:
            return Decision(NO_CHANGE, 1.0, "", None, "")
        return Decision(INCONCLUSIVE, None, "", None, "baseline median is 0")
    ratio = n / b
    change = ratio - 1.0
    worse = -change if metric.higher_is_better else change
    if abs(change) <= threshold:
        worst = max(relative_spread(base), relative_spread(new))
        if worst > NOISY_SPREAD_FACTOR * threshold:
            why = f"spread {worst:.0%} > {NOISY_SPREAD_FACTOR:g} x threshold: too noisy to tell"
            return Decision(INCONCLUSIVE, ratio, "", None, why)
        return Decision(NO_CHANGE, ratio, "", None, "")
    direction = REGRESSION if worse > 0 else IMPROVEMENT
    if rank_test_usable(len(base), len(new), alpha):
        p = float(mannwhitneyu(base, new, alternative="two-sided").pvalue)
        if p < alpha:
            return Decision(direction, ratio, f"U p={p:.3g}", p, "")
        return Decision(
            INCONCLUSIVE, ratio, f"U p={p:.3g}", p, f"beyond threshold but p >= {alpha:g}: noisy"
        )
    if len(base) < 2:
        return Decision(INCONCLUSIVE, ratio, "", None, "1 baseline repetition: spread unknown")
    lo, hi = min(base), max(base)
    outside = all(v > hi for v in new) if n > b else all(v < lo for v in new)
    # Complete separation has probability 2 / C(n+m, n) under "no change": shown as the
    # evidence's strength (0.1 at 3+3, 0.33 at 2+2), since the range rule is weak with few runs.
    test = f"range p={min_exact_p(len(base), len(new)):.2g}"
    if outside:
        return Decision(direction, ratio, test, None, "")
    return Decision(INCONCLUSIVE, ratio, test, None, "beyond threshold but within spread")


def _cell_problem(base: list[ResultRow], new: list[ResultRow], rule: Rule) -> str | None:
    """A reason that makes every metric of the cell inconclusive, or None."""
    problems = []
    for side, rows in (("base", base), ("new", new)):
        found = [p for p in map(row_problem, rows) if p]
        if found:
            kinds = ", ".join(sorted(set(found)))
            problems.append(f"{kinds} ({side} {len(found)}/{len(rows)} rows)")
    differing = fingerprint_diff(base, new, rule.ignore_fingerprint)
    if differing:
        problems.append(f"machine differs: {', '.join(differing)}")
    return "; ".join(problems) or None


def compare_rows(base: Sequence[ResultRow], new: Sequence[ResultRow], rule: Rule) -> Comparison:
    """Match cells by configuration and decide every metric of every common cell."""
    base_cells, new_cells = group_by_cell(base), group_by_cell(new)
    verdicts = []
    for key, base_rows in base_cells.items():
        new_rows = new_cells.get(key)
        if new_rows is None:
            continue
        problem = _cell_problem(base_rows, new_rows, rule)
        for metric in METRICS:
            b = tuple(float(getattr(r, metric.column)) for r in base_rows)
            n = tuple(float(getattr(r, metric.column)) for r in new_rows)
            threshold = rule.thresholds.get(metric.column, metric.default_threshold)
            decision = decide(b, n, metric, threshold, rule.alpha)
            if problem:
                decision = Decision(
                    INCONCLUSIVE, decision.ratio, decision.test, decision.p_value, problem
                )
            verdicts.append(MetricVerdict(key, metric.column, b, n, decision))
    return Comparison(
        verdicts=verdicts,
        only_base=[k for k in base_cells if k not in new_cells],
        only_new=[k for k in new_cells if k not in base_cells],
    )


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


def _spread(values: Sequence[float]) -> str:
    """How far apart identical repetitions landed, for the table."""
    finite = [v for v in values if math.isfinite(v)]
    return f"{relative_spread(finite):.0%}" if len(finite) >= 2 else "-"


def format_table(comparison: Comparison) -> str:
    """Worst first; one line per cell and metric; the reason says why a verdict is withheld."""
    short = {m.column: m.short for m in METRICS}
    header = ("verdict", "metric", "base", "new", "ratio", "spread b/n", "n b/n", "test", "cell")
    lines = [header]
    ordered = sorted(
        comparison.verdicts,
        key=lambda v: (VERDICT_ORDER.index(v.decision.verdict), v.cell.label(), v.metric),
    )
    for v in ordered:
        d = v.decision
        ratio = f"{d.ratio:.3f}" if d.ratio is not None else "-"
        cell = v.cell.label() + (f"  [{d.reason}]" if d.reason else "")
        lines.append(
            (
                d.verdict.upper() if d.verdict == REGRESSION else d.verdict,
                short[v.metric],
                _num(statistics.median(v.base)) if v.base else "-",
                _num(statistics.median(v.new)) if v.new else "-",
                ratio,
                f"{_spread(v.base)}/{_spread(v.new)}",
                f"{len(v.base)}/{len(v.new)}",
                d.test or "-",
                cell,
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header) - 1)]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in lines
    ]
    for label, keys in (
        ("only in baseline", comparison.only_base),
        ("only in candidate", comparison.only_new),
    ):
        out += [f"{label}: {k.label()}" for k in keys]
    counts = ", ".join(f"{comparison.count(v)} {v}" for v in VERDICT_ORDER)
    one_sided = len(comparison.only_base) + len(comparison.only_new)
    out.append(f"summary: {counts}; {one_sided} cell(s) on one side only")
    return "\n".join(out)


def to_json(comparison: Comparison, rule: Rule) -> dict[str, object]:
    return {
        "rule": asdict(rule),
        "summary": {v: comparison.count(v) for v in VERDICT_ORDER},
        "verdicts": [
            {
                "cell": v.cell._asdict(),
                "label": v.cell.label(),
                "metric": v.metric,
                "base": list(v.base),
                "new": list(v.new),
                **asdict(v.decision),
            }
            for v in comparison.verdicts
        ],
        "only_in_baseline": [k._asdict() for k in comparison.only_base],
        "only_in_candidate": [k._asdict() for k in comparison.only_new],
    }


def exit_code(comparison: Comparison, fail_on_inconclusive: bool = False) -> int:
    if comparison.count(REGRESSION):
        return 1
    unsure = comparison.count(INCONCLUSIVE) + len(comparison.only_base) + len(comparison.only_new)
    return 1 if fail_on_inconclusive and unsure else 0


def _fraction(text: str) -> float:
    """Accept 0.1 or 10%."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 <= value < 10:
        raise argparse.ArgumentTypeError(f"threshold out of range: {text}")
    return value


def add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    """The rule's flags, shared with bench-compare and noise so the three agree."""
    for m in METRICS:
        parser.add_argument(
            f"--threshold-{m.short}",
            type=_fraction,
            default=m.default_threshold,
            metavar="FRAC",
            help=f"practical threshold for {m.column} "
            f"(default {m.default_threshold * 100:.0f}%%; '0.1' or '10%%')",  # %% for argparse
        )
    parser.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help="significance level of the Mann-Whitney U test (default 0.05)",
    )
    parser.add_argument(
        "--ignore-fingerprint",
        default="",
        metavar="FIELD,...",
        help="machine fields allowed to differ, e.g. 'packages' when the change "
        f"is a dependency upgrade; from {', '.join(FINGERPRINT_FIELDS)}",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--fail-on-inconclusive",
        action="store_true",
        help="exit 1 when any cell is inconclusive or on one side only",
    )


def rule_from_args(args: argparse.Namespace) -> Rule:
    ignore = tuple(f for f in args.ignore_fingerprint.split(",") if f)
    unknown = set(ignore) - set(FINGERPRINT_FIELDS)
    if unknown:
        raise SchemaError(f"--ignore-fingerprint: unknown field(s) {', '.join(sorted(unknown))}")
    if not 0 < args.alpha < 1:
        raise SchemaError(f"--alpha must be between 0 and 1, got {args.alpha:g}")
    return Rule(
        thresholds={m.column: getattr(args, f"threshold_{m.short}") for m in METRICS},
        alpha=args.alpha,
        ignore_fingerprint=ignore,
    )


def load(path: Path) -> list[ResultRow]:
    """read_rows plus the one check it leaves to callers: a CSV with no rows is no baseline."""
    rows = read_rows(path)
    if not rows:
        raise SchemaError(f"{path}: no result rows")
    return rows


def report(comparison: Comparison, rule: Rule, as_json: bool, fail_on_inconclusive: bool) -> int:
    """Print the comparison (table or JSON) and return the exit code; shared with bench-compare."""
    if as_json:
        print(json.dumps(to_json(comparison, rule), indent=1))
    else:
        print(format_table(comparison))
    return exit_code(comparison, fail_on_inconclusive)


def main(argv: list[str]) -> int:
    parser = OneLineParser(
        prog="python -m benchmarks compare",
        description="Compare two results CSVs cell by cell. Exit 1 on any regression, "
        "0 otherwise, 2 on bad input.",
    )
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    add_rule_arguments(parser)
    args = parser.parse_args(argv)
    try:
        rule = rule_from_args(args)
        base, new = load(args.baseline), load(args.candidate)
    except SchemaError as exc:
        sys.stderr.write(f"compare: error: {exc}\n")
        return 2
    return report(compare_rows(base, new, rule), rule, args.json, args.fail_on_inconclusive)
