"""`python -m benchmarks run`: parse, validate once, run every cell, write the CSV, summarize.

Exit status: 0 when every cell ran (invalid or client-bound rows included: they are findings),
1 when at least one cell failed (status != ok) or the results disk filled up (the run stops
there), 2 for bad input, 130 after Ctrl-C/SIGTERM (the rows measured so far are kept and
summarized, every process the harness started is gone).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.common import OneLineParser, UsageError, check_writable, print_error
from benchmarks.harness import config as cfgmod
from benchmarks.harness.cell import CellContext, run_cell
from benchmarks.harness.config import Cell, RunConfig
from benchmarks.harness.fingerprint import collect
from benchmarks.harness.procs import (
    adopting_orphans,
    choose_cores,
    pinned_self,
    signals_as_interrupt,
)
from benchmarks.harness.progress import Progress, fmt_duration, summary_table
from benchmarks.harness.sockets import private_netns
from benchmarks.harness.target import (
    TargetCommand,
    TargetServer,
    check_answers,
    parse_command,
    parse_target,
)
from benchmarks.matrix import (
    DEFAULT_CLIENTS,
    DEFAULT_CONCURRENCY,
    DIMENSIONS,
    FULL,
    QUICK,
    RUN_SETTINGS,
)
from benchmarks.net.cli import DEFAULT_SERVER_PORT
from benchmarks.records.layout import (
    RunPaths,
    RunWriter,
    is_no_space,
    new_run_paths,
    utc_stamp,
)
from servers.external import missing_reason

PROG = "python -m benchmarks run"


def _size(quick: bool) -> str:
    """`N cells, about M:SS` of a default run, from the a-priori estimate: a figure measured on
    one machine would be wrong on the next (the README shows measured ones)."""
    config = cfgmod.build(quick=quick)
    cells = len(config.cells())
    return f"{cells} cells, about {fmt_duration(cells * cfgmod.estimate_cell_s(config))} estimated"


DESCRIPTION = f"""\
Run the benchmark matrix servers x clients x modes x concurrency x keep-alive settings x
repetitions. Each cell starts its own server (port 0, identity checked), runs one client pinned to
another core, and becomes one CSV row; list values are comma-separated (--servers uvloop,aiohttp).

Default matrix (make bench): the three reference servers, clients {",".join(DEFAULT_CLIENTS)},
both modes, concurrency {DEFAULT_CONCURRENCY}, server keep-alive defaults (5 s, 100 requests),
{FULL.warmup_s:g} s warm-up + {FULL.duration_s:g} s window, {FULL.repeat} repetitions:
{_size(False)} (budget 5 min). Why: one Locust and one pyperf client cover both
families; pyperf-concurrent-raw is the fastest client (least often client-bound),
locust-fasthttp the fastest Locust user; 16 connections keep a one-core client out of scheduling
trouble; 5 s windows give over 1000 CPU ticks per cell; 2 repetitions show the spread, which a
third client would not leave time for. Add --clients pyperf-sequential,locust-requests,...
for the others.

--quick (make bench QUICK=1): the same configurations once, {QUICK.warmup_s:g} s warm-up +
{QUICK.duration_s:g} s window: {_size(True)} (budget 60 s): a smoke test, not for decisions.
"""

EPILOG = """\
Writes results/<host_id>/<UTC time>-<commit>.csv and <UTC time>-<commit>.artifacts.tar.gz (each
client's JSON and pyperf JSON; logs of failed or invalid cells), both rewritten atomically after
every cell; prints the CSV path.
--target URL (make bench TARGET=URL [TARGET_PID=PID] [CA=PEM | INSECURE=1]): the same clients
and modes against a server already running on loopback, instead of ours.
--target-command CMD --rtt MS (make bench TARGET_CMD="CMD" RTT=MS): your server behind the delay
line, started in its server namespace for every cell.
Exit status: 0 all cells ran, 1 some cell failed or the results disk filled up (the run stops,
rows so far kept), 2 bad input, 130 interrupted.
"""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for d in DIMENSIONS:  # the matrix: one flag per dimension
        choices = ",".join(d.choices()) if d.choices else ""
        p.add_argument(d.flag, help=d.help.format(choices=choices))
    for setting in RUN_SETTINGS:  # what every round of bench-compare and noise is run with too
        if setting.parse is None:
            p.add_argument(setting.flag, action="store_true", help=setting.help)
        else:
            p.add_argument(setting.flag, type=setting.parse, help=setting.help)
    # Internal: marks the re-executed harness inside `unshare --net`, so it does not re-exec again.
    p.add_argument(IN_NETNS_FLAG, dest="in_netns", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--target-pid", type=int, metavar="PID",
        help="the target's process (its children included): its CPU goes in the rows (blank "
        "without it)",
    )  # fmt: skip
    p.add_argument(
        "--target-ca", type=Path, metavar="PEM",
        help="CA that verifies an https target (default: the system store); every client uses it",
    )  # fmt: skip
    p.add_argument(
        "--target-insecure", action="store_true",
        help="https target without verifying its certificate (every client)",
    )  # fmt: skip
    p.add_argument(
        "--target-command", metavar="CMD",
        help="run this server in the delay line's server namespace for every cell (needs "
        "--rtt): a reference server's name and options ('nginx --keepalive-timeout 75'), or any "
        "command with {host} and {port} ('nginx -c /etc/my.conf' listening on --target-port); "
        "connections and CPU from that namespace's kernel and the command's pid",
    )  # fmt: skip
    p.add_argument(
        "--target-port", type=int, default=DEFAULT_SERVER_PORT, metavar="PORT",
        help=f"{{port}} of --target-command (default {DEFAULT_SERVER_PORT}; the namespace is the "
        "cell's alone)",
    )  # fmt: skip
    p.add_argument("--results-dir", type=Path, default=Path("results"), help="default: results/")
    p.add_argument(
        "--client-timeout", type=float,
        help="seconds before a client counts as hung (default 30 + 4 x (warm-up + window))",
    )  # fmt: skip
    p.add_argument(
        "--dry-run", action="store_true", help="list the cells and the estimate, run nothing"
    )
    return p


def parse_config(argv: list[str]) -> tuple[argparse.Namespace, RunConfig]:
    """argv -> validated RunConfig; bad input exits 2 with one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        target = target_of(args)
        config = cfgmod.build(
            quick=args.quick, duration=args.duration, warmup=args.warmup, repeat=args.repeat,
            results_dir=args.results_dir, client_timeout=args.client_timeout,
            workers=1 if args.workers is None else args.workers, target_server=target,
            **{d.dest: getattr(args, d.dest) for d in DIMENSIONS},
        )  # fmt: skip
        if config.uses_line:
            check_line(netns=args.netns)
    except UsageError as exc:
        parser.error(str(exc))
        raise  # unreachable
    return args, config


def target_of(args: argparse.Namespace) -> TargetServer | TargetCommand | None:
    """--target URL or --target-command CMD (not both), with the flags that belong to them."""
    url, command = args.target, args.target_command
    if url is not None and command is not None:
        raise UsageError("--target and --target-command: give one")
    if url is None and command is None:
        given = [
            flag for flag, value in (("--target-pid", args.target_pid),
                                     ("--target-ca", args.target_ca),
                                     ("--target-insecure", args.target_insecure))
            if value not in (None, False)
        ]  # fmt: skip
        if given:
            raise UsageError(f"{given[0]} needs --target (or --target-command)")
        return None
    if command is not None:
        if args.target_pid is not None:
            raise UsageError("--target-pid is for --target URL (a --target-command's pid is known)")
        return parse_command(command, args.target_port, args.target_ca, args.target_insecure)
    if args.netns:
        raise UsageError("--target is on this host's loopback: --netns would hide it")
    return parse_target(url, args.target_pid, args.target_ca, args.target_insecure)


def check_line(*, netns: bool) -> None:
    """--rtt other than none: the delay line's needs (root, /dev/net/tun, ip), before any cell."""
    from benchmarks.net.netns import NetError, check_preconditions

    if netns:
        raise UsageError("--netns and --rtt: the delay line's namespaces are private already")
    try:
        check_preconditions()
    except NetError as exc:
        raise UsageError(f"--rtt: {exc}") from None


IN_NETNS_FLAG = "--in-netns"


def reexec_in_netns(argv: list[str]) -> int:
    """Replace this process by itself inside `unshare --net`, loopback up."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return print_error(PROG, "--netns needs unshare and ip")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["not permitted"])[-1]
        return print_error(PROG, f"--netns: unshare --net failed: {why}")
    inner = [sys.executable, "-m", "benchmarks", "run", *argv, IN_NETNS_FLAG]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(
        "unshare",
        ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *inner],
    )
    return 2  # unreachable


def prepare(config: RunConfig) -> tuple[CellContext, RunPaths] | str:
    """The run's context, or a one-line reason why the results cannot be written (before any
    cell runs: a results dir that is a file or in /proc must not cost a whole run)."""
    fingerprint = collect()
    stamp = utc_stamp()
    try:
        paths = new_run_paths(
            config.results_dir, fingerprint.host_id, stamp, fingerprint.git_commit
        )
        check_writable(paths.work)
    except OSError as exc:
        return f"--results-dir {config.results_dir}: {exc.strerror or exc}"
    ctx = CellContext(
        config=config, fingerprint=fingerprint, run_id=f"{stamp}-{fingerprint.host_id}",
        cores=choose_cores(), artifacts=paths.work, netns=private_netns(),
    )  # fmt: skip
    return ctx, paths


def announce(ctx: CellContext, cells: list[Cell], estimate: float) -> None:
    cores = ctx.cores
    pinning = (
        f"server on core {cores.server}, client and harness on core {cores.client}"
        if cores.pinned
        else "not pinned (1 core)"
    )
    sys.stderr.write(
        f"{len(cells)} cells, about {fmt_duration(estimate)}; {pinning}; "
        f"kernel counters {'exact (private netns)' if ctx.netns else 'off (shared netns)'}; "
        f"commit {ctx.fingerprint.git_commit}\n"
    )


def run_cells(
    cells: list[Cell], ctx: CellContext, writer: RunWriter, progress: Progress
) -> tuple[list[str | None], str]:
    """Every cell in order; (histograms of the written rows, why the run stopped early or "")."""
    hists: list[str | None] = []
    try:
        with signals_as_interrupt():
            for cell in cells:
                progress.started(cell)
                outcome = run_cell(cell, ctx)
                try:
                    writer.add(outcome.row, cell.slug)
                except OSError as exc:
                    return hists, write_failed(writer.path, exc, outcome.stop)
                hists.append(outcome.histogram)
                progress.finished(cell, outcome.row, outcome.wall_s)
                if outcome.stop:  # a full results disk: every later cell would fail the same way
                    return hists, f"{outcome.stop}: run stopped"
    except KeyboardInterrupt:
        return hists, "interrupted"
    return hists, ""


def write_failed(path: Path, exc: OSError, disk_full: str) -> str:
    """Why the run stops when the CSV cannot be rewritten (the previous version stays whole)."""
    if disk_full:
        return f"{disk_full}: run stopped; the row of the cell that hit it could not be written"
    full = "results disk full: " if is_no_space(exc) else ""
    return f"{full}cannot write {path}: {exc.strerror or exc}"


def finish(
    ctx: CellContext, writer: RunWriter, hists: list[str | None], stopped: str, elapsed_s: float
) -> int:
    """Summary, CSV path and exit status; the working folder is gone in every case."""
    lead = ""
    if stopped:
        lead = "\ninterrupted: " if stopped == "interrupted" else f"{PROG}: error: {stopped}: "
    if not writer.close():
        sys.stderr.write(f"{PROG}: could not remove the working folder {ctx.artifacts}\n")
    if not writer.rows:
        sys.stderr.write(f"{lead}no cell completed; nothing written\n")
        return 130 if stopped == "interrupted" else 1
    if stopped:
        sys.stderr.write(f"{lead}keeping the {len(writer.rows)} row(s) written so far\n")
    print(summary_table(writer.rows, hists))
    failed = [r for r in writer.rows if r.status != "ok"]
    invalid = sum(1 for r in writer.rows if r.status == "ok" and not r.valid)
    sys.stderr.write(
        f"{len(writer.rows)} rows in {fmt_duration(elapsed_s)}, {len(failed)} failed, "
        f"{invalid} invalid\n"
    )
    print(writer.path)
    if stopped == "interrupted":
        return 130
    return 1 if failed or stopped else 0


def skip_uninstalled(cells: list[Cell]) -> list[Cell]:
    """Drop the cells of a server whose binary is missing (nginx, node), one line per server
    saying how to install it; the rest are renumbered so slugs stay in run order."""
    missing = {}
    for server in dict.fromkeys(cell.server for cell in cells if not cell.is_target):
        why = missing_reason(server)
        if why is not None:
            missing[server] = why
            sys.stderr.write(f"skipping the {server} cells: {why}\n")
    kept = [cell for cell in cells if cell.key.server not in missing]
    return [dataclasses.replace(cell, index=n) for n, cell in enumerate(kept, 1)]


def main(argv: list[str]) -> int:
    args, config = parse_config(argv)
    if args.netns and not args.in_netns:
        return reexec_in_netns(argv)
    cells = skip_uninstalled(config.cells())
    if not cells:
        sys.stderr.write("no cell left to run\n")
        return 0
    estimate = cfgmod.estimate_cell_s(config) * len(cells)
    if args.dry_run:
        for cell in cells:
            print(cell.label())
        print(f"{len(cells)} cells, about {fmt_duration(estimate)}")
        return 0
    if isinstance(config.target, TargetServer):  # a command is checked in each cell's line
        why = check_answers(config.target)
        if why is not None:
            return print_error(PROG, why)
    prepared = prepare(config)
    if isinstance(prepared, str):
        return print_error(PROG, prepared)
    ctx, paths = prepared
    writer = RunWriter(paths)
    try:
        announce(ctx, cells, estimate)
        progress = Progress(cells, cfgmod.estimate_cell_s(config))
        with adopting_orphans(), pinned_self(ctx.cores.client):
            hists, stopped = run_cells(cells, ctx, writer, progress)
        return finish(ctx, writer, hists, stopped, progress.clock() - progress.start)
    finally:
        writer.close()  # a harness error too leaves no working folder behind


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
