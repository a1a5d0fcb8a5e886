"""`python -m benchmarks serverperf`: wrk against each server, next to nginx and bare apps.

Answers "is our server the bottleneck?" before any keep-alive figure is trusted: each reference
server is measured with wrk (a C client that outruns every server here) with keep-alive and with
`Connection: close`, next to nginx with one worker and to bare apps of the same libraries, all
with the same keep-alive policy. The server is pinned to core 0 and wrk to core 1, so the two
never compete for a core. Every process started is stopped on success, error and Ctrl-C.

wrk starts a request's clock once its connection is up, so close-mode latencies leave out the
handshake; its cost shows in req/s. The stdlib server's reused-connection latency is measured
alone (wrk -c1) because at 50 connections it is queueing, not the server, that sets p50.

Exit status: 0 when every target is PASS or SKIP and every row ran, 1 otherwise, 2 for bad input
or a missing wrk, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

from benchmarks.clients.contract import check_writable, write_atomic
from benchmarks.serverperf.checks import CLOSE, KEEP_ALIVE, SEQUENTIAL, Check, Row, evaluate, find
from benchmarks.serverperf.targets import ALL_TARGETS, NGINX, KeepAlive, TargetError, running
from benchmarks.serverperf.wrk import WrkError, find_wrk, run_wrk, wrk_command
from servers.launch import ServerStartError

PROG = "python -m benchmarks serverperf"
SERVER_CPU, CLIENT_CPU = 0, 1
SEQUENTIAL_TARGETS = ("stdlib", "bare-stdlib")  # wrk -c1: reused-connection latency
JSON_SCHEMA = "keepalive-bench/serverperf/1"


class UsageError(ValueError):
    """Bad input; shown as one line, exit status 2."""


@dataclass(frozen=True)
class Config:
    duration_s: float
    connections: int
    targets: tuple[str, ...]
    keepalive: KeepAlive
    json_path: Path | None


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
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
    return parser


def parse_targets(values: Sequence[str] | None) -> tuple[str, ...]:
    if not values:
        return ALL_TARGETS
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_TARGETS]
    if unknown or not names:
        raise UsageError(f"--servers: unknown {unknown or values!r}; choose from {ALL_TARGETS}")
    return tuple(t for t in ALL_TARGETS if t in names)  # run order, no duplicates


def parse_config(argv: Sequence[str]) -> Config:
    ns = build_parser().parse_args(list(argv))
    if not ns.duration > 0:
        raise UsageError(f"--duration must be > 0, got {ns.duration:g}")
    if ns.connections < 1:
        raise UsageError(f"--connections must be >= 1, got {ns.connections}")
    if ns.keepalive_max < 0:
        raise UsageError(f"--keepalive-max must be >= 0, got {ns.keepalive_max}")
    if ns.json is not None:
        check_json_path(ns.json)
    keepalive = KeepAlive(timeout_s=5.0, max_requests=ns.keepalive_max)
    return Config(ns.duration, ns.connections, parse_targets(ns.servers), keepalive, ns.json)


def check_json_path(path: Path) -> None:
    """Fail before a minute of measuring, not after it, when the JSON cannot be written: the
    nearest existing folder is probed, since write_atomic creates the missing ones."""
    if path.is_dir():
        raise UsageError(f"--json: {path} is a directory")
    parent = next((p for p in path.absolute().parents if p.exists()), Path("/"))
    try:
        check_writable(parent)
    except OSError as exc:
        raise UsageError(f"--json: cannot write in {parent}: {exc.strerror}") from None


def modes_for(target: str, connections: int) -> list[tuple[str, int]]:
    modes = [(KEEP_ALIVE, connections), (CLOSE, connections)]
    if target in SEQUENTIAL_TARGETS:
        modes.append((SEQUENTIAL, 1))
    return modes


def measure_target(target: str, config: Config) -> list[Row]:
    """Start the target once, run each of its modes, stop it; failures become error rows."""
    modes = modes_for(target, config.connections)
    rows: list[Row] = []
    try:
        with running(target, config.keepalive, SERVER_CPU) as url:
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


def _cells(row: Row, rows: Sequence[Row]) -> tuple[str, ...]:
    r = row.result
    assert r is not None
    bare = "" if row.target.startswith("bare-") else _ratio(row, rows, f"bare-{row.target}")
    nginx = "" if row.mode == SEQUENTIAL else _ratio(row, rows, NGINX)
    return (
        row.target, row.mode, str(row.connections), f"{r.requests_per_s:,.0f}",
        _ms(r.p50_us), _ms(r.p99_us), str(r.errors), bare, nginx,
    )  # fmt: skip


TABLE_HEADER = ("target", "mode", "conns", "req/s", "p50 ms", "p99 ms", "errors", "vs bare",
                "vs nginx")  # fmt: skip
MODE_ORDER = (KEEP_ALIVE, CLOSE, SEQUENTIAL)


def format_table(rows: Sequence[Row]) -> str:
    """One line per row, grouped by mode; `vs bare`/`vs nginx` are req/s ratios, same mode.

    Rows that failed are listed after the table with their one-line error.
    """
    ordered = sorted(rows, key=lambda r: MODE_ORDER.index(r.mode))
    lines = [TABLE_HEADER] + [_cells(r, rows) for r in ordered if r.result is not None]
    widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE_HEADER))]
    out = []
    for line in lines:
        left = [f"{c:<{w}}" for c, w in zip(line[:2], widths[:2], strict=True)]
        right = [f"{c:>{w}}" for c, w in zip(line[2:], widths[2:], strict=True)]
        out.append("  ".join(left + right).rstrip())
    out += [f"{r.target} {r.mode}: error: {r.error}" for r in ordered if r.result is None]
    return "\n".join(out)


def to_json(config: Config, rows: Sequence[Row], checks: Sequence[Check]) -> str:
    payload = {
        "schema": JSON_SCHEMA,
        "config": {
            "duration_s": config.duration_s,
            "connections": config.connections,
            "targets": list(config.targets),
            "keepalive_timeout_s": config.keepalive.timeout_s,
            "keepalive_max": config.keepalive.max_requests,
            "server_cpu": SERVER_CPU,
            "client_cpu": CLIENT_CPU,
            "wrk": "wrk -t1 --latency, Connection: close for the close rows",
        },
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "rows": [row.to_json() for row in rows],
        "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in checks],
    }
    return json.dumps(payload, indent=2) + "\n"


def _interrupt_on_sigterm() -> None:
    """SIGTERM (make or CI stopping us) unwinds like Ctrl-C, so every child is stopped."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def preflight() -> None:
    if find_wrk() is None:
        raise UsageError("wrk not found; install it with `apt-get install wrk`")
    if not {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0):
        raise UsageError(f"needs CPU cores {SERVER_CPU} and {CLIENT_CPU} (server and wrk)")


def run(config: Config) -> int:
    rows: list[Row] = []
    for target in config.targets:
        rows += measure_target(target, config)
    checks = evaluate(rows)
    print(format_table(rows))
    print()
    for check in checks:
        print(check.line())
    if config.json_path is not None:
        try:
            write_atomic(config.json_path, to_json(config, rows, checks))
        except OSError as exc:
            sys.stderr.write(f"{PROG}: error: cannot write {config.json_path}: {exc.strerror}\n")
            return 1
        print(f"wrote {config.json_path}")
    failed = any(c.status == "FAIL" for c in checks) or any(r.result is None for r in rows)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    try:
        config = parse_config(argv)
        preflight()
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    if threading.current_thread() is threading.main_thread():
        _interrupt_on_sigterm()
    try:
        return run(config)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted; every process it started was stopped\n")
        return 130
