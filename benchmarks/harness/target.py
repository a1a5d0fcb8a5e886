"""`--target URL`: the matrix's clients against a server the harness did not start.

Such a server has no control listener, so what our servers count is counted elsewhere:
connections by the clients themselves (`ClientResult.connections_opened`), connections open at
once from the kernel (`/proc/net/tcp` by the target's port, server end), the server's CPU from
`--target-pid` (the process and the children it has, e.g. nginx's workers; none without it).
Load goes to loopback only (the developers' guide: never elsewhere): any other host is refused
before anything connects.
"""

from __future__ import annotations

import ipaddress
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import psutil

from benchmarks.common import UsageError, split_http_url
from benchmarks.harness.sockets import socket_counts

LOCALHOST = "localhost"


@dataclass(frozen=True)
class TargetServer:
    """The existing server every cell measures: its URL split, and the pid to measure if any."""

    url: str  # as given: the row's target_url
    scheme: str
    host: str
    port: int
    path: str  # request target the clients send
    pid: int | None = None

    @property
    def base_url(self) -> str:
        """scheme://host:port, what a client's --url takes (the path goes separately)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or `localhost` (which resolves to them); names are not resolved, so
    nothing here depends on what a DNS server answers."""
    if host.lower() == LOCALHOST:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_target(url: str, pid: int | None) -> TargetServer:
    """The validated target; UsageError (one line) for a bad URL, a host that is not loopback
    or a pid that does not exist."""
    try:
        scheme, host, port, path = split_http_url(url)
    except UsageError as exc:
        raise UsageError(f"--target: {exc}") from None
    if not is_loopback(host):
        raise UsageError(
            f"--target: {host} is not a loopback address: the suite loads only 127.0.0.1, ::1 "
            "or localhost (run the server on a loopback port)"
        )
    if pid is not None and not (pid > 0 and psutil.pid_exists(pid)):
        raise UsageError(f"--target-pid: no process {pid}")
    return TargetServer(url.strip(), scheme, host, port, path, pid)


def check_answers(target: TargetServer, timeout_s: float = 5.0) -> str | None:
    """Why the target cannot be measured (one line), or None: it must answer one request over
    HTTP, any status (the rows count 4xx/5xx as errors), and a `--target-pid` must be the
    process, or a parent of the process, that listens on its port."""
    request = urllib.request.Request(target.base_url + target.path, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            resp.read()
    except urllib.error.HTTPError:
        pass  # it answered
    except (OSError, ValueError) as exc:
        return f"--target {target.url} did not answer: {getattr(exc, 'reason', exc)}"
    if target.pid is not None and not listens_on(target.pid, target.port):
        return f"--target-pid {target.pid}: it and its children do not listen on {target.port}"
    return None


def listens_on(pid: int, port: int) -> bool:
    """The process or one of its children has a listening socket on `port`."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return False
    for proc in procs:
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns):
            return True
    return False


@dataclass
class KernelWatch:
    """The monitor's view of a target, from /proc/net/tcp: `activity()` stands in for a
    server's request counter (it moves in every sample with a client connection to the port,
    so CPU % is taken over the intervals with traffic, as for our servers), and the most client
    connections seen at once (in any state but TIME_WAIT: an unpooled one is mostly connecting
    or closing) is the row's peak. Loopback: the clients' ends are in this namespace too."""

    port: int
    peak_open: int = 0
    _ticks: int = field(default=0, repr=False)

    def activity(self) -> int:
        held = socket_counts(self.port).held_client
        self.peak_open = max(self.peak_open, held)
        if held:
            self._ticks += 1
        return self._ticks
