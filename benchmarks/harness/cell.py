"""One cell: start the server, make sure it is ours, run the client, measure, stop everything.

`run_cell` always returns a row: a failure (server that does not start or dies, client that
crashes or hangs, ports exhausted) becomes `status` + `note`, never an exception, so the other
cells still run. Only KeyboardInterrupt (Ctrl-C, SIGTERM) escapes, after the `finally` has stopped
the client tree and the server.
"""

from __future__ import annotations

import re
import ssl
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from benchmarks.clientspec import ClientConfig, ClientResult
from benchmarks.harness import rules
from benchmarks.harness.config import Cell, RunConfig
from benchmarks.harness.fingerprint import Fingerprint
from benchmarks.harness.monitor import ControlClient, ControlError, Monitor, load_stats
from benchmarks.harness.procs import ClientProcess, Cores, deferred_signals, last_line
from benchmarks.harness.results import keep_artifacts, utc_iso
from benchmarks.harness.sockets import (
    counters_delta,
    format_counters,
    kernel_counters,
    socket_counts,
)
from benchmarks.schema import SCHEMA_VERSION, ResultRow
from servers.launch import ServerProcess, ServerStartError
from servers.options import OptionsError, ServerOptions

PORTS_EXHAUSTED = re.compile(r"EADDRNOTAVAIL|Cannot assign requested address|errno 99\b", re.I)


class CellFailure(Exception):
    """A cell that cannot produce a measurement: `status` for the CSV, one-line `message`."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
class CellOutcome:
    row: ResultRow
    histogram: str | None  # encoded HdrHistogram of the window, for merged summary percentiles
    wall_s: float


def run_cell(cell: Cell, ctx: CellContext) -> CellOutcome:
    started, t0 = utc_iso(), time.monotonic()
    try:
        row, hist = _measure(cell, ctx, started)
    except CellFailure as failure:
        row, hist = failed_row(cell, ctx, started, failure.status, failure.message), None
    except Exception as exc:  # a harness bug must cost one cell, not the run
        message = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        row, hist = failed_row(cell, ctx, started, "harness-error", message), None
    return CellOutcome(row, hist, time.monotonic() - t0)


def _measure(cell: Cell, ctx: CellContext, started: str) -> tuple[ResultRow, str | None]:
    cfg = ctx.config
    try:
        options = ServerOptions(
            name=cell.server, keepalive_timeout_s=cell.keepalive_timeout_s,
            keepalive_max=cell.keepalive_max, tls=cfg.tls,
        )  # fmt: skip
    except OptionsError as exc:
        raise CellFailure("config", str(exc)) from None
    server_log = ctx.artifacts / f"{cell.slug}.server.log"
    client_log = ctx.artifacts / f"{cell.slug}.client.log"
    output = ctx.artifacts / f"{cell.slug}.json"
    core = ctx.cores.server if ctx.cores.pinned else None
    client: ClientProcess | None = None
    monitor: Monitor | None = None
    control: ControlClient | None = None
    with server_log.open("wb") as slog, client_log.open("wb") as clog:
        server = ServerProcess(options, stderr=slog, cpu=core)
        try:
            try:
                ready = server.start()
            except (ServerStartError, OSError) as exc:
                detail = last_line(server_log)
                raise CellFailure(
                    "server-start", f"{exc}{': ' + detail if detail else ''}"
                ) from None
            assert server.proc is not None
            control = ControlClient(ready.control_url)
            verify_identity(server, control, ready.url, ready.ca_path, cell.server.value)

            before = control.counters()
            try:
                proc_server = psutil.Process(server.proc.pid)
                cpu0 = _cpu(proc_server)
            except psutil.Error:
                raise CellFailure(
                    "server-died", f"{cell.server} server exited before the client ran"
                ) from None
            kern0 = kernel_counters() if ctx.netns else {}
            client_cfg = ClientConfig(
                kind=cell.client, url=ready.url, mode=cell.mode, concurrency=cell.concurrency,
                duration_s=cfg.duration_s, output=output, warmup_s=cfg.warmup_s,
                ca_path=ready.ca_path, workers=cfg.workers,
            )  # fmt: skip
            t_start = time.monotonic()
            try:
                client = ClientProcess(client_cfg.command(), core=ctx.cores.client, log=clog)
            except OSError as exc:
                raise CellFailure("client-crashed", f"{cell.client} did not start: {exc}") from None
            monitor = Monitor(
                server_pid=server.proc.pid, client=client, control=control, port=ready.port,
                snapshot_after_s=cfg.warmup_s + 0.8 * cfg.duration_s, server_alive=server.alive,
            )  # fmt: skip
            monitor.start()
            rc = client.wait(cfg.timeout_s)
            if rc is None:
                client.kill_tree()
            client_wall = time.monotonic() - t_start
            monitor.stop()

            if monitor.server_died or not server.alive():
                status = server.stop()
                raise CellFailure(
                    "server-died",
                    f"{cell.server} server exited with status {status} during the client run"
                    + (f": {last_line(server_log)}" if last_line(server_log) else ""),
                )
            after = control.counters()
            try:
                cpu1 = _cpu(proc_server)
            except psutil.Error:
                raise CellFailure(
                    "server-died", f"{cell.server} server exited after the run"
                ) from None
            kern1 = kernel_counters() if ctx.netns else {}
            end_sockets = socket_counts(ready.port)
            if rc is None:
                raise CellFailure(
                    "client-timeout",
                    f"{cell.client} still running after {cfg.timeout_s:g} s: killed",
                )
            try:
                result = ClientResult.read(output)
            except (OSError, ValueError, TypeError) as exc:
                why = last_line(client_log) or f"no result file ({type(exc).__name__})"
                raise CellFailure(
                    "client-crashed", f"{cell.client} exited with status {rc}: {why}"
                ) from None
            keep_artifacts(result.artifacts, ctx.artifacts, output.parent)
            row = measured_row(
                cell, ctx, started, result, before=before, after=after,
                server_cpu_s=cpu1 - cpu0, client_wall_s=client_wall, monitor=monitor,
                end_sockets=end_sockets, kernel=counters_delta(kern0, kern1) if kern1 else {},
                client_status=rc,
            )  # fmt: skip
            return row, result.histogram or None
        except ControlError as exc:
            raise CellFailure("server-control", str(exc)) from None
        finally:
            with deferred_signals():
                if monitor is not None:
                    monitor.stop()
                if client is not None:
                    client.kill_tree()
                if control is not None:
                    control.close()
                server.stop()


def verify_identity(
    server: ServerProcess, control: ControlClient, url: str, ca_path: Path | None, name: str
) -> None:
    """The port answers, and answers from the process we started: its control listener reports
    our child's pid, and one request on the main port moves that process's request counter."""
    assert server.proc is not None
    first = control.counters()
    if first.get("pid") != server.proc.pid or first.get("server") != name:
        raise CellFailure(
            "server-identity",
            f"control listener reports {first.get('server')} pid {first.get('pid')}, "
            f"but we started {name} pid {server.proc.pid}",
        )
    request = urllib.request.Request(url + "/", headers={"Connection": "close"})
    context = ssl.create_default_context(cafile=str(ca_path)) if ca_path else None
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            resp.read()
            status = resp.status
    except OSError as exc:
        raise CellFailure("server-identity", f"{url}/ did not answer: {exc}") from None
    if status != 200:
        raise CellFailure("server-identity", f"{url}/ answered {status}, expected 200")
    # Servers count a request once its response is written, possibly just after we read it.
    deadline = time.monotonic() + 2.0
    served = control.counters().get("requests_served")
    while served == first.get("requests_served") and time.monotonic() < deadline:
        time.sleep(0.02)
        served = control.counters().get("requests_served")
    if served != first.get("requests_served", 0) + 1:
        raise CellFailure(
            "server-identity",
            f"{url} is not served by pid {server.proc.pid} (its counter did not move)",
        )


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def base_fields(cell: Cell, ctx: CellContext, started: str) -> dict[str, Any]:
    fp = ctx.fingerprint
    return dict(
        schema_version=SCHEMA_VERSION, run_id=ctx.run_id, started_utc=started,
        git_commit=fp.git_commit, host_id=fp.host_id, cpu_model=fp.cpu_model,
        cpu_count=fp.cpu_count, kernel=fp.kernel, python_version=fp.python_version,
        packages=fp.packages, server=cell.server.value, client=cell.client.value,
        mode=cell.mode.value, tls=int(ctx.config.tls), concurrency=cell.concurrency,
        keepalive_timeout_s=cell.keepalive_timeout_s, keepalive_max=cell.keepalive_max,
        duration_s=ctx.config.duration_s, repetition=cell.repetition,
        server_core=ctx.cores.server, client_core=ctx.cores.client,
    )  # fmt: skip


ZERO_RESULTS: dict[str, Any] = dict(
    requests=0, errors=0, throughput_rps=0.0, latency_p50_ms=0.0, latency_p90_ms=0.0,
    latency_p99_ms=0.0, latency_p999_ms=0.0, latency_max_ms=0.0, client_cpu_pct=0.0,
    server_cpu_s=0.0, server_cpu_us_per_req=0.0, server_cpu_pct=0.0, connections_opened=0,
    requests_per_connection=0.0, peak_open_connections=0, open_sockets=0, time_wait_sockets=0,
    client_bound=0,
)  # fmt: skip


def failed_row(cell: Cell, ctx: CellContext, started: str, status: str, message: str) -> ResultRow:
    return ResultRow(
        **base_fields(cell, ctx, started), **ZERO_RESULTS, valid=0, status=status, note=message
    )


def measured_row(
    cell: Cell,
    ctx: CellContext,
    started: str,
    result: ClientResult,
    *,
    before: dict[str, Any],
    after: dict[str, Any],
    server_cpu_s: float,
    client_wall_s: float,
    monitor: Monitor,
    end_sockets: Any,
    kernel: dict[str, int],
    client_status: int,
) -> ResultRow:
    """Turn the client's result, the server's counters and the samples into a row."""
    served = int(after["requests_served"]) - int(before["requests_served"])
    opened = int(after["connections_accepted"]) - int(before["connections_accepted"])
    notes: list[str] = []
    stats = load_stats(monitor.samples)
    client_cores = 1 if ctx.cores.pinned else max(len(psutil.Process().cpu_affinity() or [1]), 1)
    if stats is not None:
        server_pct = stats.server_cpu_pct
        client_pct = rules.client_cpu_pct(
            stats.client_tree_pct, stats.client_max_proc_pct, client_cores
        )
        if ctx.cores.pinned:
            contention = rules.contention_note(
                ctx.cores, stats.core_busy_pct, server_pct, stats.client_tree_pct
            )
            if contention:
                notes.append(contention)
    else:
        last = monitor.samples[-1].client_cpu_s if monitor.samples else 0.0
        server_pct = server_cpu_s / client_wall_s * 100.0 if client_wall_s > 0 else 0.0
        client_pct = rules.client_cpu_pct(
            last / client_wall_s * 100.0 if client_wall_s > 0 else 0.0, 0.0, client_cores
        )
        notes.append("cpu % over the whole client run (load period too short to sample)")
    verdict = rules.judge(
        mode=cell.mode, concurrency=cell.client.connections(cell.concurrency),
        load_processes=result.load_processes,
        keepalive_timeout_s=cell.keepalive_timeout_s, keepalive_max=cell.keepalive_max,
        requests=result.requests, errors=result.errors, requests_total=result.requests_total,
        connections_opened=opened, requests_served=served,
        peak_open_connections=int(after.get("connections_peak_open", 0)),
    )  # fmt: skip
    status = "ok"
    exhausted = sum(n for kind, n in result.error_kinds.items() if PORTS_EXHAUSTED.search(kind))
    if exhausted:
        status = "ports-exhausted"
        notes.insert(
            0, f"{exhausted} connects failed with EADDRNOTAVAIL (ephemeral ports exhausted)"
        )
    if verdict.reason:
        notes.insert(0, verdict.reason)
    if result.error_kinds:
        notes.append(
            "errors: " + ", ".join(f"{k}={v}" for k, v in sorted(result.error_kinds.items()))
        )
    sockets = monitor.sockets or end_sockets
    notes.append(
        f"time_wait server={end_sockets.time_wait_server} client={end_sockets.time_wait_client}"
    )
    notes.append(f"client sent {result.requests_total} in {result.load_processes} process(es)")
    if cell.client.is_locust and ctx.config.workers > 1:
        notes.append(f"locust workers {ctx.config.workers}")
    if kernel:
        notes.append(format_counters(kernel))
    if client_status != 0:
        notes.append(f"client exit status {client_status}")
    lat = result.latency_us
    base = base_fields(cell, ctx, started)
    base["duration_s"] = round(result.elapsed_s, 3)  # the window the client actually measured
    return ResultRow(
        **base,
        requests=result.requests, errors=result.errors,
        throughput_rps=round(result.throughput_rps, 1),
        latency_p50_ms=lat.get("p50", 0.0) / 1000, latency_p90_ms=lat.get("p90", 0.0) / 1000,
        latency_p99_ms=lat.get("p99", 0.0) / 1000, latency_p999_ms=lat.get("p999", 0.0) / 1000,
        latency_max_ms=lat.get("max", 0.0) / 1000, client_cpu_pct=round(client_pct, 1),
        server_cpu_s=round(server_cpu_s, 3),
        server_cpu_us_per_req=round(server_cpu_s / served * 1e6, 2) if served > 0 else 0.0,
        server_cpu_pct=round(server_pct, 1), connections_opened=opened,
        requests_per_connection=round(served / opened, 2) if opened > 0 else 0.0,
        peak_open_connections=int(after.get("connections_peak_open", 0)),
        open_sockets=sockets.established_server, time_wait_sockets=end_sockets.time_wait,
        client_bound=int(rules.is_client_bound(client_pct)),
        valid=int(verdict.valid and status == "ok"), status=status, note="; ".join(notes),
    )  # fmt: skip
