"""Server-side view for the Locust lab: samples a reference server once a second.

Locust only sees the client side: requests, latencies, failures. What keep-alive changes is on
the server: how many connections it accepts, how many requests each carries, why they end, how
many sockets wait in TIME_WAIT, and the CPU all of that costs. `ServerWatch` polls the server's
control URL (its counters), `/proc/net/tcp{,6}` and `psutil` on the server pid, keeps a short
history, and turns it into rows for the web UI's tab and series for the charts page.

No Locust import here: the sampling and the arithmetic are plain functions, testable without a
running load generator. Only a server on this machine gets TIME_WAIT and CPU numbers: a pid or
a port seen from another host would describe some unrelated local process.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

PROC_TCP_FILES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
TCP_TIME_WAIT = "06"
HISTORY = 900  # samples kept: 15 minutes at one a second
WINDOW_S = 3.0  # the "now" column: rates over the last few seconds, not one jittery interval
CONTROL_TIMEOUT_S = 2.0
# Always shown, even at zero: the reasons the keep-alive experiments are about.
CORE_REASONS = ("idle_timeout", "max_reached", "client_requested", "client_closed")


@dataclass(frozen=True)
class Sample:
    """One reading of the server: its counters plus what this machine sees of it."""

    t: float
    accepted: int
    open: int
    peak_open: int
    requests: int
    closed: dict[str, int]
    time_wait_server: int | None = None
    time_wait_client: int | None = None
    cpu_s: float | None = None  # user + system CPU seconds of the server process

    @classmethod
    def from_counters(cls, t: float, counters: dict[str, Any], **local: Any) -> Sample:
        return cls(
            t=t,
            accepted=int(counters["connections_accepted"]),
            open=int(counters["connections_open"]),
            peak_open=int(counters["connections_peak_open"]),
            requests=int(counters["requests_served"]),
            closed={str(k): int(v) for k, v in counters.get("closed", {}).items()},
            **local,
        )


def count_time_wait(port: int, files: Iterable[Path] = PROC_TCP_FILES) -> tuple[int, int]:
    """(server side, client side) TIME_WAIT sockets of `port`, from /proc/net/tcp{,6}.

    Whoever closes first keeps TIME_WAIT: the server side when the server ends connections
    (idle timeout, max requests, Connection: close answered), the client side otherwise.
    """
    server = client = 0
    for path in files:
        try:
            lines = path.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != TCP_TIME_WAIT:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                server += 1
            elif int(fields[2].rsplit(":", 1)[1], 16) == port:
                client += 1
    return server, client


def server_tcp_files(pid: int) -> tuple[Path, ...] | None:
    """/proc/PID/net/tcp{,6} when the server runs in another network namespace, else None.

    Over the delay line (`make ui RTT=50`) the server lives in a namespace of its own and this
    process in a client's: /proc/net shows only our namespace's sockets (the client side),
    /proc/PID/net the namespace of the server process, where its side's TIME_WAIT sockets are.
    """
    try:
        theirs = Path(f"/proc/{pid}/ns/net").stat().st_ino
        ours = Path("/proc/thread-self/ns/net").stat().st_ino
    except OSError:
        return None
    if theirs == ours:
        return None
    return (Path(f"/proc/{pid}/net/tcp"), Path(f"/proc/{pid}/net/tcp6"))


def is_local_host(host: str) -> bool:
    """True when `host` names this machine, so its pid and sockets are visible here."""
    try:
        addr = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return False
    if addr.is_loopback or addr.is_unspecified:
        return True
    local = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
    return str(addr) in local


def _rate(new: float, old: float, dt: float) -> float:
    return (new - old) / dt if dt > 0 else 0.0


def _ratio(requests: int, connections: int) -> str:
    """Requests per new connection; none opened means every request reused one."""
    if connections <= 0:
        return "all reused" if requests > 0 else "-"
    return f"{requests / connections:.1f}"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cpu_percent(new: Sample, old: Sample) -> float | None:
    if new.cpu_s is None or old.cpu_s is None:
        return None
    return 100.0 * _rate(new.cpu_s, old.cpu_s, new.t - old.t)


def derive(new: Sample, old: Sample) -> dict[str, Any]:
    """Rates between two samples: one point of the charts page's series."""
    dt = new.t - old.t
    reasons = sorted(set(new.closed) | set(old.closed))
    return {
        "t": round(new.t, 3),
        "conn_per_s": round(_rate(new.accepted, old.accepted, dt), 2),
        "req_per_s": round(_rate(new.requests, old.requests, dt), 2),
        "open": new.open,
        "req_per_conn": _ratio(new.requests - old.requests, new.accepted - old.accepted),
        "closed_per_s": {
            r: round(_rate(new.closed.get(r, 0), old.closed.get(r, 0), dt), 2) for r in reasons
        },
        "time_wait_server": new.time_wait_server,
        "time_wait_client": new.time_wait_client,
        "cpu_percent": _cpu_percent(new, old),
    }


def table_rows(latest: Sample, window: Sample, base: Sample) -> list[dict[str, str]]:
    """Rows of the web UI tab: each metric now (over the window) and since the test started."""
    now, total = derive(latest, window), derive(latest, base)
    rows = [
        ("Connections opened /s", _fmt(now["conn_per_s"]), str(latest.accepted - base.accepted)),
        ("Open connections", str(latest.open), f"peak {latest.peak_open} (server lifetime)"),
        ("Requests /s (server)", _fmt(now["req_per_s"]), str(latest.requests - base.requests)),
        ("Requests per new connection", now["req_per_conn"], total["req_per_conn"]),
    ]
    grew = {r for r, n in latest.closed.items() if n > base.closed.get(r, 0)}
    shown = [r for r in latest.closed if r in CORE_REASONS or r in grew]
    for reason in sorted(shown, key=lambda r: (r not in CORE_REASONS, r)):
        closed = latest.closed[reason] - base.closed.get(reason, 0)
        rows.append((f"Closed by {reason} /s", _fmt(now["closed_per_s"][reason]), str(closed)))
    rows += [
        ("TIME_WAIT on server port (server side)", _opt(latest.time_wait_server), "-"),
        ("TIME_WAIT on server port (client side)", _opt(latest.time_wait_client), "-"),
        ("Server CPU %", _fmt(now["cpu_percent"]), _fmt(total["cpu_percent"]) + " (average)"),
    ]
    return [{"metric": m, "now": n, "total": t} for m, n, t in rows]


def _opt(value: int | None) -> str:
    return "n/a" if value is None else str(value)


@dataclass
class ServerWatch:
    """Polls one server and keeps its recent history; thread- and greenlet-safe reads."""

    control_url: str
    server_port: int
    history: deque[Sample] = field(default_factory=lambda: deque(maxlen=HISTORY))
    base: Sample | None = None
    error: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.local = is_local_host(urlsplit(self.control_url).hostname or "")
        self._process: psutil.Process | None = None

    def _counters(self) -> dict[str, Any]:
        url = self.control_url.rstrip("/") + "/counters"
        with urllib.request.urlopen(url, timeout=CONTROL_TIMEOUT_S) as response:
            return json.load(response)

    def _cpu_s(self, pid: int) -> float | None:
        try:
            if self._process is None or self._process.pid != pid:
                self._process = psutil.Process(pid)
            times = self._process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return None

    def _time_wait(self, pid: int) -> tuple[int, int]:
        """(server side, client side); each from the namespace where that side's sockets are."""
        theirs = server_tcp_files(pid)
        if theirs is None:
            return count_time_wait(self.server_port)
        server, _ = count_time_wait(self.server_port, theirs)
        _, client = count_time_wait(self.server_port)
        return server, client

    def sample(self) -> Sample | None:
        """Take one reading; on failure keep the history and remember the error for the UI."""
        try:
            counters = self._counters()
        except (OSError, ValueError, KeyError) as exc:
            self.error = f"control URL {self.control_url}: {exc}"
            return None
        local: dict[str, Any] = {}
        if self.local:
            pid = int(counters.get("pid", 0))
            local["time_wait_server"], local["time_wait_client"] = self._time_wait(pid)
            local["cpu_s"] = self._cpu_s(pid)
        sample = Sample.from_counters(time.time(), counters, **local)
        with self._lock:
            self.error = ""
            self.history.append(sample)
            if self.base is None:
                self.base = sample
        return sample

    def mark_test_start(self) -> None:
        """ "Since test start" counts from the latest reading (taken before any new request)."""
        with self._lock:
            self.base = self.history[-1] if self.history else None

    def _window_start(self) -> Sample:
        latest = self.history[-1]
        return next((s for s in self.history if s.t >= latest.t - WINDOW_S), latest)

    def rows(self) -> list[dict[str, str]]:
        with self._lock:
            if not self.history or self.base is None:
                return [{"metric": "server", "now": self.error or "no reading yet", "total": ""}]
            rows = table_rows(self.history[-1], self._window_start(), self.base)
        if self.error:
            rows.insert(0, {"metric": "server", "now": self.error, "total": ""})
        return rows

    def series(self, last: int = 300) -> list[dict[str, Any]]:
        with self._lock:
            samples = list(self.history)[-(last + 1) :]
        return [derive(new, old) for old, new in zip(samples, samples[1:], strict=False)]

    def snapshot(self) -> dict[str, Any]:
        """The JSON behind the charts page and the tab: latest rows plus the rate series."""
        return {
            "control_url": self.control_url,
            "server_port": self.server_port,
            "local": self.local,
            "error": self.error,
            "rows": self.rows(),
            "series": self.series(),
        }
