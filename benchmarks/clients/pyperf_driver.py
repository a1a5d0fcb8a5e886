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

Our flags (the contract's) are parsed before pyperf's (pyperf owns `-o/--output`, which the
contract also uses), and `add_cmdline_args` forwards them to the workers, written by the same
`ClientConfig.pyperf_args` that wrote them for this process.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import pyperf

from benchmarks import latency
from benchmarks.clients.contract import (
    ClientConfig,
    ClientKind,
    ClientResult,
    Mode,
    parse_pyperf_args,
)
from benchmarks.clients.shared import Phase, Tally, Target, dump_part, fail, load_parts

PROBE_S = 0.25  # how long the main process probes the server to size `loops`
MAX_LOOPS = 2**31


@dataclass
class Batch:
    """What one call of a client's `run(loops)` produced.

    The phase lists hold what the client measures (its `timings`): `connects_ns` and `tls_ns`
    one entry per connection the batch opened (a request on a reused connection paid neither:
    it counts as 0, see `Tally.record_phases`), `ttfb_ns` one per completed request."""

    elapsed_s: float
    latencies_ns: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    # An open-loop client's start counts (added up across batches and workers) and maxima
    paced: Counter[str] = field(default_factory=Counter)
    paced_max: Counter[str] = field(default_factory=Counter)
    connects_ns: list[int] = field(default_factory=list)  # connect() to established
    tls_ns: list[int] = field(default_factory=list)  # TLS handshake, after the connect
    ttfb_ns: list[int] = field(default_factory=list)  # request write to first response byte


class LoadClient(Protocol):
    connections_opened: int  # TCP connections opened so far (connects that succeeded)
    timings: frozenset[Phase]  # the phases its batches measure (empty: none)
    tls_resumed: int  # of those, resumed TLS sessions (0 for a client that never offers one)

    def run(self, loops: int) -> Batch:
        """Send exactly `loops` requests (failures included) and time them."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ClientSpec:
    """What a pyperf client module tells the driver about itself; its flags are the contract's
    (`benchmarks.clients.contract.parse_pyperf_args`)."""

    prog: str  # e.g. "python -m benchmarks.clients.pyperf_sequential"
    module: str  # for pyperf's program_args and the flags the module takes
    description: str  # the first line of its --help
    bench_name: Callable[[ClientConfig], str]
    make_client: Callable[[ClientConfig, Target], LoadClient]
    # The result's `open_loop` from the merged paced counts (open-loop clients only)
    describe: Callable[[ClientConfig, Tally], dict[str, object]] | None = None


@dataclass(frozen=True)
class Run:
    """This process's part: the validated config, and where the workers' tallies go."""

    config: ClientConfig
    parts_dir: Path | None  # given to the workers by the main process


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

    def loops_for(self, duration_s: float, seconds_per_loop: float, connections: int = 1) -> int:
        """Requests per timed call: about duration / values, in whole rounds of the client's
        `connections` (at least one), so every call has all of them busy at once: a long round
        trip makes each request slow, and a call of 5 requests at concurrency 16 would run at
        5; a call of 40 would end with a round of 8."""
        per_value_s = duration_s / (self.processes * self.values)
        loops = max(round(per_value_s / seconds_per_loop), 1)
        return int(min(math.ceil(loops / connections) * connections, MAX_LOOPS))


def main(spec: ClientSpec, argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config, parts_dir, pyperf_args = parse_pyperf_args(spec.module, args, spec.description)
    run = Run(config, parts_dir)
    target = Target.from_url(config.url, config.path, config.ca_path, insecure=config.insecure)
    plan = Plan.for_duration(config.duration_s)
    if "--worker" in pyperf_args:
        return _worker(spec, run, target, plan, pyperf_args)
    return _manager(spec, run, target, plan, pyperf_args)


def _runner(spec: ClientSpec, run: Run, plan: Plan, loops: int) -> pyperf.Runner:
    def forward(cmd: list[str], _args: argparse.Namespace) -> None:
        assert run.parts_dir is not None
        cmd.extend([*run.config.pyperf_args(), "--parts-dir", str(run.parts_dir)])

    return pyperf.Runner(
        values=plan.values,
        processes=plan.processes,
        warmups=0,
        loops=loops,
        program_args=("-m", spec.module),
        add_cmdline_args=forward,
    )


def _probe(spec: ClientSpec, config: ClientConfig, target: Target) -> tuple[float, int, LoadClient]:
    """Seconds per loop, requests sent and the (closed) client, with its connection counts;
    exits with one line if the server does not answer."""
    reason = target.check_reachable()
    if reason is not None:
        fail(spec.prog, reason)
    client = spec.make_client(config, target)
    # An open-loop client's pace is its schedule's, not the server's: probe until one request
    # succeeded (reachable), then size the loops from that pace. A closed-loop one carries
    # requests on every connection from the first batch on: a rate probed at one request in
    # flight says nothing about c (over a 50 ms line it would be 16 times too slow).
    paced = getattr(client, "paced_seconds_per_loop", None)
    loops = 1 if paced is not None else config.kind.connections(config.concurrency)
    sent, elapsed, ok = 0, 0.0, 0
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
            if paced is not None:
                break
            loops *= 2
    finally:
        client.close()
    if ok == 0:
        kinds = ", ".join(f"{k} x{n}" for k, n in errors.most_common(3))
        where = f"{config.url}{config.path}"
        fail(spec.prog, f"no request to {where} succeeded while probing ({kinds})")
    return (paced if paced is not None else elapsed / sent), sent, client


def _manager(spec: ClientSpec, run: Run, target: Target, plan: Plan, pyperf_args: list[str]) -> int:
    config = run.config
    seconds_per_loop, probe_requests, probe = _probe(spec, config, target)
    connections = config.kind.connections(config.concurrency)
    loops = plan.loops_for(config.duration_s, seconds_per_loop, connections)
    output = config.output
    output.parent.mkdir(parents=True, exist_ok=True)
    run = replace(
        run, parts_dir=Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.parts."))
    )
    assert run.parts_dir is not None
    try:
        runner = _runner(spec, run, plan, loops)
        runner.parse_args(pyperf_args)
        try:
            bench = runner.bench_time_func(spec.bench_name(config), _never_called)
        except RuntimeError as exc:  # a worker failed; pyperf says which command
            fail(spec.prog, f"pyperf worker failed: {exc}")
        tally, workers = load_parts(run.parts_dir)
    finally:
        shutil.rmtree(run.parts_dir, ignore_errors=True)
    tally.requests_total += probe_requests
    tally.connections += probe.connections_opened
    tally.tls_resumed += probe.tls_resumed
    pyperf_json = output.with_name(output.name + ".pyperf.json")
    bench.dump(str(pyperf_json), replace=True)
    result = _result(config.kind.value, config.mode.value, tally, workers, [str(pyperf_json)])
    if spec.describe is not None:
        result = replace(result, open_loop=spec.describe(config, tally))
    result.write(output)
    print(_summary_line(spec.bench_name(config), result))
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
        connections_opened=tally.connections,
        connections_window=tally.connections_window,
        phases_p50_us=tally.phases_p50_us(),
        tls_resumed=tally.tls_resumed if ClientKind(kind).resumes_tls else -1,
    )


def _summary_line(name: str, result: ClientResult) -> str:
    """The headline: microseconds per request (the seed experiment) and throughput."""
    rps = result.throughput_rps
    us_per_request = 1e6 / rps if rps else float("nan")
    lat = result.latency_us
    line = (
        f"{name}: {us_per_request:.1f} us per request, {rps:,.0f} req/s; latency p50 "
        f"{lat['p50']:.0f} us, p99 {lat['p99']:.0f} us, max {lat['max']:.0f} us; "
        f"{result.requests} requests, {result.errors} errors in {result.elapsed_s:.2f} s"
        + _resumed_text(result)
    )
    note = result.open_loop.get("note")
    return f"{line}; {note}" if note else line


def _resumed_text(result: ClientResult) -> str:
    """How many of its new connections resumed a TLS session (a resuming client only)."""
    if result.tls_resumed < 0:
        return ""
    return f"; {result.tls_resumed} of {result.connections_opened} connections resumed TLS"


def _worker(spec: ClientSpec, run: Run, target: Target, plan: Plan, pyperf_args: list[str]) -> int:
    config = run.config
    runner = _runner(spec, run, plan, loops=0)
    args = runner.parse_args(pyperf_args)
    calibrating = bool(args.calibrate_loops or args.recalibrate_loops or args.calibrate_warmups)
    unmeasured_calls = args.warmups or 0
    client = spec.make_client(config, target)
    tally = Tally()
    connections = config.kind.connections(config.concurrency)
    _warm_up(client, tally, config.warmup_s / plan.processes, max(connections, args.loops // 20))
    calls = 0

    def timed(loops: int) -> float:
        nonlocal calls
        opened = client.connections_opened
        batch = client.run(loops)
        tally.requests_total += loops
        if not calibrating and calls >= unmeasured_calls:
            tally.requests += len(batch.latencies_ns)
            tally.elapsed_s += batch.elapsed_s
            tally.connections_window += client.connections_opened - opened
            tally.add_errors(batch.errors)
            tally.record_latencies_ns(batch.latencies_ns)
            tally.add_paced(batch.paced, batch.paced_max)
            tally.record_phases(
                client.timings, len(batch.latencies_ns), batch.connects_ns, batch.tls_ns,
                batch.ttfb_ns,
            )  # fmt: skip
        calls += 1
        return batch.elapsed_s

    try:
        runner.bench_time_func(spec.bench_name(config), timed)
    finally:
        client.close()
    tally.connections = client.connections_opened
    tally.tls_resumed = client.tls_resumed
    if not calibrating:
        assert run.parts_dir is not None, "the main process gives every worker --parts-dir"
        dump_part(run.parts_dir, tally)
    return 0


def _warm_up(client: LoadClient, tally: Tally, seconds: float, batch_loops: int) -> None:
    """Unrecorded requests for `seconds`, so the first timed value meets a warm server; at
    least one batch of `batch_loops` (>= the client's connections) even with no warm-up time,
    so a pooled client's connections are all open before the window (each costs a round trip
    or more over a delay line, and one still opening is one fewer in flight)."""
    deadline = time.monotonic() + seconds
    while True:
        client.run(batch_loops)
        tally.requests_total += batch_loops
        if time.monotonic() >= deadline:
            return
