"""Two page-load runs, cell by cell, with compare's two-part rule (`analysis.compare.decide`).

    python -m benchmarks compare BASE.csv NEW.csv        (page-load CSVs are recognised)
    python -m benchmarks pageload compare BASE.csv NEW.csv [compare's flags]

A cell is everything that configures a load (server, client, mode, TLS, RTT, N, B, keep-alive
timeout and max); its repetitions are the rows. Metrics: `page_load_p50_ms` (threshold 10%) and
`page_load_p90_ms` (20%), lower is better. As in compare: a change within the threshold is no
change (unless the repetitions spread too much to tell), beyond it a regression or improvement
only if the rank test (or, with few repetitions, the baseline's range) says it is not noise.
Invalid or failed rows, or another machine (the fingerprint, Chromium's version included), make
the cell inconclusive. Exit 1 on a regression, 0 otherwise, 2 on bad input.

The thresholds are compare's flags (`--threshold-p50`, `--threshold-p90`), raised to this
machine's A/A noise floor as compare does for bench rows: `--noise auto` (default) takes the
newest `results/<host_id>/noise-pageload-*.json` of the rows' machine, written by
`python -m benchmarks noise --scenario pageload` (benchmarks.pageload.noise).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

from benchmarks.analysis.compare import (
    INCONCLUSIVE,
    REGRESSION,
    VERDICT_ORDER,
    Decision,
    decide,
    json_safe,
)
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
from benchmarks.pageload.rows import COLUMNS, FILE_PREFIX, PageLoadRow, RowsError, read_rows
from benchmarks.records.keys import FINGERPRINT_FIELDS, PAGE_METRICS, Metric

PROG = "python -m benchmarks pageload compare"
METRICS = PAGE_METRICS
SCENARIO = "pageload"  # the noise files' `scenario` (benchmarks.analysis.rule)
FINGERPRINT = (*FINGERPRINT_FIELDS, "browser_version")


class PageCell(NamedTuple):
    server: str
    client: str
    mode: str
    tls: str
    rtt_ms: float
    resources: int
    resource_bytes: int
    keepalive_timeout_s: float
    keepalive_max: int

    def label(self) -> str:
        ka = "off" if self.keepalive_timeout_s == 0 else (
            f"{self.keepalive_timeout_s:g}s/{self.keepalive_max}"
        )  # fmt: skip
        return (
            f"{self.server}/{self.client}/{self.mode} tls={self.tls} rtt={self.rtt_ms:g} "
            f"n={self.resources} b={self.resource_bytes} ka={ka}"
        )


class Verdict(NamedTuple):
    cell: PageCell
    metric: Metric
    base: tuple[float, ...]
    new: tuple[float, ...]
    decision: Decision


def is_pageload_csv(path: Path) -> bool:
    """By its name (pageload-*.csv) or, renamed (bench-compare --save), by its header."""
    if path.name.startswith(FILE_PREFIX):
        return True
    try:
        with path.open(encoding="utf-8-sig") as f:
            header = f.readline().strip().split(",")
    except (OSError, UnicodeDecodeError):
        return False
    return sorted(header) == sorted(COLUMNS)


def cells(rows: Sequence[PageLoadRow]) -> dict[PageCell, list[PageLoadRow]]:
    out: dict[PageCell, list[PageLoadRow]] = {}
    for row in rows:
        key = PageCell(*(getattr(row, name) for name in PageCell._fields))
        out.setdefault(key, []).append(row)
    return out


def _problem(base: list[PageLoadRow], new: list[PageLoadRow], ignore: Sequence[str] = ()) -> str:
    problems = []
    for side, rows in (("base", base), ("new", new)):
        bad = sum(not r.valid or r.status != "ok" for r in rows)
        if bad:
            problems.append(f"invalid ({side} {bad}/{len(rows)} rows)")
    fields = [f for f in FINGERPRINT if f not in ignore]
    prints = {tuple(str(getattr(r, f)) for f in fields) for r in (*base, *new)}
    if len(prints) > 1:
        differing = [f for i, f in enumerate(fields) if len({p[i] for p in prints}) > 1]
        problems.append(f"machine differs: {', '.join(differing)}")
    return "; ".join(problems)


def default_rule() -> Rule:
    """The page metrics' default thresholds, alpha 0.05, every fingerprint field compared."""
    return Rule(thresholds={m.column: m.default_threshold for m in METRICS})


def compare_pages(
    base: Sequence[PageLoadRow],
    new: Sequence[PageLoadRow],
    rule: Rule | None = None,
    floor: NoiseFloor | None = None,
) -> tuple[list[Verdict], list[PageCell], list[PageCell]]:
    """(verdicts, cells only in base, cells only in new), by `rule` (thresholds keyed by the
    page metrics' columns), each cell's raised to the floor of its client (`floor`)."""
    rule = rule or default_rule()
    base_cells, new_cells = cells(base), cells(new)
    verdicts = []
    for key, base_rows in base_cells.items():
        new_rows = new_cells.get(key)
        if new_rows is None:
            continue
        problem = _problem(base_rows, new_rows, rule.ignore_fingerprint)
        for metric in METRICS:
            b = tuple(float(getattr(r, metric.column)) for r in base_rows)
            n = tuple(float(getattr(r, metric.column)) for r in new_rows)
            thresholds = rule.thresholds
            if floor is not None:
                thresholds = with_noise_floor(
                    thresholds, NoiseFloor(floors=floor.for_client(key.client))
                )
            threshold = thresholds.get(metric.column, metric.default_threshold)
            d = decide(b, n, metric, threshold, rule.alpha)
            if problem:
                own = d.reason if d.verdict == INCONCLUSIVE else ""
                d = Decision(INCONCLUSIVE, d.ratio, d.test, d.p_value,
                             "; ".join(filter(None, (problem, own))))  # fmt: skip
            verdicts.append(Verdict(key, metric, b, n, d))
    only_base = [k for k in base_cells if k not in new_cells]
    only_new = [k for k in new_cells if k not in base_cells]
    return verdicts, only_base, only_new


def _median(values: Sequence[float]) -> str:
    import statistics

    finite = [v for v in values if v == v]
    return f"{statistics.median(finite):,.0f}" if finite else "-"


def format_table(
    verdicts: list[Verdict], only_base: list[PageCell], only_new: list[PageCell]
) -> str:
    header = ("verdict", "metric", "base ms", "new ms", "ratio", "n b/n", "test", "cell")
    lines = [header]
    ordered = sorted(
        verdicts, key=lambda v: (VERDICT_ORDER.index(v.decision.verdict), v.cell.label())
    )
    for v in ordered:
        d = v.decision
        lines.append(
            (
                d.verdict.upper() if d.verdict == REGRESSION else d.verdict,
                v.metric.short,
                _median(v.base),
                _median(v.new),
                f"{d.ratio:.3f}" if d.ratio else "-",
                f"{len(v.base)}/{len(v.new)}",
                d.test or "-",
                v.cell.label() + (f"  [{d.reason}]" if d.reason else ""),
            )  # fmt: skip
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header) - 1)]
    out = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
           for r in lines]  # fmt: skip
    out += [f"only in baseline: {k.label()}" for k in only_base]
    out += [f"only in candidate: {k.label()}" for k in only_new]
    counts = ", ".join(
        f"{sum(v.decision.verdict == name for v in verdicts)} {name}" for name in VERDICT_ORDER
    )
    out.append(f"summary: {counts}; {len(only_base) + len(only_new)} cell(s) on one side only")
    return "\n".join(out)


def to_json(
    verdicts: list[Verdict], only_base: list[PageCell], only_new: list[PageCell], rule: Rule,
    floor: NoiseFloor | None,
) -> object:  # fmt: skip
    """The comparison as strict-JSON-ready data, in the shape of compare's for bench rows."""
    return json_safe(
        {
            "scenario": SCENARIO,
            "rule": asdict(rule),
            "noise": asdict(floor) if floor else None,
            "summary": {n: sum(v.decision.verdict == n for v in verdicts) for n in VERDICT_ORDER},
            "verdicts": [
                {
                    "cell": v.cell._asdict(),
                    "label": v.cell.label(),
                    "metric": v.metric.column,
                    "base": list(v.base),
                    "new": list(v.new),
                    **asdict(v.decision),
                }
                for v in verdicts
            ],  # fmt: skip
            "only_in_baseline": [k._asdict() for k in only_base],
            "only_in_candidate": [k._asdict() for k in only_new],
        }
    )


def load(path: Path) -> list[PageLoadRow]:
    """The rows of a page-load CSV; RowsError (one line) when there are none."""
    rows = read_rows(path)
    if not rows:
        raise RowsError(f"{path}: no rows")
    return rows


def judge(
    base: Sequence[PageLoadRow],
    new: Sequence[PageLoadRow],
    args: argparse.Namespace,
    prog: str = PROG,
) -> int:
    """compare's rule, flags and noise floor on page-load rows: the table (or JSON) on stdout,
    the thresholds line on stderr; exit 1 on a regression. Shared with bench-compare."""
    try:
        rule = rule_from_args(args, METRICS)
        floor = resolve_floor(
            args.noise, args.results_dir, [*base, *new], rule.ignore_fingerprint, METRICS,
            SCENARIO,
        )  # fmt: skip
    except UsageError as exc:  # SchemaError is one
        return print_error(prog, exc)
    print(thresholds_line(rule.thresholds, floor, METRICS), file=sys.stderr)
    verdicts, only_base, only_new = compare_pages(base, new, rule, floor)
    if args.json:
        data = to_json(verdicts, only_base, only_new, rule, floor)
        print(json.dumps(data, indent=1, allow_nan=False))
    else:
        print(format_table(verdicts, only_base, only_new))
    if any(v.decision.verdict == REGRESSION for v in verdicts):
        return 1
    unsure = sum(v.decision.verdict == INCONCLUSIVE for v in verdicts) + len(only_base)
    return 1 if args.fail_on_inconclusive and (unsure or only_new) else 0


def run(args: argparse.Namespace, prog: str = PROG) -> int:
    """Read both CSVs (one line and exit 2 when one is not a page-load CSV), then judge."""
    try:
        base, new = load(args.baseline), load(args.candidate)
    except RowsError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    return judge(base, new, args, prog)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """compare's flags: the two CSVs, the rule's thresholds and alpha, the noise floor."""
    p = OneLineParser(prog=prog, description="compare two page-load CSVs, noise-aware")
    p.add_argument("baseline", type=Path)
    p.add_argument("candidate", type=Path)
    add_rule_arguments(p)
    add_noise_arguments(p)
    return p


def main(argv: Sequence[str]) -> int:
    return run(build_parser().parse_args(list(argv)))
