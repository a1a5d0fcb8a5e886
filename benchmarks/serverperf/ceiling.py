"""`python -m benchmarks ceiling`: how close the fastest pyperf client comes to wrk.

The issue's closing figure: against the uvloop server, pooled, 50 connections, the server pinned
to one core and the load generator to the other (the pinning of `make bench`), the req/s of
pyperf-concurrent-raw over wrk's; the target is 0.9 or more. wrk (C, epoll) is the reference
for "the server sets the ceiling", so the ratio says how much of the server a Python client can
show. One server process serves every round, keep-alive 5 s and no request limit by default
(serverperf's policy, so its wrk figures compare). Rounds interleave the two clients and
alternate which goes first (wrk-raw, raw-wrk, ...), so slow drift of the machine hits both
alike; the headline is the ratio of the medians, each round's ratio shows the spread.

    python -m benchmarks ceiling --rounds 3 --duration 5

Prints a table and the ratio, writes results/<host_id>/ceiling-<UTC time>-<commit>.json
atomically. Exit status: 0 every run measured, 1 some run failed, 2 bad input (no wrk, fewer
than two cores, an unwritable --results-dir), 130 on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.analysis.rounds import round_order
from benchmarks.clients.contract import (
    MAX_CONCURRENCY,
    ClientConfig,
    ClientKind,
    Mode,
    check_writable,
    write_atomic,
)
from benchmarks.harness.fingerprint import Fingerprint, collect
from benchmarks.harness.procs import (
    Cores,
    choose_cores,
    deferred_signals,
    pinned_self,
    read_result,
    run_client,
    signals_as_interrupt,
)
from benchmarks.records.layout import utc_stamp
from benchmarks.serverperf.command import progress
from benchmarks.serverperf.wrk import WrkError, find_wrk, run_wrk, wrk_command
from servers.launch import ServerProcess, ServerStartError
from servers.options import OneLineParser, ServerName, ServerOptions

PROG = "python -m benchmarks ceiling"
TARGET_RATIO = 0.9
JSON_SCHEMA = "keepalive-bench/ceiling/1"
RAW = ClientKind.PYPERF_CONCURRENT_RAW
CLIENTS = ("wrk", RAW.value)  # the order of odd rounds; even rounds reverse it


@dataclass(frozen=True)
class Config:
    rounds: int
    duration_s: int  # wrk's -d takes whole seconds
    warmup_s: float  # the raw client's warm-up; wrk gets one unrecorded run of this length first
    connections: int
    keepalive_max: int  # 0 = unlimited
    results_dir: Path


@dataclass(frozen=True)
class Round:
    """One wrk run and one raw-client run, back to back; an error instead of a figure."""

    index: int
    wrk_rps: float | None
    raw_rps: float | None
    errors: str  # failed requests or runs, empty when none

    @property
    def first(self) -> str:
        """The client that ran first in this round: "wrk" or RAW's name."""
        return round_order(CLIENTS, self.index)[0]

    @property
    def ratio(self) -> float | None:
        return self.raw_rps / self.wrk_rps if self.raw_rps and self.wrk_rps else None


def parse_config(argv: list[str]) -> Config:
    """argv -> Config; bad input exits 2 with one line."""
    p = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--duration", type=int, default=5, help="whole seconds per run (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds (default 1)")
    p.add_argument("--connections", type=int, default=50, help="connections (default 50)")
    p.add_argument("--keepalive-max", type=int, default=0, help="0 = unlimited (default)")
    p.add_argument("--results-dir", type=Path, default=Path("results"), help="default: results/")
    ns = p.parse_args(argv)
    if ns.rounds < 1:
        p.error(f"--rounds must be >= 1, got {ns.rounds}")
    if not 1 <= ns.duration <= 600:
        p.error(f"--duration must be between 1 and 600 seconds, got {ns.duration}")
    if not (math.isfinite(ns.warmup) and 0 <= ns.warmup <= 60):
        p.error(f"--warmup must be in [0, 60] seconds, got {ns.warmup:g}")
    if not 1 <= ns.connections <= MAX_CONCURRENCY:
        p.error(f"--connections must be between 1 and {MAX_CONCURRENCY}, got {ns.connections}")
    if ns.keepalive_max < 0:
        p.error(f"--keepalive-max must be >= 0, got {ns.keepalive_max}")
    return Config(ns.rounds, ns.duration, ns.warmup, ns.connections, ns.keepalive_max,
                  ns.results_dir)  # fmt: skip


def preflight(config: Config, fingerprint: Fingerprint) -> tuple[Cores, Path] | str:
    """(cores, JSON path), or the one-line reason the comparison cannot run here."""
    if find_wrk() is None:
        return "wrk not found; install it with `apt-get install wrk`"
    cores = choose_cores()
    if not cores.pinned:
        return "needs two cores: the server on one, the load generator on the other"
    folder = config.results_dir / fingerprint.host_id
    try:
        folder.mkdir(parents=True, exist_ok=True)
        check_writable(folder)
    except OSError as exc:
        return f"--results-dir {config.results_dir}: {exc.strerror or exc}"
    return cores, folder / f"ceiling-{utc_stamp()}-{fingerprint.git_commit}.json"


def run_wrk_once(url: str, config: Config, core: int, duration_s: int) -> tuple[float, str]:
    """(req/s, errors) of one wrk run pinned to `core`."""
    command = wrk_command(
        url + "/", connections=config.connections, duration_s=duration_s, cpu=core
    )
    result = run_wrk(command, duration_s)
    return result.requests_per_s, (f"wrk {result.errors} errors" if result.errors else "")


def run_raw_once(url: str, config: Config, core: int, scratch: Path, n: int) -> tuple[float, str]:
    """(req/s, errors) of one pyperf-concurrent-raw run pinned to `core`; RuntimeError if it
    failed. Its process group is stopped whatever happens."""
    output = scratch / f"raw-{n}.json"
    command = ClientConfig(
        kind=RAW, url=url, mode=Mode.POOLED, concurrency=config.connections,
        duration_s=config.duration_s, output=output, warmup_s=config.warmup_s,
    ).command()  # fmt: skip
    log_path = scratch / f"raw-{n}.log"
    with log_path.open("wb") as log:
        timeout_s = 60.0 + 4 * (config.duration_s + config.warmup_s)
        status = run_client(command, core=core, log=log, timeout_s=timeout_s)
    result = read_result(output, log_path)
    if isinstance(result, str):
        raise RuntimeError(f"{RAW} failed (status {status}): {result}")
    return result.throughput_rps, (f"{RAW} {result.errors} errors" if result.errors else "")


def measure_round(url: str, config: Config, cores: Cores, scratch: Path, n: int) -> Round:
    """wrk and the raw client one after the other, the order alternating between rounds."""
    figures: dict[str, float | None] = {}
    errors: list[str] = []
    for name in round_order(CLIENTS, n):
        progress(f"round {n}/{config.rounds}: {name} {config.duration_s:g} s ...")
        try:
            if name == "wrk":
                rps, err = run_wrk_once(url, config, cores.client, config.duration_s)
            else:
                rps, err = run_raw_once(url, config, cores.client, scratch, n)
        except (WrkError, RuntimeError, OSError) as exc:
            rps, err = None, " ".join(str(exc).split())
        figures[name] = rps
        errors += [err] if err else []
    return Round(n, figures["wrk"], figures[RAW.value], "; ".join(errors))


def medians(rounds: list[Round]) -> tuple[float | None, float | None, float | None]:
    """Median req/s of wrk and of the raw client over the rounds both measured, and their
    ratio; Nones when no round has both."""
    both = [r for r in rounds if r.ratio is not None]
    if not both:
        return None, None, None
    wrk = statistics.median(r.wrk_rps or 0.0 for r in both)
    raw = statistics.median(r.raw_rps or 0.0 for r in both)
    return wrk, raw, raw / wrk


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_report(config: Config, rounds: list[Round]) -> str:
    """One line per round, then the medians and the verdict against the target."""
    raw_head = f"{RAW} req/s"
    lines = [f"{'round':<6} {'first':<22} {'wrk req/s':>10} {raw_head:>28} {'ratio':>6}"]
    for r in rounds:
        lines.append(
            f"{r.index:<6} {r.first:<22} {_fmt(r.wrk_rps, ',.0f'):>10} "
            f"{_fmt(r.raw_rps, ',.0f'):>28} {_fmt(r.ratio, '.2f'):>6}"
            + (f"  ({r.errors})" if r.errors else "")
        )
    wrk, raw, ratio = medians(rounds)
    lines.append(
        f"{'median':<29} {_fmt(wrk, ',.0f'):>10} {_fmt(raw, ',.0f'):>28} {_fmt(ratio, '.2f'):>6}"
    )
    verdict = "no figure" if ratio is None else ("met" if ratio >= TARGET_RATIO else "not met")
    lines.append(
        f"{RAW} / wrk, uvloop server, pooled, {config.connections} connections, "
        f"{len(rounds)} round(s) of {config.duration_s:g} s: target >= {TARGET_RATIO:g} {verdict}"
    )
    return "\n".join(lines)


def to_json(config: Config, fp: Fingerprint, cores: Cores, rounds: list[Round]) -> str:
    wrk, raw, ratio = medians(rounds)
    payload: dict[str, Any] = {
        "schema": JSON_SCHEMA,
        "config": {**asdict(config), "results_dir": str(config.results_dir),
                   "server": "uvloop", "mode": "pooled", "keepalive_timeout_s": 5.0},
        "fingerprint": asdict(fp),
        "cores": {"server": cores.server, "client": cores.client},
        "rounds": [{"index": r.index, "first": r.first, **asdict(r), "ratio": r.ratio}
                   for r in rounds],
        "median": {"wrk_rps": wrk, "raw_rps": raw, "ratio": ratio},
        "target_ratio": TARGET_RATIO,
    }  # fmt: skip
    return json.dumps(payload, indent=1) + "\n"


def measure(config: Config, cores: Cores) -> list[Round]:
    """Start the server pinned to its core, warm it with wrk, run the rounds, stop it."""
    options = ServerOptions(
        name=ServerName.UVLOOP, keepalive_timeout_s=5.0, keepalive_max=config.keepalive_max
    )
    with tempfile.TemporaryDirectory(prefix="kab-ceiling-") as tmp:
        scratch = Path(tmp)
        with (scratch / "server.log").open("wb") as slog:
            server = ServerProcess(options, stderr=slog, cpu=cores.server)
            try:
                url = server.start().url
                if config.warmup_s > 0:
                    run_wrk_once(url, config, cores.client, max(1, math.ceil(config.warmup_s)))
                return [measure_round(url, config, cores, scratch, n)
                        for n in range(1, config.rounds + 1)]  # fmt: skip
            finally:
                with deferred_signals():
                    server.stop()


def main(argv: list[str] | None = None) -> int:
    config = parse_config(sys.argv[1:] if argv is None else argv)
    fingerprint = collect()
    prepared = preflight(config, fingerprint)
    if isinstance(prepared, str):
        sys.stderr.write(f"{PROG}: error: {prepared}\n")
        return 2
    cores, json_path = prepared
    try:
        with signals_as_interrupt(), pinned_self(cores.client):
            rounds = measure(config, cores)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted; every process it started was stopped\n")
        return 130
    except (ServerStartError, WrkError, OSError) as exc:
        sys.stderr.write(f"{PROG}: error: {' '.join(str(exc).split())}\n")
        return 1
    print(format_report(config, rounds))
    try:
        write_atomic(json_path, to_json(config, fingerprint, cores, rounds))
    except OSError as exc:
        sys.stderr.write(f"{PROG}: error: cannot write {json_path}: {exc.strerror or exc}\n")
        return 1
    print(json_path)
    return 0 if all(r.ratio is not None and not r.errors for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
