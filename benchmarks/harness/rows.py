"""From measurements to a CSV row: CPU load, the verdicts, the note; and the row of a failure.

Kept apart from `cell` (which starts, watches and stops processes) so the arithmetic and the
rules' application are tested with fakes, without a process in sight.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.clients.contract import ClientKind, ClientResult
from benchmarks.harness import validity
from benchmarks.harness.config import Cell, RunConfig
from benchmarks.harness.fingerprint import Fingerprint
from benchmarks.harness.monitor import Monitor, load_stats
from benchmarks.harness.procs import Cores
from benchmarks.harness.sockets import SocketCounts, format_counters
from benchmarks.harness.target import TargetCommand
from benchmarks.net.line import LinkStats
from benchmarks.records.schema import SCHEMA_VERSION, ResultRow

PORTS_EXHAUSTED = re.compile(r"EADDRNOTAVAIL|Cannot assign requested address|errno 99\b", re.I)


@dataclass(frozen=True)
class CellContext:
    """What every cell of a run shares."""

    config: RunConfig
    fingerprint: Fingerprint
    run_id: str
    cores: Cores
    artifacts: Path
    netns: bool  # kernel counters are exact (private network namespace)


@dataclass(frozen=True)
class Measurement:
    """Everything measured around one client run, before it becomes a row."""

    result: ClientResult
    before: dict[str, Any]  # server counters before the client started
    after: dict[str, Any]  # ... and after it exited
    server_cpu_s: float
    client_wall_s: float
    monitor: Monitor
    end_sockets: SocketCounts
    kernel: dict[str, int]  # kernel TCP counter deltas; empty outside a private netns
    client_status: int
    link: LinkStats | None = None  # the delay line's figures over the cell; None on loopback


def base_fields(cell: Cell, ctx: CellContext, started: str) -> dict[str, Any]:
    fp = ctx.fingerprint
    return dict(
        schema_version=SCHEMA_VERSION, run_id=ctx.run_id, started_utc=started,
        git_commit=fp.git_commit, host_id=fp.host_id, cpu_model=fp.cpu_model,
        cpu_count=fp.cpu_count, kernel=fp.kernel, python_version=fp.python_version,
        packages=fp.packages, key=cell.key, duration_s=ctx.config.duration_s,
        repetition=cell.repetition,
        server_core=-1 if cell.is_target else ctx.cores.server, client_core=ctx.cores.client,
    )  # fmt: skip


ZERO_RESULTS: dict[str, Any] = dict(
    requests=0, errors=0, throughput_rps=0.0, latency_p50_ms=0.0, latency_p90_ms=0.0,
    latency_p99_ms=0.0, latency_p999_ms=0.0, latency_max_ms=0.0, connect_p50_ms=None,
    tls_p50_ms=None, ttfb_p50_ms=None, client_cpu_pct=0.0,
    server_cpu_s=0.0, server_cpu_us_per_req=0.0, server_cpu_pct=0.0, connections_opened=0,
    connections_opened_run=0, requests_per_connection=0.0, peak_open_connections=0,
    open_sockets=0, time_wait_sockets=0, client_bound=0, link_lateness_p50_us=None,
    link_lateness_p99_us=None, link_packets=None, link_drops=None, relay_cpu_pct=None,
)  # fmt: skip


def failed_row(cell: Cell, ctx: CellContext, started: str, status: str, message: str) -> ResultRow:
    return ResultRow(
        **base_fields(cell, ctx, started), **ZERO_RESULTS, valid=0, status=status, note=message
    )


@dataclass(frozen=True)
class CpuLoad:
    """The cell's CPU figures and what they say about contention."""

    server_pct: float
    client_pct: float
    client_core_busy_pct: float | None  # everything on the client's core; None: not known
    relay_pct: float | None  # the delay line's relay (on the client's core); None: loopback
    contended: str  # validity.server_contended's reason; empty when the server had its core
    note: str


def cpu_load(ctx: CellContext, m: Measurement, cell: Cell | None = None) -> CpuLoad:
    """CPU % over the busy intervals, or over the whole client run when they are too few.
    A target is not on the server core we keep free: no contention verdict, and its CPU % is
    blank (NaN) when its pid is not known."""
    load = _cpu_load(ctx, m)
    if cell is None or not cell.is_target:
        return load
    server_pct = load.server_pct if not math.isnan(m.server_cpu_s) else math.nan
    return replace(load, server_pct=server_pct, contended="")


def _cpu_load(ctx: CellContext, m: Measurement) -> CpuLoad:
    stats = load_stats(m.monitor.samples)
    relay = m.link is not None
    if stats is None:
        wall = m.client_wall_s
        last = m.monitor.samples[-1] if m.monitor.samples else None

        def pct(seconds: float) -> float:
            return seconds / wall * 100.0 if wall > 0 else 0.0

        return CpuLoad(
            pct(m.server_cpu_s), pct(last.client_cpu_s if last else 0.0), None,
            pct(last.relay_cpu_s if last else 0.0) if relay else None,
            "", "cpu % over the whole client run (load period too short to sample)",
        )  # fmt: skip
    cores, busy = ctx.cores, stats.core_busy_pct
    relay_pct = stats.relay_cpu_pct if relay else None
    return CpuLoad(
        stats.server_cpu_pct, stats.client_tree_pct,
        busy.get(cores.client) if cores.pinned else None, relay_pct,
        validity.server_contended(cores, busy, stats.server_cpu_pct),
        validity.core_note(
            cores, busy, stats.server_cpu_pct, stats.client_tree_pct, stats.harness_cpu_pct,
            relay_pct,
        ),
    )  # fmt: skip


def verdict_of(cell: Cell, m: Measurement, load: CpuLoad) -> validity.Verdict:
    """The mode rules first; a row that passes them is still invalid if its server was crowded."""
    verdict = validity.judge(
        mode=cell.mode, concurrency=cell.key.concurrency,  # expand() made it the connections
        load_processes=m.result.load_processes,
        keepalive_timeout_s=cell.key.keepalive_timeout_s, keepalive_max=cell.key.keepalive_max,
        requests=m.result.requests, errors=m.result.errors,
        requests_total=m.result.requests_total,
        connections_opened=_delta(m, "connections_accepted"),
        requests_served=_delta(m, "requests_served"),
        peak_open_connections=int(m.after.get("connections_peak_open", 0)),
        connections_counted=m.result.connections_opened,
        connections_window=m.result.connections_window,
    )  # fmt: skip
    if verdict.valid and "tls_resumed" in m.after:  # TLS counted (our servers): which handshakes
        verdict = validity.judge_tls(
            resuming=ClientKind(cell.key.client).resumes_tls, mode=cell.mode,
            load_processes=m.result.load_processes,
            handshakes=_delta(m, "tls_handshakes"), resumed=_delta(m, "tls_resumed"),
            client_resumed=m.result.tls_resumed,
        )  # fmt: skip
    if verdict.valid and load.contended:
        return validity.Verdict(False, load.contended)
    return verdict


def _delta(m: Measurement, counter: str) -> int:
    return int(m.after[counter]) - int(m.before[counter])


def status_and_notes(
    cell: Cell, ctx: CellContext, m: Measurement, verdict: validity.Verdict, load: CpuLoad
) -> tuple[str, list[str]]:
    """`ok` or `ports-exhausted`, and the note's parts, most important first."""
    result = m.result
    notes = [verdict.reason] if verdict.reason else []
    if result.open_loop.get("note"):  # the asked rate held or not: as important as validity
        notes.append(str(result.open_loop["note"]))
    if load.contended and load.contended != verdict.reason:
        notes.append(load.contended)
    exhausted = sum(n for kind, n in result.error_kinds.items() if PORTS_EXHAUSTED.search(kind))
    if exhausted:
        notes.append(f"{exhausted} connects failed with EADDRNOTAVAIL (ephemeral ports exhausted)")
    if result.error_kinds:
        kinds = sorted(result.error_kinds.items())
        notes.append("errors: " + ", ".join(f"{k}={v}" for k, v in kinds))
    tw = m.end_sockets
    notes.append(f"time_wait server={tw.time_wait_server} client={tw.time_wait_client}")
    notes.append(f"client sent {result.requests_total} in {result.load_processes} process(es)")
    if result.pages:
        notes.append(page_note(result))
    if cell.is_target:
        notes.append(target_note(ctx, m))
    if cell.client.is_locust and ctx.config.workers > 1:
        notes.append(f"locust workers {ctx.config.workers}")
    if m.kernel:
        notes.append(format_counters(m.kernel))
    if m.client_status != 0:
        notes.append(f"client exit status {m.client_status}")
    if m.link is not None:
        core = f"core {ctx.cores.client} (the client's)" if ctx.cores.pinned else "not pinned"
        notes.append(
            f"delay line: relay on {core}, relay cpu {m.link.cpu_s:.2f} s, "
            f"lateness max {m.link.lateness_max_us or 0:.0f} us"
        )
    notes += [n for n in (load.note, m.monitor.failures_note()) if n]
    return ("ports-exhausted" if exhausted else "ok"), notes


def page_note(result: ClientResult) -> str:
    """The page client's whole pages (the row's latencies are its single requests')."""
    lat = result.page_latency_us
    ms = lambda key: lat.get(key, 0.0) / 1000  # noqa: E731
    return (
        f"pages {result.pages} ({result.pages / result.elapsed_s:.1f}/s), page load "
        f"p50 {ms('p50'):.1f} ms p90 {ms('p90'):.1f} ms p99 {ms('p99'):.1f} ms"
        if result.elapsed_s > 0
        else f"pages {result.pages}"
    )


def target_note(ctx: CellContext, m: Measurement) -> str:
    """Where a target's figures come from, since no server counter gave them."""
    if isinstance(ctx.config.target, TargetCommand):
        return (
            f"target command in the server namespace: {m.kernel.get('PassiveOpens', 0)} "
            f"connections accepted by its kernel ({m.result.connections_opened} counted by the "
            "client), peak open from its /proc/net/tcp, server CPU of the command and its children"
        )
    target = ctx.config.target
    pid = target.pid if target is not None else None
    cpu = f"server CPU of pid {pid} and its children" if pid else "server CPU not measured"
    return (
        f"target: {m.result.connections_opened} connections counted by the client, peak open "
        f"from /proc/net/tcp, {cpu}"
    )


def measured_row(cell: Cell, ctx: CellContext, started: str, m: Measurement) -> ResultRow:
    """Turn the client's result, the server's counters and the samples into a row."""
    load = cpu_load(ctx, m, cell)
    verdict = verdict_of(cell, m, load)
    status, notes = status_and_notes(cell, ctx, m, verdict, load)
    served, opened = _delta(m, "requests_served"), _delta(m, "connections_accepted")
    window = m.result.connections_window
    lat, sockets = m.result.latency_us, m.monitor.sockets or m.end_sockets
    base = base_fields(cell, ctx, started)
    base["duration_s"] = round(m.result.elapsed_s, 3)  # the window the client actually measured
    return ResultRow(
        **base,
        requests=m.result.requests, errors=m.result.errors,
        throughput_rps=round(m.result.throughput_rps, 1),
        latency_p50_ms=lat.get("p50", 0.0) / 1000, latency_p90_ms=lat.get("p90", 0.0) / 1000,
        latency_p99_ms=lat.get("p99", 0.0) / 1000, latency_p999_ms=lat.get("p999", 0.0) / 1000,
        latency_max_ms=lat.get("max", 0.0) / 1000, **phase_fields(m.result),
        client_cpu_pct=round(load.client_pct, 1),
        server_cpu_s=round(m.server_cpu_s, 3),
        server_cpu_us_per_req=round(m.server_cpu_s / served * 1e6, 2) if served > 0 else 0.0,
        server_cpu_pct=round(load.server_pct, 1),
        connections_opened=window if window >= 0 else opened, connections_opened_run=opened,
        requests_per_connection=round(served / opened, 2) if opened > 0 else 0.0,
        peak_open_connections=int(m.after.get("connections_peak_open", 0)),
        open_sockets=sockets.established_server, time_wait_sockets=m.end_sockets.time_wait,
        client_bound=int(
            validity.is_client_bound(
                load.client_pct + (load.relay_pct or 0.0), load.client_core_busy_pct
            )
        ),
        relay_cpu_pct=round(load.relay_pct, 1) if load.relay_pct is not None else None,
        valid=int(verdict.valid and status == "ok"), status=status, note="; ".join(notes),
        **link_fields(m.link),
    )  # fmt: skip


def phase_fields(result: ClientResult) -> dict[str, Any]:
    """connect_p50_ms, tls_p50_ms, ttfb_p50_ms: the client's medians, empty where it cannot
    tell (benchmarks.clients.shared.Phase values are the keys)."""
    p50 = result.phases_p50_us
    return {
        f"{phase}_p50_ms": p50[phase] / 1000 if phase in p50 else None
        for phase in ("connect", "tls", "ttfb")
    }


def link_fields(link: LinkStats | None) -> dict[str, Any]:
    """The link columns: the relay's figures, or empty on loopback."""
    if link is None:
        return {
            k: None
            for k in ("link_lateness_p50_us", "link_lateness_p99_us", "link_packets", "link_drops")
        }
    return dict(
        link_lateness_p50_us=link.lateness_p50_us,
        link_lateness_p99_us=link.lateness_p99_us,
        link_packets=link.packets,
        link_drops=link.drops,
    )
