"""`python -m benchmarks serverperf`: wrk against each server, next to nginx and bare apps.

Answers "is our server the bottleneck?" before any keep-alive figure is trusted: each reference
server is measured with wrk (a C client that outruns every server here) with keep-alive and with
`Connection: close`, next to nginx with one worker and to bare apps of the same libraries, all
with the same keep-alive policy. The uvloop server and nginx are also run recycling connections
(`recycle`: keep-alive with at most 100 requests each, restarted with that limit) when the
policy's own limit is unlimited. The server is pinned to core 0 and wrk to core 1, so the two
never compete for a core. Every process started is stopped on success, error and Ctrl-C.

With `--instructions`, each Python target is then counted under callgrind
(`benchmarks.serverperf.instructions`, a sequential client, the same policy; the uvloop server
at max 100 for its recycle row): an `instr/req` column, and every target's line (issues 2 and
14, `checks`) ends with the same ratio in instructions, which the machine's load cannot move.

wrk starts a request's clock once its connection is up, so close-mode latencies leave out the
handshake; its cost shows in req/s. The stdlib server's reused-connection latency is measured
alone (wrk -c1) because at 50 connections it is queueing, not the server, that sets p50.

Exit status: 0 when every target is PASS, SKIP or INFO and every row (and count) ran, 1
otherwise, 2 for bad input or a missing wrk (or valgrind with --instructions), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    OneLineParser,
    UsageError,
    check_output_file,
    choose_subset,
    print_error,
    sigterm_as_interrupt,
    write_atomic,
)
from benchmarks.serverperf import instructions
from benchmarks.serverperf.checks import (
    CLOSE,
    KEEP_ALIVE,
    RECYCLE,
    RECYCLE_MAX,
    SEQUENTIAL,
    Check,
    Counts,
    Row,
    evaluate,
    find,
)
from benchmarks.serverperf.targets import ALL_TARGETS, NGINX, TargetError, running
from benchmarks.serverperf.wrk import WrkError, find_wrk, run_wrk, wrk_command
from servers.launch import ServerStartError
from servers.policy import KeepAlivePolicy

PROG = "python -m benchmarks serverperf"
SERVER_CPU, CLIENT_CPU = 0, 1
SEQUENTIAL_TARGETS = ("stdlib", "bare-stdlib")  # wrk -c1: reused-connection latency
RECYCLE_TARGETS = ("nginx", "uvloop")  # a recycle row (keep-alive max RECYCLE_MAX) each
INSTRUCTION_REQUESTS = 1000  # counted requests per mode under callgrind
JSON_SCHEMA = "keepalive-bench/serverperf/2"


@dataclass(frozen=True)
class Config:
    duration_s: float
    connections: int
    targets: tuple[str, ...]
    keepalive: KeepAlivePolicy
    json_path: Path | None
    instructions: bool = False


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, metavar="SECONDS",
                        help="length of each wrk run (default %(default)g)")  # fmt: skip
    parser.add_argument("--connections", type=int, default=50, metavar="N",
                        help="wrk connections, throughput rows (default %(default)d)")  # fmt: skip
    parser.add_argument("--servers", nargs="+", default=None, metavar="NAME",
                        help=f"subset, comma- or space-separated, of: {', '.join(ALL_TARGETS)} "
                        "(default: all)")  # fmt: skip
    parser.add_argument("--keepalive-max", type=int, default=0, metavar="COUNT",
                        help="requests per connection for every target; 0 = unlimited "
                        "(default)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write rows and checks as JSON (atomically)")  # fmt: skip
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions per request of the Python targets "
                        "under callgrind (valgrind; a minute or more per target)")  # fmt: skip
    return parser


def parse_targets(values: Sequence[str] | None) -> tuple[str, ...]:
    """The chosen targets in run order, each once (all of them by default)."""
    return choose_subset(values, ALL_TARGETS, "--servers") if values else ALL_TARGETS


def parse_config(argv: Sequence[str]) -> Config:
    ns = build_parser().parse_args(list(argv))
    if not ns.duration > 0:
        raise UsageError(f"--duration must be > 0, got {ns.duration:g}")
    if ns.connections < 1:
        raise UsageError(f"--connections must be >= 1, got {ns.connections}")
    if ns.keepalive_max < 0:
        raise UsageError(f"--keepalive-max must be >= 0, got {ns.keepalive_max}")
    if ns.json is not None:
        check_output_file(ns.json, "--json")
    keepalive = KeepAlivePolicy(timeout_s=5.0, max_requests=ns.keepalive_max)
    targets = parse_targets(ns.servers)
    return Config(ns.duration, ns.connections, targets, keepalive, ns.json, ns.instructions)


def modes_for(target: str, connections: int) -> list[tuple[str, int]]:
    modes = [(KEEP_ALIVE, connections), (CLOSE, connections)]
    if target in SEQUENTIAL_TARGETS:
        modes.append((SEQUENTIAL, 1))
    return modes


def measure_target(target: str, config: Config) -> list[Row]:
    """The target's rows: its modes under the configured policy, then (uvloop and nginx, when
    that policy is unlimited) its recycle row, with the server restarted at RECYCLE_MAX."""
    rows = _measure_modes(target, config, config.keepalive, modes_for(target, config.connections))
    if target in RECYCLE_TARGETS and config.keepalive.max_requests == 0:
        recycle = KeepAlivePolicy(config.keepalive.timeout_s, RECYCLE_MAX)
        rows += _measure_modes(target, config, recycle, [(RECYCLE, config.connections)])
    return rows


def _measure_modes(
    target: str, config: Config, keepalive: KeepAlivePolicy, modes: list[tuple[str, int]]
) -> list[Row]:
    """Start the target once, run each mode, stop it; failures become error rows."""
    rows: list[Row] = []
    try:
        with running(target, keepalive, SERVER_CPU) as url:
            for mode, connections in modes:
                progress(f"{target} {mode} -c{connections} {config.duration_s:g}s ...")
                command = wrk_command(
                    url + "/", connections=connections, duration_s=config.duration_s,
                    close=mode == CLOSE, cpu=CLIENT_CPU,
                )  # fmt: skip
                try:
                    rows.append(Row(target, mode, connections, run_wrk(command, config.duration_s)))
                except WrkError as exc:
                    rows.append(Row(target, mode, connections, None, str(exc)))
    except (ServerStartError, TargetError, OSError, RuntimeError) as exc:
        done = {r.mode for r in rows}
        error = " ".join(str(exc).split()) or type(exc).__name__
        rows += [Row(target, m, c, None, error) for m, c in modes if m not in done]
    return rows


def count_instructions(config: Config) -> tuple[Counts, list[str]]:
    """Instructions per request of each selected Python target, both modes, and of the uvloop
    server at max RECYCLE_MAX (its recycle row); (counts, one-line errors)."""
    counts: Counts = {}
    errors: list[str] = []
    runs: list[tuple[str, int, str | None]] = [
        (t, config.keepalive.max_requests, None)
        for t in config.targets
        if t in instructions.TARGETS
    ]
    if "uvloop" in config.targets and config.keepalive.max_requests == 0:
        runs.append(("uvloop", RECYCLE_MAX, RECYCLE))
    for target, keepalive_max, as_mode in runs:
        modes = (KEEP_ALIVE,) if as_mode else instructions.MODES
        icfg = instructions.Config(
            (target,), modes, INSTRUCTION_REQUESTS, warmup=200, settle_s=5.5,
            keepalive_max=keepalive_max,
        )  # fmt: skip
        try:
            measured = instructions.measure(target, icfg)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            errors.append(f"{target} instructions: error: {' '.join(str(exc).split())}")
            continue
        for mode, value in measured.items():
            counts[target, as_mode or mode] = value
    return counts, errors


def progress(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _ms(us: float) -> str:
    return f"{us / 1000:.3f}"


def _ratio(row: Row, rows: Sequence[Row], reference: str) -> str:
    ref = find(rows, reference, row.mode)
    if row.result is None or ref is None or row.target == reference or not ref.requests_per_s:
        return ""
    return f"{row.result.requests_per_s / ref.requests_per_s:.0%}"


def _cells(row: Row, rows: Sequence[Row], counts: Counts) -> tuple[str, ...]:
    r = row.result
    assert r is not None
    bare = "" if row.target.startswith("bare-") else _ratio(row, rows, f"bare-{row.target}")
    nginx = "" if row.mode == SEQUENTIAL else _ratio(row, rows, NGINX)
    if row.mode == RECYCLE:  # beside its own unlimited row, not another server's
        bare, nginx = "", ""
    count = counts.get((row.target, row.mode))
    return (
        row.target, row.mode, str(row.connections), f"{r.requests_per_s:,.0f}",
        _ms(r.p50_us), _ms(r.p99_us), str(r.errors), bare, nginx,
        "" if count is None else f"{count:,.0f}",
    )  # fmt: skip


TABLE_HEADER = ("target", "mode", "conns", "req/s", "p50 ms", "p99 ms", "errors", "vs bare",
                "vs nginx", "instr/req")  # fmt: skip
MODE_ORDER = (KEEP_ALIVE, CLOSE, RECYCLE, SEQUENTIAL)


def format_table(rows: Sequence[Row], counts: Counts | None = None) -> str:
    """One line per row, grouped by mode; `vs bare`/`vs nginx` are req/s ratios, same mode;
    `instr/req` is callgrind's count (`--instructions`), blank where not counted.

    Rows that failed are listed after the table with their one-line error.
    """
    counts = counts or {}
    ordered = sorted(rows, key=lambda r: MODE_ORDER.index(r.mode))
    lines = [TABLE_HEADER] + [_cells(r, rows, counts) for r in ordered if r.result is not None]
    widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE_HEADER))]
    out = []
    for line in lines:
        left = [f"{c:<{w}}" for c, w in zip(line[:2], widths[:2], strict=True)]
        right = [f"{c:>{w}}" for c, w in zip(line[2:], widths[2:], strict=True)]
        out.append("  ".join(left + right).rstrip())
    out += [f"{r.target} {r.mode}: error: {r.error}" for r in ordered if r.result is None]
    return "\n".join(out)


def to_json(
    config: Config, rows: Sequence[Row], checks: Sequence[Check], counts: Counts | None = None
) -> str:
    payload = {
        "schema": JSON_SCHEMA,
        "config": {
            "duration_s": config.duration_s,
            "connections": config.connections,
            "targets": list(config.targets),
            "keepalive_timeout_s": config.keepalive.timeout_s,
            "keepalive_max": config.keepalive.max_requests,
            "recycle_max": RECYCLE_MAX,
            "server_cpu": SERVER_CPU,
            "client_cpu": CLIENT_CPU,
            "wrk": "wrk -t1 --latency, Connection: close for the close rows",
        },
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "rows": [row.to_json() for row in rows],
        "instructions": [
            {"target": target, "mode": mode, "per_request": round(value)}
            for (target, mode), value in (counts or {}).items()
        ],
        "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in checks],
    }
    return json.dumps(payload, indent=2) + "\n"


def preflight() -> None:
    if find_wrk() is None:
        raise UsageError("wrk not found; install it with `apt-get install wrk`")
    if not {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0):
        raise UsageError(f"needs CPU cores {SERVER_CPU} and {CLIENT_CPU} (server and wrk)")


def preflight_instructions() -> None:
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise UsageError(f"--instructions: {tool} not found; `apt-get install valgrind`")


def run(config: Config) -> int:
    rows: list[Row] = []
    for target in config.targets:
        rows += measure_target(target, config)
    counts: Counts = {}
    count_errors: list[str] = []
    if config.instructions:  # after every wrk row: callgrind's counts do not depend on load
        counts, count_errors = count_instructions(config)
    checks = evaluate(rows, counts)
    print(format_table(rows, counts))
    for line in count_errors:
        print(line)
    print()
    for check in checks:
        print(check.line())
    if config.json_path is not None:
        try:
            write_atomic(config.json_path, to_json(config, rows, checks, counts))
        except OSError as exc:
            sys.stderr.write(f"{PROG}: error: cannot write {config.json_path}: {exc.strerror}\n")
            return 1
        print(f"wrote {config.json_path}")
    failed = any(c.status == "FAIL" for c in checks) or any(r.result is None for r in rows)
    failed = failed or bool(count_errors)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    try:
        config = parse_config(argv)
        preflight()
        if config.instructions:
            preflight_instructions()
    except UsageError as exc:
        return print_error(PROG, exc)
    sigterm_as_interrupt()
    try:
        return run(config)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted; every process it started was stopped\n")
        return 130
