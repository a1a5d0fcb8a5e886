"""Run fuzz cases against the reference servers and classify what they did.

Each server is a subprocess started through `servers.launch.ServerProcess` (port 0, READY
line), with its stderr in a file so that a crash can show its last lines. Every case goes to
every server, one after the other, each on a fresh connection. Four kinds of finding:

- crash: the server process died (it is restarted, and the run goes on);
- hang: the connection neither ended nor answered everything by the deadline, although the
  client had half-closed (tried a second time with twice the deadline before it counts);
- unrequested 500: a 500 that the input did not ask for with `/status/500`;
- disagreement: the servers' sequences of statuses differ. One matched by a documented deviation
  (`benchmarks.fuzz.deviations`) is counted as explained, not as a finding.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from benchmarks.fuzz.deviations import explain, known_hang
from benchmarks.fuzz.exchange import OPEN, REFUSED, Outcome, exchange
from benchmarks.fuzz.mutator import Case
from servers.launch import ServerProcess
from servers.options import ServerName, ServerOptions

CRASH, HANG, FIVE_HUNDRED, DISAGREEMENT = "crash", "hang", "unrequested-500", "disagreement"
KINDS = (CRASH, HANG, FIVE_HUNDRED, DISAGREEMENT)


@dataclass(frozen=True)
class Finding:
    kind: str
    case: Case
    servers: tuple[str, ...]  # the servers concerned (all of them for a disagreement)
    answers: dict[str, Outcome]
    detail: str = ""

    def signature(self) -> str:
        """Groups findings of one kind that look alike: for a disagreement, who said what."""
        if self.kind != DISAGREEMENT:
            return f"{self.kind} {','.join(self.servers)}"
        groups: dict[tuple[int, ...], list[str]] = {}
        for name, outcome in self.answers.items():
            groups.setdefault(outcome.statuses, []).append(name)
        return " | ".join(
            f"{','.join(names)}={','.join(map(str, s)) or '-'}" for s, names in groups.items()
        )


@dataclass
class ServerStats:
    cases: int = 0
    busy_s: float = 0.0
    restarts: int = 0
    slow: int = 0  # open at the deadline once, closed on the retry: not counted as a hang
    known_hangs: int = 0


@dataclass
class Results:
    servers: tuple[str, ...]
    cases: int = 0
    elapsed_s: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    explained: Counter[str] = field(default_factory=Counter)  # deviation name -> cases
    explained_examples: dict[str, Case] = field(default_factory=dict)
    stats: dict[str, ServerStats] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(1 for f in self.findings if f.kind == kind)


class FuzzServer:
    """One reference server under fuzz: restarted after a crash, stderr kept in `log_path`."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.stderr"
        self._log: IO[bytes] | None = None
        self.process: ServerProcess | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.process = ServerProcess(ServerOptions(name=ServerName(self.name)), stderr=self._log)
        self.process.start()

    @property
    def address(self) -> tuple[str, int]:
        assert self.process is not None and self.process.ready is not None
        return self.process.ready.host, self.process.ready.port

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def exit_status(self) -> int | None:
        return self.process.proc.returncode if self.process and self.process.proc else None

    def stderr_tail(self, lines: int = 8) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def running(names: tuple[str, ...]) -> Iterator[list[FuzzServer]]:
    """Start every server; stop all of them on success, error and Ctrl-C."""
    with tempfile.TemporaryDirectory(prefix="keepalive-fuzz-") as tmp, contextlib.ExitStack() as st:
        servers = []
        for name in names:
            server = FuzzServer(name, Path(tmp))
            st.callback(server.stop)
            server.start()
            servers.append(server)
        yield servers


def _is_hang(outcome: Outcome) -> bool:
    return outcome.end in (OPEN, REFUSED)


def run_case(case: Case, servers: list[FuzzServer], deadline_s: float, results: Results) -> None:
    """Send one case to every server and record what it found."""
    answers: dict[str, Outcome] = {}
    for server in servers:
        stats = results.stats.setdefault(server.name, ServerStats())
        outcome = exchange(*server.address, case, deadline_s)
        known = known_hang(server.name, case.data)
        if _is_hang(outcome) and server.alive() and known is None:
            retry = exchange(*server.address, case, 2 * deadline_s)
            if not _is_hang(retry):
                stats.slow += 1
            outcome = retry
        stats.cases += 1
        stats.busy_s += outcome.elapsed_s
        answers[server.name] = outcome
        if not server.alive():
            detail = f"exit status {server.exit_status()}; stderr:\n{server.stderr_tail()}"
            results.findings.append(Finding(CRASH, case, (server.name,), {}, detail))
            server.restart()
            stats.restarts += 1
            del answers[server.name]
        elif _is_hang(outcome):
            if known is not None:
                stats.known_hangs += 1
                results.explained[known] += 1
                results.explained_examples.setdefault(known, case)
            else:
                detail = f"{outcome.end} after {outcome.elapsed_s:.1f} s"
                results.findings.append(Finding(HANG, case, (server.name,), {server.name: outcome},
                                                detail))  # fmt: skip
            del answers[server.name]
    for name, outcome in answers.items():
        if 500 in outcome.statuses and b"/status/500" not in case.data:
            results.findings.append(Finding(FIVE_HUNDRED, case, (name,), {name: outcome}))
    _compare(case, answers, results)
    results.cases += 1


def _compare(case: Case, answers: dict[str, Outcome], results: Results) -> None:
    statuses = {name: outcome.statuses for name, outcome in answers.items()}
    if len(set(statuses.values())) <= 1:
        return
    names = explain(case.data, statuses)
    if names is None:
        results.findings.append(Finding(DISAGREEMENT, case, tuple(answers), dict(answers)))
        return
    for name in names:
        results.explained[name] += 1
        results.explained_examples.setdefault(name, case)


def fuzz(
    cases: Iterator[Case],
    names: tuple[str, ...],
    deadline_s: float,
    progress: Callable[[Results], None] = lambda results: None,
    progress_every_s: float = 5.0,
) -> Results:
    """Run `cases` (a finite iterator; it may stop on a clock) against the servers `names`."""
    results = Results(names)
    start = time.monotonic()
    next_progress = start + progress_every_s
    with running(names) as servers:
        for case in cases:
            run_case(case, servers, deadline_s, results)
            results.elapsed_s = time.monotonic() - start
            if time.monotonic() >= next_progress:
                progress(results)
                next_progress += progress_every_s
    results.elapsed_s = time.monotonic() - start
    return results


def stderr_progress(results: Results) -> None:
    counts = ", ".join(f"{results.count(k)} {k}" for k in KINDS)
    explained = sum(results.explained.values())
    sys.stderr.write(
        f"fuzz: {results.cases} cases in {results.elapsed_s:.0f} s: {counts}; "
        f"{explained} explained by deviations\n"
    )
    sys.stderr.flush()
