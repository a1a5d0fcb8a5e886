"""What compare's rule is set to: its flags, validated once at the edge, and the noise floor.

`Rule` is the typed, frozen result of the command line. The practical thresholds can then be
raised, never lowered, by this machine's A/A noise floor: `python -m benchmarks noise` writes
`results/<host_id>/noise-<UTC time>.json`, and compare and bench-compare raise each metric's
threshold to the floor measured there, so a machine that moves 12% between identical runs is not
judged with a 10% threshold. A floor belongs to a machine: a file is used only when its host
(and, from format 1 on, its whole fingerprint) matches the rows being compared.

Noise file format versions: 0 = files written before `format_version` existed (host_id but no
fingerprint, no raw rows); 1 adds format_version, git_commit, fingerprint, bench (argv, rounds,
cells, window), rows_csv, replays and splits_with_regression. Both keep the floor in the same
place: `false_positives.<metric>.suggested_threshold` (the 95% quantile of |median ratio - 1|
over A/A splits of all rounds into halves, whole percent, at least 2%). A `scenario` key says
which runs the file measured: absent or `bench` (`make bench` rows, noise-<stamp>.json) or
`pageload` (page-load rows, noise-pageload-<stamp>.json, metrics page_load_p50_ms and
page_load_p90_ms); a lookup uses only the files of its own scenario.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, UsageError
from benchmarks.records.keys import FINGERPRINT_FIELDS, METRICS, PAGE_METRICS, Metric, fingerprint
from benchmarks.records.schema import SchemaError

FORMAT_VERSION = 1  # of the noise JSON
BENCH = "bench"  # the noise file's `scenario` when it has none: `make bench` rows
DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class Rule:
    """Settings of the decision rule; thresholds are fractions keyed by metric column."""

    thresholds: dict[str, float] = field(
        default_factory=lambda: {m.column: m.default_threshold for m in METRICS}
    )
    alpha: float = DEFAULT_ALPHA
    ignore_fingerprint: tuple[str, ...] = ()


@dataclass(frozen=True)
class NoiseFloor:
    """Per-metric A/A noise floors (fractions) and the file they came from; empty: none used."""

    source: str = ""
    floors: dict[str, float] = field(default_factory=dict)
    note: str = ""  # how the file was chosen, or why none was
    # Floors measured apart per client (page-load files: `by_client`), where a file has them: a
    # browser's noise is not a Python client's, so each is judged against its own.
    by_client: dict[str, dict[str, float]] = field(default_factory=dict)

    def for_client(self, client: str) -> dict[str, float]:
        """The floors for `client`'s cells: its own when measured, else the file's."""
        return self.by_client.get(client, self.floors)


def add_noise_arguments(parser: argparse.ArgumentParser) -> None:
    """Which A/A noise floor raises the thresholds; compare and bench-compare share these."""
    parser.add_argument(
        "--noise",
        default="auto",
        metavar="FILE|auto|none",
        help="A/A noise file (python -m benchmarks noise) whose per-metric floor raises each "
        "threshold; auto (default): the newest RESULTS_DIR/<host_id>/noise-*.json for the "
        "CSVs' machine; none: the thresholds as given",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=REPO_ROOT / "results",
        help="where --noise auto looks (default results/)",
    )


def _fraction(text: str) -> float:
    """Accept 0.1 or 10%."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 <= value < 10:
        raise argparse.ArgumentTypeError(f"threshold out of range: {text}")
    return value


def add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    """The rule's flags, shared with bench-compare and noise so the three agree. A page-load
    metric shares the flag of its bench namesake (p50: `latency_p50_ms` and `page_load_p50_ms`)
    and has its own where it has none (p90)."""
    shared = {m.short: m for m in PAGE_METRICS}
    for m in (*METRICS, *(p for p in PAGE_METRICS if p.short not in {b.short for b in METRICS})):
        also = f" and {shared[m.short].column}" if m.short in shared and m in METRICS else ""
        parser.add_argument(
            f"--threshold-{m.short}",
            type=_fraction,
            default=m.default_threshold,
            metavar="FRAC",
            help=f"practical threshold for {m.column}{also} "
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


def rule_from_args(args: argparse.Namespace, metrics: Sequence[Metric] = METRICS) -> Rule:
    """The validated Rule from parsed flags, for `metrics` (the bench rows' by default, the
    page-load rows' with PAGE_METRICS); UsageError (one line) on a bad value."""
    ignore = tuple(f for f in args.ignore_fingerprint.split(",") if f)
    unknown = set(ignore) - set(FINGERPRINT_FIELDS)
    if unknown:
        raise UsageError(f"--ignore-fingerprint: unknown field(s) {', '.join(sorted(unknown))}")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {args.alpha:g}")
    return Rule(
        thresholds={m.column: getattr(args, f"threshold_{m.short}") for m in metrics},
        alpha=args.alpha,
        ignore_fingerprint=ignore,
    )


def read_noise_file(path: Path) -> dict[str, Any]:
    """A noise JSON of a known format version; SchemaError (one line) otherwise."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SchemaError(f"{path}: not a noise file (not UTF-8 JSON)") from None
    if not isinstance(data, dict) or not isinstance(data.get("false_positives"), dict):
        raise SchemaError(f"{path}: not a noise file (no false_positives)")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or not 0 <= version <= FORMAT_VERSION:
        raise SchemaError(f"{path}: unknown noise format_version {version!r}")
    return data


def scenario_of(data: dict[str, Any]) -> str:
    """Which runs a noise file measured (files before the page-load scenario: bench rows)."""
    return str(data.get("scenario", BENCH))


def floors_of(data: dict[str, Any], metrics: Sequence[Metric] = METRICS) -> dict[str, float]:
    """The measured floor per metric; metrics the file has no usable number for are left out."""
    out = {}
    for m in metrics:
        entry = data["false_positives"].get(m.column)
        value = entry.get("suggested_threshold") if isinstance(entry, dict) else None
        if isinstance(value, int | float) and math.isfinite(value) and 0 <= value < 10:
            out[m.column] = float(value)
    return out


def machine_mismatch(data: dict[str, Any], rows: Sequence[Any], ignore: Iterable[str]) -> str:
    """Why the file does not describe the machine of `rows` ("" when it does).

    Version 0 recorded only host_id, so only the host can be checked there.
    """
    skip = set(ignore)
    machines = {tuple(kv for kv in fingerprint(r) if kv[0] not in skip) for r in rows}
    if len(machines) != 1:
        return "the CSVs come from more than one machine"
    mine = dict(next(iter(machines)))
    recorded = data.get("fingerprint") or {"host_id": data.get("host_id")}
    differing = [k for k, v in recorded.items() if k in mine and str(v) != mine[k]]
    return f"{', '.join(differing)} differ" if differing else ""


def _display(path: Path) -> str:
    """The path relative to the working directory when it is below it: shorter to read."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _floor(path: Path, data: dict[str, Any], how: str, metrics: Sequence[Metric]) -> NoiseFloor:
    """A NoiseFloor from a file already read and matched."""
    version = data.get("format_version", 0)
    scope = "host matched; version 0 has no fingerprint" if version == 0 else "machine matched"
    note = f"{how}, format {version}, {data.get('rounds', '?')} rounds, {scope}"
    groups = data.get("by_client")
    if not isinstance(groups, dict):
        groups = {}
    by_client = {
        str(client): floors_of(sub, metrics)
        for client, sub in groups.items()
        if isinstance(sub, dict) and isinstance(sub.get("false_positives"), dict)
    }
    return NoiseFloor(_display(path), floors_of(data, metrics), note, by_client)


def newest_matching(
    results_dir: Path,
    rows: Sequence[Any],
    ignore: Iterable[str],
    metrics: Sequence[Metric] = METRICS,
    scenario: str = BENCH,
) -> NoiseFloor:
    """The newest noise-*.json of `scenario` under results_dir/<host_id>/ that fits `rows`."""
    hosts = sorted({r.host_id for r in rows})
    if len(hosts) != 1:
        return NoiseFloor(note="the CSVs come from more than one host")
    folder = results_dir / hosts[0]
    skipped = []
    for path in sorted(folder.glob("noise-*.json"), reverse=True):  # the stamp sorts by time
        try:
            data = read_noise_file(path)
        except SchemaError:
            skipped.append(f"{path.name} unreadable")
            continue
        if scenario_of(data) != scenario:
            continue  # another scenario's runs: not skipped for a reason worth saying
        why = machine_mismatch(data, rows, ignore)
        if not why:
            return _floor(path, data, "newest match", metrics)
        skipped.append(f"{path.name}: {why}")
    tail = f"; skipped {', '.join(skipped)}" if skipped else ""
    return NoiseFloor(note=f"no matching noise-*.json in {_display(folder)}{tail}")


def resolve_floor(
    choice: str,
    results_dir: Path,
    rows: Sequence[Any],
    ignore: Iterable[str],
    metrics: Sequence[Metric] = METRICS,
    scenario: str = BENCH,
) -> NoiseFloor:
    """`--noise auto|none|FILE`; an explicit file for another machine or another scenario is an
    error, not a guess."""
    if choice == "none":
        return NoiseFloor(note="--noise none")
    if choice == "auto":
        return newest_matching(results_dir, rows, ignore, metrics, scenario)
    path = Path(choice)
    data = read_noise_file(path)
    if scenario_of(data) != scenario:
        raise SchemaError(f"{path}: a noise file of {scenario_of(data)} runs, not {scenario} runs")
    why = machine_mismatch(data, rows, ignore)
    if why:
        raise SchemaError(f"{path}: noise file of another machine ({why})")
    return _floor(path, data, "--noise", metrics)


def with_noise_floor(thresholds: dict[str, float], floor: NoiseFloor) -> dict[str, float]:
    """Each threshold raised to max(configured, measured floor): a file never lowers one."""
    return {c: max(t, floor.floors.get(c, 0.0)) for c, t in thresholds.items()}


def thresholds_line(
    thresholds: dict[str, float], floor: NoiseFloor, metrics: Sequence[Metric] = METRICS
) -> str:
    """One line: which noise file was used (and why), and the thresholds in effect."""
    effective = with_noise_floor(thresholds, floor)
    parts = [
        f"{m.short} {effective[m.column] * 100:g}%"
        + (" (floor)" if effective[m.column] > thresholds[m.column] else "")
        for m in metrics
    ]
    note = f" ({floor.note})" if floor.note else ""
    line = f"noise: {floor.source or 'none'}{note}; thresholds: {', '.join(parts)}"
    for client, floors in sorted(floor.by_client.items()):
        own = thresholds_line(thresholds, NoiseFloor(floors=floors), metrics)
        line += f"; {client}: {own.partition('thresholds: ')[2]}"
    return line
