"""What happens during a cell, sampled five times a second from a thread of the harness.

Each sample holds the server's request counter (from its control listener, over ONE persistent
connection opened before the kernel counters are read, so polling adds no TCP opens), the
server's CPU, the client tree's CPU, the harness's own CPU and every core's busy time (to see
load that is none of ours). CPU percentages are computed over the intervals in which
the server's request counter moved, so the client's interpreter start-up and imports (a second
of 100% CPU) do not make every client look client-bound. The monitor also
notices a server that died and stops the client at once instead of waiting for its timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.harness.procs import ClientProcess, ServerCpu, tree_cpu_s
from benchmarks.harness.sockets import PROC_NET, SocketCounts, socket_counts
from servers.launch import ControlClient, ControlError

INTERVAL_S = 0.2
MIN_INTERIOR = 5  # busy intervals (1 s) needed before edge intervals are dropped
# A load window starts when a process joins the client's tree (a pyperf worker, a Locust
# worker) and has started up (imports: seconds on a crowded machine); a short window may then
# end between two 5 Hz ticks. Against a target (no server counters: the peak of open
# connections is what the samples of /proc/net/tcp see), samples come every WINDOW_INTERVAL_S
# from a new process's appearance until WINDOW_START_S after the first sample with traffic
# (at most WINDOW_WAIT_S in all), so every window is sampled while it runs, whatever its
# length. Our servers count their own peak: their cells keep the 5 Hz timer alone.
WINDOW_START_S = 1.0
WINDOW_WAIT_S = 5.0
WINDOW_INTERVAL_S = 0.05


@dataclass(frozen=True)
class Sample:
    t: float  # monotonic seconds
    requests_served: int
    server_cpu_s: float
    client_cpu_s: float
    harness_cpu_s: float = 0.0  # this process, all threads (the monitor thread is most of it)
    core_busy_s: dict[int, float] = field(default_factory=dict)  # busy seconds of each CPU
    relay_cpu_s: float = 0.0  # the delay line's relay process (0 on loopback)


@dataclass(frozen=True)
class LoadStats:
    """CPU rates over the intervals in which the server served requests, % of one core."""

    seconds: float  # total length of those intervals
    server_cpu_pct: float
    client_tree_pct: float  # all client processes together
    harness_cpu_pct: float
    core_busy_pct: dict[int, float] = field(default_factory=dict)  # each CPU, all processes
    relay_cpu_pct: float = 0.0  # the delay line's relay, on the client's core


@dataclass
class Monitor:
    """Background sampler for one cell; `start()`, then `stop()` once the client has exited."""

    server_pid: int | None  # None: a target without --target-pid (its CPU reads 0)
    client: ClientProcess
    control: ControlClient | None  # None: `activity` counts instead (a target: KernelWatch)
    port: int
    snapshot_after_s: float  # take the /proc socket snapshot this long into the load period
    server_alive: Callable[[], bool]
    proc_net: Path = PROC_NET  # /proc/net of the server's namespace (its own on the delay line)
    activity: Callable[[], int] | None = None  # stands in for requests_served without control
    relay_pid: int | None = None  # the delay line's relay, sampled like the server
    samples: list[Sample] = field(default_factory=list)
    sockets: SocketCounts | None = None
    server_died: bool = False
    control_errors: int = 0  # polls that failed; the row's note says how many and why
    last_control_error: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        pid = self.server_pid
        self._server = ServerCpu(psutil.Process(pid)) if pid is not None else None
        relay = self.relay_pid
        self._relay = ServerCpu(psutil.Process(relay)) if relay is not None else None
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def failures_note(self) -> str:
        """Failed polls in one phrase (they leave gaps in the samples), empty when none."""
        if not self.control_errors:
            return ""
        return f"{self.control_errors} monitor poll(s) failed (last: {self.last_control_error})"

    def _requests(self) -> int:
        """The server's request counter, or the activity that stands in for it."""
        if self.control is None:
            assert self.activity is not None, "a monitor without control needs an activity"
            return self.activity()
        return int(self.control.counters()["requests_served"])

    def _run(self) -> None:
        client_cpu = 0.0
        load_start: float | None = None
        last_requests = -1
        members: set[int] = set()
        burst_until, waiting = 0.0, False  # dense sampling until; no traffic seen in it yet
        while not self._stop.is_set():
            if not self.server_alive():
                self.server_died = True
                self.client.kill_tree()
                return
            t = time.monotonic()
            try:
                requests = self._requests()
                server_cpu = self._server.cpu_s() if self._server is not None else 0.0
                relay_cpu = self._relay.cpu_s() if self._relay is not None else 0.0
            except (ControlError, psutil.Error, KeyError, TypeError, ValueError) as exc:
                self.control_errors += 1
                self.last_control_error = f"{type(exc).__name__}: {exc}"[:120]
                self._stop.wait(INTERVAL_S)
                continue
            tree = self.client.remember_tree()
            pids = {p.pid for p in tree}
            moved = 0 <= last_requests < requests
            if not pids <= members and self.control is None:  # a window will start: see
                burst_until, waiting = t + WINDOW_WAIT_S, True  # WINDOW_START_S
            elif waiting and moved:
                burst_until, waiting = min(burst_until, t + WINDOW_START_S), False
            members |= pids
            client_cpu = max(client_cpu, tree_cpu_s(tree))
            sample = Sample(
                t, requests, server_cpu, client_cpu, time.process_time(), core_busy(), relay_cpu
            )
            self.samples.append(sample)
            if moved and load_start is None:
                load_start = t
            last_requests = requests
            if (
                self.sockets is None
                and load_start is not None
                and t - load_start >= self.snapshot_after_s
            ):
                self.sockets = socket_counts(self.port, self.proc_net)
            interval = WINDOW_INTERVAL_S if t < burst_until else INTERVAL_S
            self._stop.wait(max(0.0, interval - (time.monotonic() - t)))


def core_busy() -> dict[int, float]:
    """Busy (non-idle) seconds of every CPU, to see what else ran on the server's and client's
    cores: on a shared machine a low client CPU % can mean "starved", not "idle"."""
    out = {}
    for n, t in enumerate(psutil.cpu_times(percpu=True)):
        out[n] = sum(t) - t.idle - getattr(t, "iowait", 0.0)
    return out


def busy_intervals(samples: list[Sample]) -> list[int]:
    """Indexes k of the intervals (k-1, k) in which the server's request counter moved.

    pyperf runs its workers one after another, each importing and calibrating before it sends a
    request: only intervals with traffic count, so a client saturated during its bursts is not
    averaged down by the pauses between them. When there are enough, intervals at the edge of
    a burst (partly idle) are dropped too."""
    moved = [
        k for k in range(1, len(samples))
        if samples[k].requests_served > samples[k - 1].requests_served
    ]  # fmt: skip
    moving = set(moved)
    interior = [k for k in moved if k - 1 in moving and k + 1 in moving]
    return interior if len(interior) >= MIN_INTERIOR else moved


def load_stats(samples: list[Sample]) -> LoadStats | None:
    """CPU rates over the intervals with traffic; None when there are fewer than two."""
    ks = busy_intervals(samples)
    if len(ks) < 2:
        return None
    seconds = sum(samples[k].t - samples[k - 1].t for k in ks)
    if seconds <= 0:
        return None

    def pct(value: Callable[[Sample], float]) -> float:
        return sum(value(samples[k]) - value(samples[k - 1]) for k in ks) / seconds * 100.0

    cores: dict[int, float] = {}
    for k in ks:
        a, b = samples[k - 1], samples[k]
        for n, busy in b.core_busy_s.items():
            if n in a.core_busy_s:
                cores[n] = cores.get(n, 0.0) + busy - a.core_busy_s[n]
    return LoadStats(
        seconds=seconds,
        server_cpu_pct=pct(lambda s: s.server_cpu_s),
        client_tree_pct=pct(lambda s: s.client_cpu_s),
        harness_cpu_pct=pct(lambda s: s.harness_cpu_s),
        core_busy_pct={n: busy / seconds * 100.0 for n, busy in cores.items()},
        relay_cpu_pct=pct(lambda s: s.relay_cpu_s),
    )
