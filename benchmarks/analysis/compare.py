"""`python -m benchmarks compare BASE.csv NEW.csv`: is the candidate slower, noise considered?

The rule is asv's and pyperf's two-part test, per cell and metric:

1. practical: the median moved by more than a threshold in the bad (or good) direction
   (defaults: throughput 10%, server CPU per request 10%, p50 10%, p99 20%; p99 is a tail and
   moves more between identical runs), raised to this machine's measured A/A noise floor per
   metric when a matching `results/<host_id>/noise-*.json` exists (`--noise`);
2. beyond noise: with enough repetitions that the exact two-sided Mann-Whitney U can reach
   p < alpha at all (4+4, 3+5, 2+8, ...), the rank test rejects at alpha = 0.05; with fewer,
   every candidate value lies outside the baseline's min-max range.

Fewer than two repetitions on either side is inconclusive whatever the ratio: with one value the
spread is unknown, so neither "regression" nor "no change" can be claimed honestly. alpha = 0.05
rather than asv's 0.002: repetitions cost seconds each here, and with 4-5 a side 0.002 is
unreachable. A change that crosses the threshold but not the noise test is "inconclusive", not
"no change": a noisy cell cannot vouch for the absence of a regression. Rows that are
client-bound, invalid or failed, cells whose machine fingerprint differs and cells measured over
windows of different length are inconclusive too: never a silent pass.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from scipy.stats import mannwhitneyu

from benchmarks.analysis.rule import (
    NoiseFloor,
    Rule,
    add_noise_arguments,
    add_rule_arguments,
    resolve_floor,
    rule_from_args,
    thresholds_line,
    with_noise_floor,
)
from benchmarks.common import OneLineParser, UsageError, print_error
from benchmarks.records.keys import (
    METRICS,
    CellKey,
    Metric,
    fingerprint_diff,
    group_by_cell,
    row_problem,
)
from benchmarks.records.schema import ResultRow, SchemaError, read_rows

REGRESSION = "regression"
IMPROVEMENT = "improvement"
NO_CHANGE = "no change"
INCONCLUSIVE = "inconclusive"
VERDICT_ORDER = (REGRESSION, IMPROVEMENT, INCONCLUSIVE, NO_CHANGE)

MIN_REPS = 2  # below this a side has no spread, so no verdict at all
# "No change" is a claim too: when repetitions on one side spread over more than this many
# thresholds ((max - min) / median), a threshold-sized shift would be buried in them, so the
# cell cannot vouch for itself and the verdict is inconclusive instead.
NOISY_SPREAD_FACTOR = 2.0
# Median windows further apart than this (max / min - 1) measure differently: a 1 s window is
# dominated by start-up and tick-based CPU accounting, a 5 s one is not.
WINDOW_TOLERANCE = 0.25


@dataclass(frozen=True)
class Decision:
    """The verdict on one metric of one cell, with the evidence shown to the reader."""

    verdict: str
    ratio: float | None  # median(new) / median(base)
    test: str  # "U p=0.029", "range p=0.33", or "" when no noise test was needed or possible
    p_value: float | None
    reason: str


@dataclass(frozen=True)
class MetricVerdict:
    """A decision together with the values it was made on, for the table and the JSON."""

    cell: CellKey
    metric: str
    base: tuple[float, ...]
    new: tuple[float, ...]
    decision: Decision


@dataclass
class Comparison:
    """Every verdict, plus the cells that only one side measured (they are never a pass)."""

    verdicts: list[MetricVerdict]
    only_base: list[CellKey]
    only_new: list[CellKey]

    def count(self, verdict: str) -> int:
        """How many metric verdicts are `verdict`."""
        return sum(v.decision.verdict == verdict for v in self.verdicts)


def finite(values: Iterable[float]) -> list[float]:
    """NaN and infinities carry no measurement: a failed cell's NaN must not count as a rep."""
    return [v for v in values if math.isfinite(v)]


def min_exact_p(n_base: int, n_new: int) -> float:
    """Smallest two-sided p the exact U test can return: complete separation, 2 / C(n+m, n)."""
    return min(1.0, 2.0 / math.comb(n_base + n_new, n_base))


def rank_test_usable(n_base: int, n_new: int, alpha: float) -> bool:
    """A rank test that cannot reach alpha whatever the data would only ever say "no change"."""
    return min(n_base, n_new) >= MIN_REPS and min_exact_p(n_base, n_new) < alpha


def relative_spread(values: Sequence[float]) -> float:
    """(max - min) / median; 0 for fewer than two values (no spread seen, none assumed)."""
    if len(values) < 2:
        return 0.0
    med = statistics.median(values)
    return (max(values) - min(values)) / abs(med) if med else 0.0


def _too_few(n_base: int, n_new: int) -> str | None:
    """The reason a side is too small to have a spread, or None."""
    sides = (("baseline", n_base), ("new", n_new))
    short = [f"{n} {side} repetition" for side, n in sides if n < MIN_REPS]
    return " and ".join(short) + ": spread unknown" if short else None


def decide(
    base: Sequence[float], new: Sequence[float], metric: Metric, threshold: float, alpha: float
) -> Decision:
    """The two-part rule on one metric's repetitions; pure, so tests can pin every branch."""
    base, new = finite(base), finite(new)
    if not base or not new:
        return Decision(INCONCLUSIVE, None, "", None, "no finite values on one side")
    b, n = statistics.median(base), statistics.median(new)
    ratio = n / b if b else None
    few = _too_few(len(base), len(new))
    if few:
        return Decision(INCONCLUSIVE, ratio, "", None, few)
    if ratio is None:
        if n == 0:
            return Decision(NO_CHANGE, 1.0, "", None, "")
        return Decision(INCONCLUSIVE, None, "", None, "baseline median is 0")
    change = ratio - 1.0
    if abs(change) <= threshold:
        worst = max(relative_spread(base), relative_spread(new))
        if worst > NOISY_SPREAD_FACTOR * threshold:
            why = f"spread {worst:.0%} > {NOISY_SPREAD_FACTOR:g} x threshold: too noisy to tell"
            return Decision(INCONCLUSIVE, ratio, "", None, why)
        return Decision(NO_CHANGE, ratio, "", None, "")
    worse = -change if metric.higher_is_better else change
    return _beyond_noise(base, new, ratio, REGRESSION if worse > 0 else IMPROVEMENT, alpha)


def _beyond_noise(
    base: list[float], new: list[float], ratio: float, direction: str, alpha: float
) -> Decision:
    """Part two, for a change past the threshold: the rank test, or the baseline's range."""
    if rank_test_usable(len(base), len(new), alpha):
        p = float(mannwhitneyu(base, new, alternative="two-sided").pvalue)
        if p < alpha:
            return Decision(direction, ratio, f"U p={p:.3g}", p, "")
        return Decision(
            INCONCLUSIVE, ratio, f"U p={p:.3g}", p, f"beyond threshold but p >= {alpha:g}: noisy"
        )
    lo, hi = min(base), max(base)
    outside = all(v > hi for v in new) if ratio > 1 else all(v < lo for v in new)
    # Complete separation has probability 2 / C(n+m, n) under "no change": shown as the
    # evidence's strength (0.1 at 3+3, 0.33 at 2+2), since the range rule is weak with few runs.
    test = f"range p={min_exact_p(len(base), len(new)):.2g}"
    if outside:
        return Decision(direction, ratio, test, None, "")
    why = "beyond threshold but a new value is within the baseline's range"
    return Decision(INCONCLUSIVE, ratio, test, None, why)


def window_of(rows: Sequence[ResultRow]) -> float | None:
    """Median measured window of the rows that ran (a failed row's 0 is no window)."""
    vals = [r.duration_s for r in rows if r.status == "ok" and r.duration_s > 0]
    return statistics.median(vals) if vals else None


def windows_differ(a: float, b: float) -> bool:
    """True when two windows are too far apart for their numbers to be compared as equals."""
    return max(a, b) > (1 + WINDOW_TOLERANCE) * min(a, b)


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
    wb, wn = window_of(base), window_of(new)
    if wb and wn and windows_differ(wb, wn):
        problems.append(f"window differs: {wb:.1f} s vs {wn:.1f} s")
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
            d = decide(b, n, metric, threshold, rule.alpha)
            if problem:  # keep the rule's own doubt too: both reasons are true
                own = d.reason if d.verdict == INCONCLUSIVE else ""
                reason = "; ".join(filter(None, (problem, own)))
                d = Decision(INCONCLUSIVE, d.ratio, d.test, d.p_value, reason)
            verdicts.append(MetricVerdict(key, metric.column, b, n, d))
    return Comparison(
        verdicts=verdicts,
        only_base=[k for k in base_cells if k not in new_cells],
        only_new=[k for k in new_cells if k not in base_cells],
    )


def _num(value: float | None) -> str:
    """A table figure: thousands separated, three decimals for small values, "-" for none."""
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


def _median(values: Sequence[float]) -> str:
    """Median of the finite values, for the table."""
    vals = finite(values)
    return _num(statistics.median(vals)) if vals else "-"


def _spread(values: Sequence[float]) -> str:
    """How far apart identical repetitions landed, for the table."""
    vals = finite(values)
    return f"{relative_spread(vals):.0%}" if len(vals) >= 2 else "-"


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
        lines.append(
            (
                d.verdict.upper() if d.verdict == REGRESSION else d.verdict,
                short[v.metric],
                _median(v.base),
                _median(v.new),
                f"{d.ratio:.3f}" if d.ratio is not None else "-",
                f"{_spread(v.base)}/{_spread(v.new)}",
                f"{len(finite(v.base))}/{len(finite(v.new))}",
                d.test or "-",
                v.cell.label() + (f"  [{d.reason}]" if d.reason else ""),
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


def json_safe(value: object) -> object:
    """Strict JSON has no NaN or Infinity: undefined numbers become null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def to_json(comparison: Comparison, rule: Rule, floor: NoiseFloor | None = None) -> object:
    """The comparison as strict-JSON-ready data: settings, counts, every verdict and its values."""
    data = {
        "rule": asdict(rule),
        "noise": asdict(floor) if floor else None,
        "summary": {v: comparison.count(v) for v in VERDICT_ORDER},
        "verdicts": [
            {
                "cell": asdict(v.cell),
                "label": v.cell.label(),
                "metric": v.metric,
                "base": list(v.base),
                "new": list(v.new),
                **asdict(v.decision),
            }
            for v in comparison.verdicts
        ],
        "only_in_baseline": [asdict(k) for k in comparison.only_base],
        "only_in_candidate": [asdict(k) for k in comparison.only_new],
    }
    return json_safe(data)


def exit_code(comparison: Comparison, fail_on_inconclusive: bool = False) -> int:
    """1 on a regression (or, when asked, on any doubt), else 0."""
    if comparison.count(REGRESSION):
        return 1
    unsure = comparison.count(INCONCLUSIVE) + len(comparison.only_base) + len(comparison.only_new)
    return 1 if fail_on_inconclusive and unsure else 0


def load(path: Path) -> list[ResultRow]:
    """read_rows plus the one check it leaves to callers: a CSV with no rows is no baseline."""
    rows = read_rows(path)
    if not rows:
        raise SchemaError(f"{path}: no result rows")
    return rows


def report(
    comparison: Comparison,
    rule: Rule,
    as_json: bool,
    fail_on_inconclusive: bool,
    floor: NoiseFloor | None = None,
) -> int:
    """Print the comparison (table or JSON) and return the exit code; shared with bench-compare."""
    if as_json:
        print(json.dumps(to_json(comparison, rule, floor), indent=1, allow_nan=False))
    else:
        print(format_table(comparison))
    return exit_code(comparison, fail_on_inconclusive)


def main(argv: list[str]) -> int:
    """The CLI: exit 1 on any regression, 0 otherwise, 2 with one line on bad input."""
    parser = OneLineParser(
        prog="python -m benchmarks compare",
        description="Compare two results CSVs cell by cell. Exit 1 on any regression, "
        "0 otherwise, 2 on bad input.",
    )
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    add_rule_arguments(parser)
    add_noise_arguments(parser)
    args = parser.parse_args(argv)
    from benchmarks.pageload import compare as pages  # page-load runs: their own cells, metrics

    if pages.is_pageload_csv(args.baseline) or pages.is_pageload_csv(args.candidate):
        return pages.run(args, "compare")
    try:
        rule = rule_from_args(args)
        base, new = load(args.baseline), load(args.candidate)
        floor = resolve_floor(args.noise, args.results_dir, base + new, rule.ignore_fingerprint)
    except UsageError as exc:
        return print_error("compare", exc)
    print(thresholds_line(rule.thresholds, floor), file=sys.stderr)
    effective = replace(rule, thresholds=with_noise_floor(rule.thresholds, floor))
    comparison = compare_rows(base, new, effective)
    return report(comparison, effective, args.json, args.fail_on_inconclusive, floor)
