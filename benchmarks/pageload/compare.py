"""Two page-load runs, cell by cell, with compare's two-part rule (`analysis.compare.decide`).

    python -m benchmarks compare BASE.csv NEW.csv        (page-load CSVs are recognised)
    python -m benchmarks pageload compare BASE.csv NEW.csv [--fail-on-inconclusive]

A cell is everything that configures a load (server, client, mode, TLS, RTT, N, B, keep-alive
timeout and max); its repetitions are the rows. Metrics: `page_load_p50_ms` (threshold 10%) and
`page_load_p90_ms` (20%), lower is better. As in compare: a change within the threshold is no
change (unless the repetitions spread too much to tell), beyond it a regression or improvement
only if the rank test (or, with few repetitions, the baseline's range) says it is not noise.
Invalid or failed rows, or another machine (the fingerprint, Chromium's version included), make
the cell inconclusive. Exit 1 on a regression, 0 otherwise, 2 on bad input. No A/A noise floor
yet: `noise` does not run this scenario (open).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from benchmarks.analysis.compare import INCONCLUSIVE, REGRESSION, VERDICT_ORDER, Decision, decide
from benchmarks.analysis.rule import DEFAULT_ALPHA
from benchmarks.common import OneLineParser
from benchmarks.pageload.rows import FILE_PREFIX, PageLoadRow, RowsError, read_rows
from benchmarks.records.keys import FINGERPRINT_FIELDS, Metric

PROG = "python -m benchmarks pageload compare"
METRICS = (
    Metric("page_load_p50_ms", False, 0.10, "p50"),
    Metric("page_load_p90_ms", False, 0.20, "p90"),
)
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
    return path.name.startswith(FILE_PREFIX)


def cells(rows: Sequence[PageLoadRow]) -> dict[PageCell, list[PageLoadRow]]:
    out: dict[PageCell, list[PageLoadRow]] = {}
    for row in rows:
        key = PageCell(*(getattr(row, name) for name in PageCell._fields))
        out.setdefault(key, []).append(row)
    return out


def _problem(base: list[PageLoadRow], new: list[PageLoadRow]) -> str:
    problems = []
    for side, rows in (("base", base), ("new", new)):
        bad = sum(not r.valid or r.status != "ok" for r in rows)
        if bad:
            problems.append(f"invalid ({side} {bad}/{len(rows)} rows)")
    prints = {tuple(str(getattr(r, f)) for f in FINGERPRINT) for r in (*base, *new)}
    if len(prints) > 1:
        differing = [f for i, f in enumerate(FINGERPRINT) if len({p[i] for p in prints}) > 1]
        problems.append(f"machine differs: {', '.join(differing)}")
    return "; ".join(problems)


def compare_pages(
    base: Sequence[PageLoadRow], new: Sequence[PageLoadRow], alpha: float = DEFAULT_ALPHA
) -> tuple[list[Verdict], list[PageCell], list[PageCell]]:
    """(verdicts, cells only in base, cells only in new)."""
    base_cells, new_cells = cells(base), cells(new)
    verdicts = []
    for key, base_rows in base_cells.items():
        new_rows = new_cells.get(key)
        if new_rows is None:
            continue
        problem = _problem(base_rows, new_rows)
        for metric in METRICS:
            b = tuple(float(getattr(r, metric.column)) for r in base_rows)
            n = tuple(float(getattr(r, metric.column)) for r in new_rows)
            d = decide(b, n, metric, metric.default_threshold, alpha)
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


def run(
    baseline: Path,
    candidate: Path,
    alpha: float = DEFAULT_ALPHA,
    fail_on_inconclusive: bool = False,
    prog: str = PROG,
) -> int:
    try:
        base, new = read_rows(baseline), read_rows(candidate)
    except RowsError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    for path, rows in ((baseline, base), (candidate, new)):
        if not rows:
            sys.stderr.write(f"{prog}: error: {path}: no rows\n")
            return 2
    verdicts, only_base, only_new = compare_pages(base, new, alpha)
    print(format_table(verdicts, only_base, only_new))
    if any(v.decision.verdict == REGRESSION for v in verdicts):
        return 1
    unsure = sum(v.decision.verdict == INCONCLUSIVE for v in verdicts) + len(only_base)
    return 1 if fail_on_inconclusive and (unsure or only_new) else 0


def main(argv: Sequence[str]) -> int:
    p = OneLineParser(prog=PROG, description="compare two page-load CSVs, noise-aware")
    p.add_argument("baseline", type=Path)
    p.add_argument("candidate", type=Path)
    p.add_argument("--fail-on-inconclusive", action="store_true")
    args = p.parse_args(list(argv))
    return run(args.baseline, args.candidate, fail_on_inconclusive=args.fail_on_inconclusive)
