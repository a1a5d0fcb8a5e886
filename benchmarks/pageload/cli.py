"""`python -m benchmarks pageload`: the seed's question, measured on a page of N resources.

    python -m benchmarks pageload [--quick] [--servers uvloop] [--clients chromium,python]
        [--rtt 0,20,50,100] [--resources 10,70] [--size 4096] [--keepalive on,off]
        [--keepalive-timeout 5] [--keepalive-max 100] [--tls none,1.3] [--repeat 3]
        [--loads 1] [--results-dir results] [--no-plot]
    python -m benchmarks pageload plot CSV [--out PNG]
    python -m benchmarks pageload compare BASE.csv NEW.csv   (also: python -m benchmarks compare)

Every page load runs behind the delay line (root and /dev/net/tun): the server in the server
namespace, Chromium and the Python page client in the client namespace. Rows go to
`results/<host_id>/pageload-<stamp>-<commit>.csv` after every batch (atomically), the loads
to a `loads.jsonl` in the folder of the same name, and the plot beside the CSV. Progress on
stderr; the summary, the verdict sentence and the paths on stdout.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import IO, TypeVar

from benchmarks.common import OneLineParser, UsageError, parse_list, write_atomic
from benchmarks.harness.fingerprint import PACKAGES, collect, package_versions
from benchmarks.net import netns
from benchmarks.net.netns import NetError
from benchmarks.pageload import config as cfg
from benchmarks.pageload.certs import make_certificate
from benchmarks.pageload.config import Batch, Client, ConfigError, PageLoadConfig, Tls
from benchmarks.pageload.rows import FILE_PREFIX, PageLoadRow, write_rows
from benchmarks.pageload.run import (
    Outcome,
    RunContext,
    RunError,
    browser_missing,
    model_for,
    run_grid,
    write_loads,
)
from benchmarks.records.layout import (
    PID_FILE,
    RunPaths,
    bundle_bytes,
    new_run_paths,
    utc_iso,
    utc_stamp,
)
from servers.options import REFERENCE_SERVERS, ServerName

PROG = "python -m benchmarks pageload"
T = TypeVar("T")
# Wall time of a batch beyond its loads (process start, counters, a fresh browser context),
# for the estimate before one has been measured; measured ones replace it.
OVERHEAD_GUESS_S = {Client.CHROMIUM: 0.8, Client.PYTHON: 0.8, Client.PYTHON_UNPOOLED: 0.8}
LINE_GUESS_S = 8.0  # a delay line, the browser, a server start: per RTT


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _choice(kind: type[T], flag: str, aliases: dict[str, T] | None = None) -> Callable[[str], T]:
    def convert(text: str) -> T:
        if aliases and text in aliases:
            return aliases[text]
        try:
            return kind(text)  # type: ignore[call-arg]
        except ValueError:
            names = ", ".join(aliases or [m.value for m in kind])  # type: ignore[attr-defined]
            raise ConfigError(f"{flag}: unknown {text!r} (one of {names})") from None

    return convert


def _one_of(names: dict[str, T], flag: str) -> Callable[[str], T]:
    def convert(text: str) -> T:
        if text not in names:
            raise ConfigError(f"{flag}: unknown {text!r} (one of {', '.join(names)})")
        return names[text]

    return convert


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="RTT 50, one repetition: <= 60 s")
    p.add_argument("--servers", help="stdlib,aiohttp,uvloop (default uvloop)")
    p.add_argument("--clients", help="chromium,python,python-unpooled (default chromium,python)")
    p.add_argument("--rtt", help="round trips, ms, each below 250 (default 0,20,50,100)")
    p.add_argument("--resources", help="N, resources per page (default 10,70)")
    p.add_argument("--size", type=int, default=cfg.DEFAULT_SIZE, help="bytes per resource")
    p.add_argument("--keepalive", help="server keep-alive on,off (default both)")
    p.add_argument("--keepalive-timeout", type=float, default=cfg.DEFAULT_TIMEOUT_S,
                   help="T of the `on` setting, seconds (default 5)")  # fmt: skip
    p.add_argument("--keepalive-max", help="max of the `on` setting(s), 0 = unlimited (100)")
    p.add_argument("--tls", help="none,1.3 (default both; 0/1 too)")
    p.add_argument("--repeat", type=int, help="repetitions of every cell (default 3; QUICK 1)")
    p.add_argument("--loads", type=int, default=1, help="page loads per repetition (default 1)")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--no-plot", action="store_true", help="write no PNG")
    return p


def build_config(args: argparse.Namespace) -> PageLoadConfig:
    profile = cfg.QUICK if args.quick else cfg.FULL
    # Only ours serve /page (servers.endpoints); nginx and Node are not page servers.
    ours = {name.value: name for name in REFERENCE_SERVERS}
    servers = (
        parse_list(args.servers, "--servers", _one_of(ours, "--servers"))
        if args.servers
        else (ServerName.UVLOOP,)
    )
    clients = (
        parse_list(args.clients, "--clients", _choice(Client, "--clients"))
        if args.clients
        else cfg.DEFAULT_CLIENTS
    )
    rtts = parse_list(args.rtt, "--rtt", float) if args.rtt else profile.rtts_ms
    resources = parse_list(args.resources, "--resources", int) if args.resources else None
    switches = parse_list(args.keepalive, "--keepalive", str) if args.keepalive else None
    maxes = (
        parse_list(args.keepalive_max, "--keepalive-max", int)
        if args.keepalive_max
        else cfg.DEFAULT_MAXES
    )
    tls = (
        parse_list(args.tls, "--tls", _choice(Tls, "--tls", cfg.TLS_ALIASES))
        if args.tls
        else profile.tls
    )
    return PageLoadConfig(
        servers=servers,
        clients=clients,
        rtts_ms=rtts,
        resources=resources or profile.resources,
        size=args.size,
        keepalive=cfg.keepalive_settings(
            switches or profile.keepalive, args.keepalive_timeout, maxes
        ),
        tls=tls,
        repeat=args.repeat if args.repeat is not None else profile.repeat,
        loads=args.loads,
        quick=args.quick,
        results_dir=args.results_dir,
        plot=not args.no_plot,
    )


def fmt_duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """`[k/n m:ss elapsed, ~m:ss left] batch: result` on stderr; the estimate is the model's
    load time plus each client's measured overhead per batch."""

    def __init__(self, batches: Sequence[Batch], stream: IO[str]) -> None:
        self.batches = list(batches)
        self.stream = stream
        self.start = time.monotonic()
        self.done = 0
        self.overheads: dict[Client, list[float]] = {}
        self.lines_left = len({b.rtt_ms for b in batches})

    def _load_s(self, batch: Batch) -> float:
        rounds, _ = model_for(batch)
        return batch.loads * rounds * batch.rtt_ms / 1000

    def seconds_left(self) -> float:
        left = 0.0
        for batch in self.batches[self.done :]:
            seen = self.overheads.get(batch.client)
            overhead = sum(seen) / len(seen) if seen else OVERHEAD_GUESS_S[batch.client]
            left += self._load_s(batch) + overhead
        return left + LINE_GUESS_S * self.lines_left

    def _prefix(self, k: int) -> str:
        elapsed = time.monotonic() - self.start
        width = len(str(len(self.batches)))
        return (
            f"[{k:>{width}}/{len(self.batches)} {fmt_duration(elapsed)} elapsed, "
            f"~{fmt_duration(self.seconds_left())} left]"
        )

    def started(self, batch: Batch) -> None:
        if self.done == 0 or self.batches[self.done - 1].rtt_ms != batch.rtt_ms:
            self.lines_left = len({b.rtt_ms for b in self.batches[self.done :]}) - 1
        self.stream.write(f"{self._prefix(batch.index)} {batch.label()} ...\n")
        self.stream.flush()

    def finished(self, batch: Batch, outcome: Outcome) -> None:
        self.done += 1
        load_s = sum(float(ld.get("page_load_ms", 0)) for ld in outcome.loads) / 1000
        self.overheads.setdefault(batch.client, []).append(max(outcome.wall_s - load_s, 0.0))
        row = outcome.row
        flag = "" if row.valid else f" INVALID ({row.note})"
        model = f", model {row.model_ms:.0f} ms" if row.model_ms else ""
        self.stream.write(
            f"{self._prefix(batch.index)} {batch.label()}: {row.page_load_p50_ms:.0f} ms{model}, "
            f"{row.connections_per_page:g} conns/page{flag}\n"
        )
        self.stream.flush()


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGINT/SIGTERM unwind the run: every `with DelayLine` and server `finally` runs."""
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str]) -> int:
    args_list = list(argv)
    if args_list[:1] == ["plot"]:
        from benchmarks.pageload.plot import main as plot_main

        return plot_main(args_list[1:])
    if args_list[:1] == ["compare"]:
        from benchmarks.pageload.compare import main as compare_main

        return compare_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        config = build_config(args)
        netns.check_preconditions()
    except (UsageError, NetError) as exc:  # ConfigError is one
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    checked, note = without_missing_browser(config)
    if checked is None:
        sys.stderr.write(f"{PROG}: error: {note}\n")
        return 2
    if note:
        sys.stderr.write(f"{PROG}: {note}\n")
    return run(checked)


def without_missing_browser(config: PageLoadConfig) -> tuple[PageLoadConfig | None, str]:
    """(the config to run, a note). QUICK runs without Chromium where it is missing, saying
    so; a full run refuses (None) with the reason."""
    why = browser_missing() if Client.CHROMIUM in config.clients else ""
    if not why:
        return config, ""
    rest = tuple(c for c in config.clients if c is not Client.CHROMIUM)
    if not config.quick or not rest:
        return None, (
            f"the chromium client needs {why}; `make pageload` installs both, or leave it out "
            "with --clients python"
        )
    return replace(config, clients=rest), (
        f"note: QUICK without the browser: {why} (`make pageload` installs it)"
    )


def bundle_work(paths: RunPaths, rows: Sequence[PageLoadRow]) -> None:
    """The run's artifact bundle, rewritten atomically: loads.jsonl always, the server and
    Chromium logs only when a row failed or is invalid (the layout of `make bench` runs)."""
    keep_logs = any(r.status != "ok" or not r.valid for r in rows)
    members = {
        f.name: f.read_bytes()
        for f in sorted(paths.work.iterdir())
        if f.is_file() and f.name != PID_FILE and (keep_logs or not f.name.endswith(".log"))
    }
    write_atomic(paths.bundle, bundle_bytes(paths.name, members))


def run(config: PageLoadConfig) -> int:
    fp = collect()
    fp = replace(fp, packages=package_versions((*PACKAGES, "playwright")))
    stamp = utc_stamp()
    try:
        paths = new_run_paths(
            config.results_dir, fp.host_id, f"{FILE_PREFIX}{stamp}", fp.git_commit
        )
    except OSError as exc:
        sys.stderr.write(f"{PROG}: error: --results-dir {config.results_dir}: {exc}\n")
        return 2
    # The key is a secret of this run only: in a temporary folder, never in results/.
    certs = tempfile.TemporaryDirectory(prefix="keepalive-bench-pageload-")
    cert = make_certificate(Path(certs.name)) if any(t.enabled for t in config.tls) else None
    batches = config.batches()
    progress = Progress(batches, sys.stderr)
    sys.stderr.write(
        f"{len(batches)} batches, about {fmt_duration(progress.seconds_left())}; "
        f"commit {fp.git_commit}; CSV {paths.csv}\n"
    )
    rows: list[PageLoadRow] = []
    outcomes: list[tuple[Batch, Outcome]] = []
    loads_file = (paths.work / "loads.jsonl").open("w")

    def done(batch: Batch, outcome: Outcome) -> None:
        rows.append(outcome.row)
        outcomes.append((batch, outcome))
        write_rows(paths.csv, rows)
        write_loads(loads_file, batch, outcome)
        bundle_work(paths, rows)
        progress.finished(batch, outcome)

    ctx = RunContext(
        config=config, fingerprint=fp, run_id=f"{stamp}-{fp.host_id}", folder=paths.work,
        cert=cert, on_start=progress.started, on_done=done, now_utc=utc_iso,
    )  # fmt: skip
    status = 0
    try:
        with signals_as_interrupt():
            run_grid(ctx)
    except Interrupted as exc:
        sys.stderr.write(f"{PROG}: interrupted; {len(rows)} rows kept in {paths.csv}\n")
        status = 128 + exc.signum
    except (RunError, NetError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}; {len(rows)} rows kept\n")
        status = 1
    finally:
        loads_file.close()
        certs.cleanup()
        if rows:
            bundle_work(paths, rows)  # with the logs, if the run ended badly
        shutil.rmtree(paths.work, ignore_errors=True)
    if not rows:
        return status or 1
    from benchmarks.pageload.report import summary, verdict

    print(summary(outcomes))
    for sentence in verdict(rows):
        print(sentence)
    print(f"rows: {paths.csv}")
    if config.plot:
        from benchmarks.pageload.plot import plot_rows

        png = paths.csv.with_suffix(".png")
        plot_rows(rows, png)
        print(f"plot: {png}")
    return status
