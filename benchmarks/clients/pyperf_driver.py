"""Run a load client under pyperf and turn its workers' tallies into one `ClientResult`.

pyperf spawns worker processes one after another; each calls the timed function with `loops`
and reports a mean, which says nothing about tails. So the timed function also hands every
request's latency to a per-worker `Tally` (recorded after the clock stops, so recording costs no
measured time), each worker dumps its tally to a parts directory, and the main process merges
the histograms (never the percentiles) and writes the ClientResult atomically.

Why not pyperf's own loop calibration: it spends a whole extra worker (warm-ups plus values) to
find `loops`. Instead the main process probes the server for a fraction of a second, which also
proves it is reachable, and derives `loops` so that processes x values x loops requests take
about `--duration` seconds. pyperf's own warm-up values are off (`warmups=0`); each worker warms
up for `--warmup / processes` seconds before pyperf starts timing.

Our flags are parsed before pyperf's (pyperf owns `-o/--output`, which the contract also uses),
and `add_cmdline_args` forwards them to the workers.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyperf

from benchmarks import latency
from benchmarks.clients.contract import ClientResult, Mode
from benchmarks.clients.shared import Tally, Target, dump_part, fail, load_parts, validate_common

PROBE_S = 0.25  # how long the main process probes the server to size `loops`
MAX_LOOPS = 2**31


@dataclass
class Batch:
    """What one call of a client's `run(loops)` produced."""

    elapsed_s: float
    latencies_ns: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


class LoadClient(Protocol):
    def run(self, loops: int) -> Batch:
        """Send exactly `loops` requests (failures included) and time them."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ClientSpec:
    """What a pyperf client module tells the driver about itself."""

    prog: str  # e.g. "python -m benchmarks.clients.pyperf_sequential"
    module: str  # for pyperf's program_args
    parser: argparse.ArgumentParser  # with add_common_args and the module's own flags
    kind: Callable[[argparse.Namespace], str]  # the ClientKind value for this run
    bench_name: Callable[[argparse.Namespace], str]
    make_client: Callable[[argparse.Namespace, Target], LoadClient]
    extra_flags: Callable[[argparse.Namespace], list[str]]  # module flags, to forward
    validate: Callable[[argparse.ArgumentParser, argparse.Namespace], None] = lambda p, ns: None


@dataclass(frozen=True)
class Plan:
    """pyperf settings chosen from --duration alone, never from the machine's core count.

    pyperf runs its worker processes one after another (each one waited for before the next
    starts), all on the client's one pinned core, so more cores would not run them faster.
    Their number trades process-to-process variation seen (more) against the interpreter start
    and warm-up each one adds outside the window (fewer): 2 x 2 values for a short window, 3 x 3
    for a full one."""

    processes: int
    values: int

    @classmethod
    def for_duration(cls, duration_s: float) -> Plan:
        return cls(processes=2, values=2) if duration_s < 3 else cls(processes=3, values=3)

    def loops_for(self, duration_s: float, seconds_per_loop: float) -> int:
        per_value_s = duration_s / (self.processes * self.values)
        return int(min(max(round(per_value_s / seconds_per_loop), 1), MAX_LOOPS))


def main(spec: ClientSpec, argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    ns, pyperf_args = spec.parser.parse_known_args(args)
    validate_common(spec.parser, ns)
    spec.validate(spec.parser, ns)
    target = Target.from_url(ns.url, ns.path, ns.ca)
    plan = Plan.for_duration(ns.duration)
    if "--worker" in pyperf_args:
        return _worker(spec, ns, target, plan, pyperf_args)
    return _manager(spec, ns, target, plan, pyperf_args)


def _runner(spec: ClientSpec, ns: argparse.Namespace, plan: Plan, loops: int) -> pyperf.Runner:
    def forward(cmd: list[str], _args: argparse.Namespace) -> None:
        cmd.extend(_forwarded_flags(spec, ns))

    return pyperf.Runner(
        values=plan.values,
        processes=plan.processes,
        warmups=0,
        loops=loops,
        program_args=("-m", spec.module),
        add_cmdline_args=forward,
    )


def _forwarded_flags(spec: ClientSpec, ns: argparse.Namespace) -> list[str]:
    flags = [
        "--url", ns.url, "--mode", ns.mode, "--path", ns.path, "--duration", repr(ns.duration),
        "--warmup", repr(ns.warmup), "--output", str(ns.output), "--parts-dir", str(ns.parts_dir),
    ]  # fmt: skip
    if ns.ca is not None:
        flags += ["--ca", str(ns.ca)]
    return flags + spec.extra_flags(ns)


def _probe(spec: ClientSpec, ns: argparse.Namespace, target: Target) -> tuple[float, int]:
    """Seconds per loop and requests sent; exits with one line if the server does not answer."""
    reason = target.check_reachable()
    if reason is not None:
        fail(spec.prog, reason)
    client = spec.make_client(ns, target)
    sent, elapsed, ok, loops = 0, 0.0, 0, 1
    errors: Counter[str] = Counter()
    try:
        while elapsed < PROBE_S:
            batch = client.run(loops)
            sent += loops
            elapsed += batch.elapsed_s
            ok += len(batch.latencies_ns)
            errors.update(batch.errors)
            if not batch.latencies_ns:  # a server that fails every request fails fast
                break
            loops *= 2
    finally:
        client.close()
    if ok == 0:
        kinds = ", ".join(f"{k} x{n}" for k, n in errors.most_common(3))
        fail(spec.prog, f"no request to {ns.url}{ns.path} succeeded while probing ({kinds})")
    return elapsed / sent, sent


def _manager(
    spec: ClientSpec, ns: argparse.Namespace, target: Target, plan: Plan, pyperf_args: list[str]
) -> int:
    seconds_per_loop, probe_requests = _probe(spec, ns, target)
    loops = plan.loops_for(ns.duration, seconds_per_loop)
    ns.output.parent.mkdir(parents=True, exist_ok=True)
    ns.parts_dir = Path(tempfile.mkdtemp(dir=ns.output.parent, prefix=f".{ns.output.name}.parts."))
    try:
        runner = _runner(spec, ns, plan, loops)
        runner.parse_args(pyperf_args)
        try:
            bench = runner.bench_time_func(spec.bench_name(ns), _never_called)
        except RuntimeError as exc:  # a worker failed; pyperf says which command
            fail(spec.prog, f"pyperf worker failed: {exc}")
        tally, workers = load_parts(ns.parts_dir)
    finally:
        shutil.rmtree(ns.parts_dir, ignore_errors=True)
    tally.requests_total += probe_requests
    pyperf_json = ns.output.with_name(ns.output.name + ".pyperf.json")
    bench.dump(str(pyperf_json), replace=True)
    result = _result(spec.kind(ns), ns.mode, tally, workers, [str(pyperf_json)])
    result.write(ns.output)
    print(_summary_line(spec.bench_name(ns), result))
    return 0


def _never_called(loops: int) -> float:
    raise AssertionError("the pyperf manager process never runs the timed function")


def _result(kind: str, mode: str, tally: Tally, workers: int, artifacts: list[str]) -> ClientResult:
    return ClientResult(
        client=kind,
        mode=Mode(mode).value,
        requests=tally.requests,
        errors=tally.errors,
        elapsed_s=tally.elapsed_s,
        requests_total=tally.requests_total,
        load_processes=workers + 1,  # the workers, plus the main process that probed
        latency_us=latency.summary_us(tally.hist),
        histogram=latency.encode(tally.hist),
        error_kinds=dict(tally.error_kinds),
        artifacts=artifacts,
    )


def _summary_line(name: str, result: ClientResult) -> str:
    """The headline: microseconds per request (the seed experiment) and throughput."""
    rps = result.throughput_rps
    us_per_request = 1e6 / rps if rps else float("nan")
    lat = result.latency_us
    return (
        f"{name}: {us_per_request:.1f} us per request, {rps:,.0f} req/s; latency p50 "
        f"{lat['p50']:.0f} us, p99 {lat['p99']:.0f} us, max {lat['max']:.0f} us; "
        f"{result.requests} requests, {result.errors} errors in {result.elapsed_s:.2f} s"
    )


def _worker(
    spec: ClientSpec, ns: argparse.Namespace, target: Target, plan: Plan, pyperf_args: list[str]
) -> int:
    runner = _runner(spec, ns, plan, loops=0)
    args = runner.parse_args(pyperf_args)
    calibrating = bool(args.calibrate_loops or args.recalibrate_loops or args.calibrate_warmups)
    unmeasured_calls = args.warmups or 0
    client = spec.make_client(ns, target)
    tally = Tally()
    _warm_up(client, tally, ns.warmup / plan.processes, max(1, args.loops // 20))
    calls = 0

    def timed(loops: int) -> float:
        nonlocal calls
        batch = client.run(loops)
        tally.requests_total += loops
        if not calibrating and calls >= unmeasured_calls:
            tally.requests += len(batch.latencies_ns)
            tally.elapsed_s += batch.elapsed_s
            tally.add_errors(batch.errors)
            tally.record_latencies_ns(batch.latencies_ns)
        calls += 1
        return batch.elapsed_s

    try:
        runner.bench_time_func(spec.bench_name(ns), timed)
    finally:
        client.close()
    if not calibrating:
        dump_part(ns.parts_dir, tally)
    return 0


def _warm_up(client: LoadClient, tally: Tally, seconds: float, batch_loops: int) -> None:
    """Unrecorded requests for `seconds`, so the first timed value meets a warm server."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client.run(batch_loops)
        tally.requests_total += batch_loops
