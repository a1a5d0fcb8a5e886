"""`python -m benchmarks conformance-report`: which spec cases nginx and Node pass, which they do
differently, next to ours. A report, not a gate: exit 0 whatever the servers do.

It runs the conformance suite (tests/test_conformance_*.py, one test per case of
docs/keepalive-spec.md plus the TLS variants) in a pytest subprocess with KAB_TEST_SERVERS set
to the chosen servers, collects each test's outcome through tests/conformance_outcomes.py, and
prints a Markdown table (case x server) and, for every case a foreign server does differently,
the first line of what the test saw. Where our servers declare a deviation (their DEVIATIONS) the
cell says so. nginx and Node format `Keep-Alive` their own way; that is listed once per server
and does not fail the cases it appears in. Takes about 2-3 minutes for all five servers (nginx's
access log is complete only after its 5 s lingering close, so cases that read it wait).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, OneLineParser, UsageError, write_atomic
from benchmarks.harness.config import parse_values
from benchmarks.matrix import by_column
from servers.external import missing_reason
from servers.options import EXTERNAL_SERVERS, REFERENCE_SERVERS

PROG = "python -m benchmarks conformance-report"
DEFAULT_SERVERS = (*REFERENCE_SERVERS, *EXTERNAL_SERVERS)
FAMILIES = ("KA", "MAX", "IDLE", "PIPE", "BODY", "ERR", "ROB", "SLOT")
MESSAGE_CHARS = 160
LEGEND = (
    "pass: as the spec says; pass*: the same, but with another Keep-Alive header (below); "
    "deviation: one the server declares (its DEVIATIONS, a strict xfail); **differs**: the "
    "test failed, [subcases] when only some did; error: the server did not start."
)
# tests/test_conformance_<part>.py: one test per spec case, plus the TLS variants.
CONFORMANCE_PARTS = ("persistence", "timeouts", "pipelining", "errors", "tls", "slots")


@dataclass(frozen=True)
class Outcome:
    """One conformance test of one server (tests/conformance_outcomes.py's record)."""

    server: str
    case: str
    subcase: str
    tls: bool
    outcome: str  # passed, failed, xfailed, error
    message: str
    header: str
    test: str = ""  # the test function: a TLS row can have two (IDLE-04 with and without handshake)

    @classmethod
    def of(cls, record: dict[str, Any]) -> Outcome:
        return cls(**{name: record[name] for name in cls.__dataclass_fields__ if name in record})

    @property
    def row(self) -> str:
        return f"{self.case} (TLS)" if self.tls else self.case


def row_order(row: str) -> tuple[int, int, bool]:
    """Spec order: KA, MAX, IDLE, PIPE, BODY, ERR, ROB, SLOT; a TLS variant after its plain case."""
    case = row.split()[0]
    family, _, number = case.partition("-")
    rank = FAMILIES.index(family) if family in FAMILIES else len(FAMILIES)
    return rank, int(number) if number.isdigit() else 0, row.endswith("(TLS)")


def cell(outcomes: list[Outcome]) -> str:
    """One table cell: pass, pass* (Keep-Alive differs), deviation, differs, error."""
    failed = [o for o in outcomes if o.outcome == "failed"]
    errors = [o for o in outcomes if o.outcome == "error"]
    declared = [o for o in outcomes if o.outcome == "xfailed"]
    if errors:
        return "error"
    if failed:
        return "**differs**" + _subcases(failed, outcomes)
    if declared:
        return "deviation" + _subcases(declared, outcomes)
    return "pass*" if any(o.header for o in outcomes) else "pass"


def _subcases(some: list[Outcome], every: list[Outcome]) -> str:
    if len(some) == len(every) or not all(o.subcase for o in some):
        return ""
    return " [" + ", ".join(o.subcase for o in some) + "]"


def render(outcomes: list[Outcome], servers: list[str]) -> str:
    """The Markdown table, then the notes on every case a foreign server does differently."""
    grid: dict[str, dict[str, list[Outcome]]] = defaultdict(lambda: defaultdict(list))
    for o in outcomes:
        grid[o.row][o.server].append(o)
    rows = sorted(grid, key=row_order)
    lines = ["| case | " + " | ".join(servers) + " |", "| --- |" + " --- |" * len(servers)]
    for row in rows:
        cells = [cell(grid[row][s]) if grid[row][s] else "-" for s in servers]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(_totals(grid, rows, servers))
    lines.append("")
    lines.append(LEGEND)
    lines += _notes(outcomes, servers)
    return "\n".join(lines)


def _totals(grid: dict[str, dict[str, list[Outcome]]], rows: list[str], servers: list[str]) -> str:
    parts = []
    for s in servers:
        ran = [r for r in rows if grid[r][s]]
        passed = [r for r in ran if cell(grid[r][s]).startswith("pass")]
        parts.append(f"{s} {len(passed)}/{len(ran)}")
    return "Rows passed as the spec says: " + ", ".join(parts) + "."


def _notes(outcomes: list[Outcome], servers: list[str]) -> list[str]:
    lines = []
    foreign = [s for s in servers if s in {n.value for n in EXTERNAL_SERVERS}]
    for server in foreign:
        mine = sorted(
            (o for o in outcomes if o.server == server),
            key=lambda o: (row_order(o.row), o.subcase),
        )
        sent = dict.fromkeys(v for o in mine if o.header for v in o.header.split("; "))
        if sent:
            shown = ", ".join(f"`{v}`" for v in sorted(sent))
            lines += ["", f"pass* on {server}: the case passed, but the Keep-Alive header was not "
                      f"the spec's `timeout=T, max=R` (R counting down); it sent {shown} "
                      "(suite: T = 1 s, N = 3)."]  # fmt: skip
        different = [o for o in mine if o.outcome in ("failed", "error")]
        if different:
            lines += ["", f"What {server} does differently (first line the test saw):", ""]
        tests_of_row: dict[str, set[str]] = defaultdict(set)
        for o in mine:
            tests_of_row[o.row].add(o.test)
        for o in different:
            label = o.row + (f" [{o.subcase}]" if o.subcase else "")
            if len(tests_of_row[o.row]) > 1:
                label += f" ({o.test})"
            message = o.message.replace("|", "\\|")[:MESSAGE_CHARS]
            lines.append(f"- {label}: {message}")
    return lines


def run_suite(servers: list[str], workers: int, out: Path) -> int:
    """pytest over the conformance modules with the outcomes plugin; its exit status."""
    env = {
        **os.environ,
        "KAB_TEST_SERVERS": ",".join(servers),
        "KAB_CONFORMANCE_OUTCOMES": str(out),
    }
    files = [f"tests/test_conformance_{part}.py" for part in CONFORMANCE_PARTS]
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "tests.conformance_outcomes",
            "-p", "no:cacheprovider", "--tb=no", "--no-header", "-rN", *files]  # fmt: skip
    if workers > 0:
        argv += ["-n", str(workers), "--dist", "loadfile"]
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
    summary = [line for line in done.stdout.splitlines() if line.strip()]
    if summary:
        sys.stderr.write(f"pytest: {summary[-1]}\n")
    return done.returncode


def build_parser() -> OneLineParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default=",".join(DEFAULT_SERVERS),
                   help="comma-separated (default: %(default)s)")  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (0: in-process)")
    p.add_argument("--output", type=Path, help="also write the Markdown to this file")
    p.add_argument("--json", type=Path, help="also write every test's outcome as JSON")
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        chosen = parse_values(args.servers, by_column("server"))
    except UsageError as exc:
        parser.error(str(exc))
    if args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")
    servers = []
    for name in chosen:
        why = missing_reason(name)
        if why is not None:
            sys.stderr.write(f"skipping {name}: {why}\n")
        else:
            servers.append(name.value)
    if not servers:
        sys.stderr.write("no server left to test\n")
        return 0
    with tempfile.TemporaryDirectory(prefix="keepalive-bench-conformance-") as tmp:
        out = Path(tmp) / "outcomes.json"
        status = run_suite(servers, args.workers, out)
        if not out.is_file():
            sys.stderr.write(f"{PROG}: error: pytest wrote no outcomes (exit status {status})\n")
            return 1
        records = json.loads(out.read_text())
    text = render([Outcome.of(r) for r in records], servers)
    print(text)
    if args.output is not None:
        write_atomic(args.output, text + "\n")
    if args.json is not None:
        write_atomic(args.json, json.dumps(records, indent=1) + "\n")
    return 0
