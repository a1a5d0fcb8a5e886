"""What makes two result rows "the same cell" and "the same machine", in one place.

compare, bench-compare, noise and report all group rows by cell and check fingerprints; the key
is `benchmarks.matrix.CellKey`, the matrix's dimensions, so a new dimension is in it at once.
`duration_s` is not part of the key, so that a window that came out a little longer (Locust's
exit, pyperf's calibration) still meets its twin; compare calls cells whose median windows
differ by more than 25% inconclusive instead ("window differs"): a 1 s QUICK window warms up,
batches and samples CPU differently from a 5 s one, so their ratio is not a code change.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from benchmarks.matrix import CellKey
from benchmarks.records.schema import ResultRow

# The machine: a change in any of these makes absolute numbers incomparable. cpu_count is not in
# the list but belongs with cpu_model: a container can see fewer CPUs on the same host.
FINGERPRINT_FIELDS: tuple[str, ...] = (
    "host_id",
    "cpu_model",
    "cpu_count",
    "kernel",
    "python_version",
    "packages",
)


@dataclass(frozen=True)
class Metric:
    """A compared column and which direction is better."""

    column: str
    higher_is_better: bool
    default_threshold: float  # practical threshold as a fraction (0.10 = 10%)
    short: str  # name in tables and CLI flags


METRICS: tuple[Metric, ...] = (
    Metric("throughput_rps", True, 0.10, "throughput"),
    Metric("server_cpu_us_per_req", False, 0.10, "cpu"),
    Metric("latency_p50_ms", False, 0.10, "p50"),
    Metric("latency_p99_ms", False, 0.20, "p99"),
)
# The page-load scenario's rows (benchmarks.pageload): lower is better; p90 is a tail of a few
# loads, so it gets p99's threshold.
PAGE_METRICS: tuple[Metric, ...] = (
    Metric("page_load_p50_ms", False, 0.10, "p50"),
    Metric("page_load_p90_ms", False, 0.20, "p90"),
)


def cell_key(row: ResultRow) -> CellKey:
    return row.key


def fingerprint(row: ResultRow) -> tuple[tuple[str, str], ...]:
    return tuple((name, str(getattr(row, name))) for name in FINGERPRINT_FIELDS)


def group_by_cell(rows: Iterable[ResultRow]) -> dict[CellKey, list[ResultRow]]:
    """Rows per cell, in input order (insertion-ordered dict keeps the harness's cell order)."""
    groups: dict[CellKey, list[ResultRow]] = defaultdict(list)
    for row in rows:
        groups[cell_key(row)].append(row)
    return dict(groups)


def fingerprint_diff(
    base: Iterable[ResultRow], new: Iterable[ResultRow], ignore: Iterable[str] = ()
) -> list[str]:
    """Fingerprint fields whose values differ between (or within) the two sides.

    A field counts as differing when the union of values seen on both sides has more than one
    element, so a baseline that itself mixes two kernels is caught too.
    """
    skip = set(ignore)
    seen: dict[str, set[str]] = defaultdict(set)
    for row in (*base, *new):
        for name, value in fingerprint(row):
            if name not in skip:
                seen[name].add(value)
    return [name for name in FINGERPRINT_FIELDS if len(seen[name]) > 1]


def row_problem(row: ResultRow) -> str | None:
    """Why a row cannot support a verdict, or None when it can."""
    if row.status != "ok":
        return f"status {row.status}"
    if not row.valid:
        return "invalid (mode not achieved)"
    if row.client_bound:
        return "client-bound"
    return None
