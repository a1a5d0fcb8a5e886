"""One cell: start the server, make sure it is ours, run the client, measure, stop everything.

`run_cell` always returns a row: a failure (server that does not start or dies, client that
crashes or hangs, ports exhausted) becomes `status` + `note`, never an exception, so the other
cells still run. Only KeyboardInterrupt (Ctrl-C, SIGTERM) escapes, after the `finally` has stopped
the client tree and the server. One failure stops the run instead: a full results disk
(`disk-full`), which every later cell would hit too; its row says so rather than the symptom
(a client that "crashed" because it could not write its result).
"""

from __future__ import annotations

import contextlib
import math
import ssl
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import psutil

from benchmarks.clients.contract import ClientConfig, ClientResult
from benchmarks.harness.config import Cell
from benchmarks.harness.monitor import Monitor
from benchmarks.harness.procs import (
    ClientProcess,
    ServerCpu,
    deferred_signals,
    last_line,
    read_result,
    start_client,
)
from benchmarks.harness.rows import CellContext, Measurement, failed_row, measured_row
from benchmarks.harness.sockets import (
    PROC_NET,
    SocketCounts,
    counters_delta,
    kernel_counters,
    socket_counts,
)
from benchmarks.harness.target import KernelWatch, TargetCommand, TargetServer, check_answers
from benchmarks.matrix import CellKey, Reach
from benchmarks.net.cli import start_server
from benchmarks.net.line import DelayLine
from benchmarks.net.netns import NetError
from benchmarks.net.spec import LinkSpec
from benchmarks.records.layout import (
    NO_SPACE_TEXT,
    free_space,
    keep_artifacts,
    no_space_in,
    no_space_left,
    remove_client_leftovers,
    utc_iso,
)
from benchmarks.records.schema import ResultRow
from servers.launch import (
    ChildServer,
    ControlClient,
    ControlError,
    ReadyInfo,
    ServerProcess,
    ServerStartError,
    pid_alive,
    server_command,
)
from servers.options import OptionsError, ServerOptions


class CellFailure(Exception):
    """A cell that cannot produce a measurement: `status` for the CSV, one-line `message`."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


DISK_FULL = "disk-full"


@dataclass(frozen=True)
class CellOutcome:
    row: ResultRow
    histogram: str | None  # encoded HdrHistogram of the window, for merged summary percentiles
    wall_s: float
    stop: str = ""  # why the run must stop after this cell (the results disk is full), or ""


def run_cell(cell: Cell, ctx: CellContext) -> CellOutcome:
    started, t0 = utc_iso(), time.monotonic()
    try:
        row, hist = _measure(cell, ctx, started)
        return CellOutcome(row, hist, time.monotonic() - t0)
    except CellFailure as failure:
        status, message = failure.status, failure.message
    except Exception as exc:  # a harness bug (or a full disk: OSError ENOSPC) costs one cell
        status, message = "harness-error", f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
    full = results_disk_full(ctx.artifacts, CellFiles.of(cell, ctx.artifacts), message)
    if full:
        status, message = DISK_FULL, f"{full}; the cell failed as {status}: {message}"
    row = failed_row(cell, ctx, started, status, message)
    return CellOutcome(row, None, time.monotonic() - t0, stop=full)


def results_disk_full(folder: Path, files: CellFiles, message: str) -> str:
    """`results disk full: No space left on device (<folder>: 12 KiB free)` when a failed cell's
    results disk is full now, or the failure (its message, the end of its logs) says it was;
    else "". The client's own last line rarely says it (`pyperf worker failed`), and its log may
    be empty: it is on the full disk."""
    found = NO_SPACE_TEXT.search(message)
    why = (
        no_space_left(folder)
        or (found.group(0) if found else "")
        or no_space_in(files.client_log)
        or no_space_in(files.server_log)
    )
    return f"results disk full: {why} ({folder}: {free_space(folder)})" if why else ""


def _measure(cell: Cell, ctx: CellContext, started: str) -> tuple[ResultRow, str | None]:
    if cell.is_target:
        return _measure_target(cell, ctx, started)
    try:
        options = ServerOptions(**cell.options(Reach.SERVER))
    except OptionsError as exc:
        raise CellFailure("config", str(exc)) from None
    files = CellFiles.of(cell, ctx.artifacts)
    with (
        files.server_log.open("wb") as slog,
        files.client_log.open("wb") as clog,
        _network(cell.key, ctx) as line,
    ):
        core = ctx.cores.server if ctx.cores.pinned else None
        session = _Session(cell, ctx, files, _server(options, line, slog, core), clog, line)
        try:
            measurement = session.run()
        except ControlError as exc:
            raise CellFailure("server-control", str(exc)) from None
        except NetError as exc:
            raise CellFailure("delay-line", str(exc)) from None
        finally:
            with deferred_signals():
                session.stop()
                remove_client_leftovers(files.output)
    keep_artifacts(measurement.result.artifacts, ctx.artifacts, files.output.parent)
    row = measured_row(cell, ctx, started, measurement)
    return row, measurement.result.histogram or None


def link_spec(key: CellKey) -> LinkSpec | None:
    """The delay line a cell runs over (its rtt, loss and bandwidth), or None for loopback."""
    if key.rtt_ms is None:
        return None
    return LinkSpec(
        rtt_ms=key.rtt_ms, loss_pct=key.loss_pct, bandwidth_mbit=key.bandwidth_mbit or None
    )


@dataclass
class _Line:
    """A cell's delay line and the temporary folder of its server's control socket."""

    line: DelayLine
    folder: Path


@contextlib.contextmanager
def _network(key: CellKey, ctx: CellContext) -> Iterator[_Line | None]:
    """A delay line of its own for a cell with an rtt (relay pinned to the client's core, so
    its CPU is the client side's load), torn down with the cell; None on loopback."""
    spec = link_spec(key)
    if spec is None:
        yield None
        return
    relay_cpu = ctx.cores.client if ctx.cores.pinned else None
    try:
        with (
            tempfile.TemporaryDirectory(prefix="kab-ctl-") as tmp,
            DelayLine(spec, relay_cpu=relay_cpu) as line,
        ):
            yield _Line(line, Path(tmp))
    except NetError as exc:
        raise CellFailure("delay-line", str(exc)) from None


def _server(
    options: ServerOptions, net: _Line | None, log: IO[bytes], core: int | None
) -> ChildServer:
    """The cell's server: on 127.0.0.1, or in the line's server namespace on its address with
    its control listener on a Unix socket (reachable from this, the root, namespace)."""
    if net is None:
        return ServerProcess(options, stderr=log, cpu=core)
    options = replace(
        options, host=net.line.server.address, control_socket=net.folder / "control.sock"
    )
    command = net.line.server_cmd(server_command(options))  # `ip netns exec` execs: same pid
    return ChildServer(command, f"{options.name} server", stderr=log, cpu=core)


def _measure_target(cell: Cell, ctx: CellContext, started: str) -> tuple[ResultRow, str | None]:
    """A cell against `--target`: only the client is ours to start and stop. With
    `--target-command`, the command too, in the server namespace of the cell's delay line
    (which stops it with the line)."""
    target = ctx.config.target
    assert target is not None, "a target cell runs with --target or --target-command"
    files = CellFiles.of(cell, ctx.artifacts)
    with contextlib.ExitStack() as stack:
        clog = stack.enter_context(files.client_log.open("wb"))
        net = stack.enter_context(_network(cell.key, ctx))
        if isinstance(target, TargetCommand):
            assert net is not None, "config: a command target has an rtt"
            slog = stack.enter_context(files.server_log.open("w", buffering=1))
            target = _start_command(target, net.line, slog, files)
        session = _TargetSession(cell, ctx, files, target, clog, net)
        try:
            measurement = session.run()
        except NetError as exc:
            raise CellFailure("delay-line", str(exc)) from None
        finally:
            with deferred_signals():
                session.stop()
                remove_client_leftovers(files.output)
    keep_artifacts(measurement.result.artifacts, ctx.artifacts, files.output.parent)
    row = measured_row(cell, ctx, started, measurement)
    return row, measurement.result.histogram or None


def _start_command(
    command: TargetCommand, line: DelayLine, log: IO[str], files: CellFiles
) -> TargetServer:
    """The command in the line's server namespace (as `net run --server` starts it), listening,
    and answering one request from the client's namespace; CellFailure otherwise."""
    try:
        info = start_server(line, command.words, command.port, log)
    except (NetError, ServerStartError) as exc:
        detail = last_line(files.server_log)
        raise CellFailure("server-start", _with_detail(str(exc), detail)) from None
    assert info.pid is not None
    target = command.running(info.url, info.pid, info.ca_path)
    with line.inside(line.clients[0]):
        why = check_answers(target, started=True)
    if why is not None:
        raise CellFailure("server-start", why)
    return target


@dataclass(frozen=True)
class CellFiles:
    """A cell's logs and the client's result JSON, in the run's working folder (records.layout
    moves them into the run's bundle once the row is written)."""

    server_log: Path
    client_log: Path
    output: Path

    @classmethod
    def of(cls, cell: Cell, folder: Path) -> CellFiles:
        return cls(
            folder / f"{cell.slug}.server.log",
            folder / f"{cell.slug}.client.log",
            folder / f"{cell.slug}.json",
        )


def _with_detail(message: str, detail: str) -> str:
    return f"{message}: {detail}" if detail else message


def client_result(
    cell: Cell, timeout_s: float, files: CellFiles, status: int | None
) -> ClientResult:
    """The client's result file, or CellFailure saying why there is none (killed at the
    timeout, or crashed: its own last words). Both sessions, ours and a target's, read it so."""
    if status is None:
        raise CellFailure(
            "client-timeout", f"{cell.client} still running after {timeout_s:g} s: killed"
        )
    result = read_result(files.output, files.client_log)
    if isinstance(result, str):
        raise CellFailure("client-crashed", f"{cell.client} exited with status {status}: {result}")
    return result


class _Session:
    """The processes of one cell, in the order they start, are measured and stop.

    `run()` raises CellFailure for anything that prevents a measurement; `stop()` (always
    called, with signals held) stops whatever was started."""

    def __init__(
        self, cell: Cell, ctx: CellContext, files: CellFiles, server: ChildServer,
        client_log: IO[bytes], net: _Line | None = None,
    ) -> None:  # fmt: skip
        self.cell, self.ctx, self.files, self.server = cell, ctx, files, server
        self.client_log, self.net = client_log, net
        self.client: ClientProcess | None = None
        self.monitor: Monitor | None = None
        self.control: ControlClient | None = None

    def run(self) -> Measurement:
        ready = self._start_server()
        assert self.control is not None
        before = self.control.counters()
        proc, cpu0 = self._server_cpu(None, "before the client ran")
        exact = self.ctx.netns or self.net is not None  # the server's namespace is its own
        kern0 = kernel_counters(self._server_net()) if exact else {}
        status, wall, monitor = self._run_client(ready)
        self._check_server_survived(monitor)
        after = self.control.counters()
        _, cpu1 = self._server_cpu(proc, "after the run")
        kern1 = kernel_counters(self._server_net()) if exact else {}
        end_sockets = self._sockets(ready.port)
        link = self.net.line.stats() if self.net is not None else None
        return Measurement(
            self._read_result(status), before, after, cpu1 - cpu0, wall, monitor, end_sockets,
            counters_delta(kern0, kern1) if kern1 else {}, status or 0, link,
        )  # fmt: skip

    def _server_net(self) -> Path:
        """/proc/net as the server's namespace has it (its own on the delay line)."""
        if self.net is None or self.server.proc is None:
            return PROC_NET
        return Path(f"/proc/{self.server.proc.pid}/net")

    def _sockets(self, port: int) -> SocketCounts:
        """Sockets with the server port at one end: on the line, the server's side is in its
        namespace and the client's TIME_WAIT in the client's."""
        if self.net is None:
            return socket_counts(port)
        server = socket_counts(port, self._server_net())
        with self.net.line.inside(self.net.line.clients[0]):
            client = socket_counts(port, Path("/proc/thread-self/net"))
        return SocketCounts(
            server.established_server, server.time_wait_server, client.time_wait_client
        )

    def _inside_client(self) -> ContextManager[None]:
        """Sockets made in the body are the client namespace's (over the line), or ours."""
        if self.net is None:
            return contextlib.nullcontext()
        return self.net.line.inside(self.net.line.clients[0])

    def _start_server(self) -> ReadyInfo:
        try:
            ready = self.server.start()
        except (ServerStartError, OSError) as exc:
            detail = last_line(self.files.server_log)
            raise CellFailure("server-start", _with_detail(str(exc), detail)) from None
        self.control = ControlClient(ready.control_url, keep_alive=True)
        verify_identity(
            self.server, self.control, ready.url, ready.ca_path, self.cell.server.value,
            self._inside_client,
        )  # fmt: skip
        return ready

    def _server_cpu(self, proc: ServerCpu | None, when: str) -> tuple[ServerCpu, float]:
        assert self.server.proc is not None
        try:
            proc = proc or ServerCpu(psutil.Process(self.server.proc.pid))
            return proc, proc.cpu_s()
        except psutil.Error:
            raise CellFailure("server-died", f"{self.cell.server} server exited {when}") from None

    def _run_client(self, ready: ReadyInfo) -> tuple[int | None, float, Monitor]:
        """(exit status or None if it hung, wall seconds, the monitor that watched it)."""
        cfg, cell = self.ctx.config, self.cell
        assert self.server.proc is not None and self.control is not None
        client_cfg = ClientConfig(
            **cell.options(Reach.CLIENT), url=ready.url, duration_s=cfg.duration_s,
            output=self.files.output, warmup_s=cfg.warmup_s, ca_path=ready.ca_path,
            workers=cfg.workers,
        )  # fmt: skip
        command = client_cfg.command()
        if self.net is not None:
            command = self.net.line.client_cmd(command)
        t_start = time.monotonic()
        try:
            start_client(
                command, core=self.ctx.cores.client, log=self.client_log,
                started=self._adopt,
            )  # fmt: skip
        except OSError as exc:
            raise CellFailure("client-crashed", f"{cell.client} did not start: {exc}") from None
        assert self.client is not None
        self.monitor = Monitor(
            server_pid=self.server.proc.pid, client=self.client, control=self.control,
            port=ready.port, snapshot_after_s=cfg.warmup_s + 0.8 * cfg.duration_s,
            server_alive=self.server.alive, proc_net=self._server_net(),
            relay_pid=self.net.line.relay_pid if self.net is not None else None,
        )  # fmt: skip
        self.monitor.start()
        status = self.client.wait_or_kill(cfg.timeout_s)
        wall = time.monotonic() - t_start
        self.monitor.stop()
        return status, wall, self.monitor

    def _adopt(self, client: ClientProcess) -> None:
        """Called with signals held, right after the fork: from now on stop() kills it."""
        self.client = client

    def _check_server_survived(self, monitor: Monitor) -> None:
        if monitor.server_died or not self.server.alive():
            status = self.server.stop()
            message = f"{self.cell.server} server exited with status {status} during the client run"
            raise CellFailure(
                "server-died", _with_detail(message, last_line(self.files.server_log))
            )

    def _read_result(self, status: int | None) -> ClientResult:
        return client_result(self.cell, self.ctx.config.timeout_s, self.files, status)

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        if self.client is not None:
            self.client.kill_tree()
        if self.control is not None:
            self.control.close()
        self.server.stop()


def verify_identity(
    server: ChildServer, control: ControlClient, url: str, ca_path: Path | None, name: str,
    inside: Callable[[], ContextManager[None]] = contextlib.nullcontext,
) -> None:  # fmt: skip
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
        with inside(), urllib.request.urlopen(request, timeout=5, context=context) as resp:
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


class _TargetSession:
    """The client of one cell against an existing server, and what stands in for its counters:
    the client's own connection count, /proc/net/tcp by the target's port, the CPU of
    `--target-pid` (zero, and the row's CPU blank, without it). Over the delay line (a command
    target) the server's namespace is its own: its kernel counts the connections accepted
    (PassiveOpens) and its sockets, the clients run in the client namespace."""

    def __init__(
        self, cell: Cell, ctx: CellContext, files: CellFiles, target: TargetServer,
        client_log: IO[bytes], net: _Line | None = None,
    ) -> None:  # fmt: skip
        self.cell, self.ctx, self.files, self.target = cell, ctx, files, target
        self.client_log, self.net = client_log, net
        self.client: ClientProcess | None = None
        self.monitor: Monitor | None = None
        self.proc_net = PROC_NET if net is None else Path(f"/proc/{target.pid}/net")
        self.watch = KernelWatch(target.port, self.proc_net, namespace=net is not None)

    def run(self) -> Measurement:
        cpu = self._cpu(None, "before the client ran")
        cpu0 = cpu.cpu_s() if cpu is not None else 0.0
        kern0 = kernel_counters(self.proc_net) if self.net is not None else {}
        status, wall, monitor = self._run_client()
        if monitor.server_died:
            raise CellFailure("server-died", f"target pid {self.target.pid} exited during the run")
        cpu1 = self._cpu(cpu, "after the run")
        server_cpu = cpu1.cpu_s() - cpu0 if cpu1 is not None else math.nan
        kernel = counters_delta(kern0, kernel_counters(self.proc_net)) if kern0 else {}
        result = self._read_result(status)
        end_sockets = self._sockets()
        if result.connections_opened < 0:
            raise CellFailure("client-crashed", f"{self.cell.client} did not count connections")
        # the client's own count over the span of its requests_total, or the server
        # namespace's kernel over the client's whole run (the same span)
        accepted = kernel.get("PassiveOpens", result.connections_opened)
        before = {"connections_accepted": 0, "requests_served": 0}
        after = {
            "connections_accepted": accepted,
            "requests_served": result.requests_total,
            "connections_peak_open": self.watch.peak_open,
        }
        link = self.net.line.stats() if self.net is not None else None
        return Measurement(
            result, before, after, server_cpu, wall, monitor, end_sockets, kernel, status or 0,
            link,
        )  # fmt: skip

    def _sockets(self) -> SocketCounts:
        """As `_Session._sockets`: on the line, the server's side from its namespace and the
        client's TIME_WAIT from the client's."""
        if self.net is None:
            return socket_counts(self.target.port)
        server = socket_counts(self.target.port, self.proc_net)
        with self.net.line.inside(self.net.line.clients[0]):
            client = socket_counts(self.target.port, Path("/proc/thread-self/net"))
        return SocketCounts(
            server.established_server, server.time_wait_server, client.time_wait_client
        )

    def _cpu(self, cpu: ServerCpu | None, when: str) -> ServerCpu | None:
        if self.target.pid is None:
            return None
        try:
            cpu = cpu or ServerCpu(psutil.Process(self.target.pid))
            cpu.cpu_s()
            return cpu
        except psutil.Error:
            raise CellFailure("server-died", f"target pid {self.target.pid} gone {when}") from None

    def _alive(self) -> bool:
        return self.target.pid is None or pid_alive(self.target.pid)

    def _run_client(self) -> tuple[int | None, float, Monitor]:
        cfg, cell = self.ctx.config, self.cell
        client_cfg = ClientConfig(
            **cell.options(Reach.CLIENT), url=self.target.base_url, path=self.target.path,
            duration_s=cfg.duration_s, output=self.files.output, warmup_s=cfg.warmup_s,
            workers=cfg.workers, ca_path=self.target.ca_path, insecure=self.target.insecure,
        )  # fmt: skip
        command = client_cfg.command()
        if self.net is not None:
            command = self.net.line.client_cmd(command)
        t_start = time.monotonic()
        try:
            start_client(
                command, core=self.ctx.cores.client, log=self.client_log, started=self._adopt,
            )  # fmt: skip
        except OSError as exc:
            raise CellFailure("client-crashed", f"{cell.client} did not start: {exc}") from None
        assert self.client is not None
        self.monitor = Monitor(
            server_pid=self.target.pid, client=self.client, control=None, port=self.target.port,
            snapshot_after_s=cfg.warmup_s + 0.8 * cfg.duration_s, server_alive=self._alive,
            activity=self.watch.activity, proc_net=self.proc_net,
        )  # fmt: skip
        self.monitor.start()
        status = self.client.wait_or_kill(cfg.timeout_s)
        wall = time.monotonic() - t_start
        self.monitor.stop()
        return status, wall, self.monitor

    def _adopt(self, client: ClientProcess) -> None:
        self.client = client

    def _read_result(self, status: int | None) -> ClientResult:
        return client_result(self.cell, self.ctx.config.timeout_s, self.files, status)

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        if self.client is not None:
            self.client.kill_tree()
