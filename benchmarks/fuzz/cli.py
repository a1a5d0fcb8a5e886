"""`python -m benchmarks fuzz`: mutate valid requests, send each to every reference server, and
report crashes, hangs, unrequested 500s and framing disagreements.

The same --seed always gives the same cases (case i does not depend on the cases before it), so
a finding is replayed with `--seed S --case I`. With --seconds S the run lasts about S seconds
per server (every case goes to every server, one after the other). Disagreements that a named
deviation in benchmarks/fuzz/deviations.py explains are listed as such, not as failures.

Exit status: 0 when nothing was found, 1 when a crash, hang, unrequested 500 or unexplained
disagreement was found (or a server failed to start), 2 for bad flags, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

from benchmarks.clients.contract import check_writable, write_atomic
from benchmarks.fuzz.corpus import SEEDS
from benchmarks.fuzz.deviations import DEVIATIONS
from benchmarks.fuzz.mutator import Case, make_case
from benchmarks.fuzz.runner import KINDS, Finding, Results, fuzz, stderr_progress
from servers.launch import ServerStartError
from servers.options import REFERENCE_SERVERS

PROG = "python -m benchmarks fuzz"
JSON_SCHEMA = "keepalive-bench/fuzz/1"
ALL_SERVERS = tuple(n.value for n in REFERENCE_SERVERS)
DEFAULT_SECONDS = 10.0
MAX_FINDINGS_IN_JSON = 500  # per kind: a systematic difference must not make a 100 MB file


class UsageError(ValueError):
    """Bad input; shown as one line, exit status 2."""


@dataclass(frozen=True)
class Config:
    seed: int
    count: int | None
    seconds: float | None
    case: int | None
    servers: tuple[str, ...]
    deadline_s: float
    json_path: Path | None

    def cases(self) -> Iterator[Case]:
        """The case stream: one case, the first `count`, or as many as the clock allows."""
        if self.case is not None:
            yield make_case(self.seed, self.case)
            return
        if self.count is not None:
            for index in range(self.count):
                yield make_case(self.seed, index)
            return
        assert self.seconds is not None
        stop = time.monotonic() + self.seconds * len(self.servers)
        for index in itertools.count():
            if time.monotonic() >= stop:
                return
            yield make_case(self.seed, index)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, metavar="S",
                        help=f"fuzz for about S seconds per server (default {DEFAULT_SECONDS:g} "
                        "when no --count or --case is given)")  # fmt: skip
    budget.add_argument("--count", type=int, metavar="N",
                        help="run the first N cases of the seed (the unmutated seeds "
                        f"first: {len(SEEDS)} of them)")  # fmt: skip
    budget.add_argument(
        "--case",
        type=int,
        metavar="I",
        help="replay case I of the seed alone and show every answer",
    )
    parser.add_argument("--seed", type=int, default=1, help="case stream (default %(default)d)")
    parser.add_argument("--servers", default=",".join(ALL_SERVERS), metavar="LIST",
                        help="comma-separated subset of: " + ", ".join(ALL_SERVERS) +
                        " (default: all)")  # fmt: skip
    parser.add_argument("--deadline", type=float, default=2.0, metavar="SECONDS",
                        help="time a server has to answer and close after the client's "
                        "half-close (default %(default)g; a hang is retried once with twice "
                        "that)")  # fmt: skip
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the results as JSON (atomically)"
    )
    return parser


def parse_servers(text: str) -> tuple[str, ...]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_SERVERS]
    if unknown or not names:
        raise UsageError(f"--servers: unknown {unknown or text!r}; choose from {ALL_SERVERS}")
    return tuple(n for n in ALL_SERVERS if n in names)


def parse_config(argv: Sequence[str]) -> Config:
    ns = build_parser().parse_args(list(argv))
    if ns.seconds is not None and not 0 < ns.seconds <= 86_400:
        raise UsageError(f"--seconds must be > 0 and at most 86400, got {ns.seconds:g}")
    if ns.count is not None and ns.count < 1:
        raise UsageError(f"--count must be >= 1, got {ns.count}")
    if ns.case is not None and ns.case < 0:
        raise UsageError(f"--case must be >= 0, got {ns.case}")
    if not 0 < ns.deadline <= 60:
        raise UsageError(f"--deadline must be > 0 and at most 60, got {ns.deadline:g}")
    if ns.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {ns.seed}")
    if ns.json is not None:
        check_json_path(ns.json)
    seconds = ns.seconds
    if seconds is None and ns.count is None and ns.case is None:
        seconds = DEFAULT_SECONDS
    return Config(ns.seed, ns.count, seconds, ns.case, parse_servers(ns.servers), ns.deadline,
                  ns.json)  # fmt: skip


def check_json_path(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"--json: {path} is a directory")
    parent = next((p for p in path.absolute().parents if p.exists()), Path("/"))
    try:
        check_writable(parent)
    except OSError as exc:
        raise UsageError(f"--json: cannot write in {parent}: {exc.strerror}") from None


def failed(results: Results) -> bool:
    return bool(results.findings)


def replay_command(case: Case, servers: Sequence[str]) -> str:
    return f"{PROG} --seed {case.seed} --case {case.index} --servers {','.join(servers)}"


def _describe(case: Case) -> str:
    how = ", ".join(case.mutations) or "unmutated"
    return f"case {case.case_id} ({case.origin}: {how})"


def _writes(case: Case) -> str:
    return " + ".join(repr(p) for p in case.parts)


def summary(config: Config, results: Results) -> str:
    """The human report: per-server figures, findings grouped by pattern with the shortest
    input of each group as its reproducer, then the deviations that explained cases."""
    lines = [
        f"fuzz: seed {config.seed}, {results.cases} cases x {len(results.servers)} servers "
        f"({', '.join(results.servers)}) in {results.elapsed_s:.1f} s",
        f"  {'server':<8} {'cases':>7} {'busy_s':>8} {'restarts':>8} {'slow':>5} "
        f"{'known hangs':>11}",
    ]
    for name in results.servers:
        s = results.stats.get(name)
        if s is not None:
            lines.append(f"  {name:<8} {s.cases:>7} {s.busy_s:>8.1f} {s.restarts:>8} "
                         f"{s.slow:>5} {s.known_hangs:>11}")  # fmt: skip
    counts = ", ".join(f"{results.count(k)} {k}" for k in KINDS)
    lines.append(f"findings: {counts}")
    groups: dict[str, list[Finding]] = {}
    for finding in results.findings:
        groups.setdefault(f"{finding.kind}: {finding.signature()}", []).append(finding)
    for label, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        example = min(members, key=lambda f: (len(f.case.data), f.case.index))
        lines.append(f"  {label}  [{len(members)} case(s)]")
        lines.append(f"    e.g. {_describe(example.case)}")
        lines.append(f"    writes: {_writes(example.case)}")
        if example.detail:
            lines += [f"    {line}" for line in example.detail.splitlines()]
        lines.append(f"    replay: {replay_command(example.case, results.servers)}")
    if results.explained:
        lines.append("explained by named deviations (benchmarks/fuzz/deviations.py):")
        references = {d.name: d.reference for d in DEVIATIONS}
        for name, n in results.explained.most_common():
            case = results.explained_examples[name]
            lines.append(f"  {name}: {n} case(s), e.g. {case.case_id}  -- {references[name]}")
    lines.append("verdict: " + ("FAIL" if failed(results) else "ok"))
    return "\n".join(lines)


def _finding_json(finding: Finding) -> dict[str, object]:
    case = finding.case
    return {
        "kind": finding.kind,
        "case": case.case_id,
        "origin": case.origin,
        "mutations": list(case.mutations),
        "writes": [p.decode("latin-1") for p in case.parts],
        "servers": list(finding.servers),
        "answers": {n: o.as_json() for n, o in finding.answers.items()},
        "detail": finding.detail,
        "signature": finding.signature(),
    }


def to_json(config: Config, results: Results) -> dict[str, object]:
    kept: dict[str, int] = {}
    findings = []
    for finding in results.findings:
        kept[finding.kind] = kept.get(finding.kind, 0) + 1
        if kept[finding.kind] <= MAX_FINDINGS_IN_JSON:
            findings.append(_finding_json(finding))
    return {
        "schema": JSON_SCHEMA,
        "note": "writes are latin-1 decoded bytes: encode them back with latin-1",
        "config": {
            "seed": config.seed,
            "count": config.count,
            "seconds": config.seconds,
            "case": config.case,
            "servers": list(config.servers),
            "deadline_s": config.deadline_s,
        },  # fmt: skip
        "cases": results.cases,
        "elapsed_s": round(results.elapsed_s, 2),
        "servers": {n: vars(s) for n, s in results.stats.items()},
        "counts": {k: results.count(k) for k in KINDS},
        "explained": dict(results.explained.most_common()),
        "findings": findings,
        "failed": failed(results),
    }


def _replay_report(results: Results, case: Case) -> str:
    """--case: every server's answer, whatever it was."""
    lines = [_describe(case), f"writes: {_writes(case)}"]
    lines += [f"  {f.kind} {', '.join(f.servers)}: "
              f"{ {n: o.as_json() for n, o in f.answers.items()} } {f.detail}"
              for f in results.findings]  # fmt: skip
    return "\n".join(lines)


def _interrupt_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str]) -> int:
    try:
        config = parse_config(argv)
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    if threading.current_thread() is threading.main_thread():
        _interrupt_on_sigterm()
    try:
        results = fuzz(config.cases(), config.servers, config.deadline_s, stderr_progress)
    except ServerStartError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted; every server it started was stopped\n")
        return 130
    print(summary(config, results))
    if config.case is not None:
        print(_replay_report(results, make_case(config.seed, config.case)))
    if config.json_path is not None:
        write_atomic(config.json_path, json.dumps(to_json(config, results), indent=1) + "\n")
    return 1 if failed(results) else 0
