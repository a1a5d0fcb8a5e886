"""`DelayLine`: namespaces, TUN devices and the relay, as one context manager.

    spec = LinkSpec(rtt_ms=50, loss_pct=1)
    with DelayLine(spec) as line:
        server = line.spawn(line.server, ["python", "-m", "servers", "uvloop", "--host",
                            line.server.address], stdout=subprocess.PIPE)
        subprocess.run(line.client_cmd(["curl", "http://198.18.0.2:PORT/"]))
        print(line.stats().lateness_p99_us)

On entry: stale namespaces of dead owners are removed, then a server namespace and
`spec.clients` client namespaces are created, the relay starts and creates their devices, and
each namespace gets its address, its MTU and one route (198.18.0.0/15 through its device).
On exit, whatever way it is left: processes started with `spawn` are stopped (their whole
process group), the relay is stopped (its final statistics kept in `final_stats`), the
namespaces are deleted, and their devices vanish with the relay's fds.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.net import netns
from benchmarks.net.netns import NetError
from benchmarks.net.spec import LINE_PREFIX, SERVER_ADDRESS, LinkSpec, client_address

RELAY_READY_TIMEOUT_S = 10.0
STATS_TIMEOUT_S = 5.0
STOP_GRACE_S = 5.0
# The kernel's queue in front of each TUN device (packets waiting for the relay to read them):
# deep enough that bursts wait rather than vanish where the relay cannot count them.
TUN_TXQUEUELEN = 10_000

_in_use: set[int] = set()  # sequence numbers of this process's open lines (a letter in names)


@dataclass(frozen=True)
class Endpoint:
    """One namespace of the line: its name (also its device's) and its address."""

    name: str
    address: str


@dataclass(frozen=True)
class LinkStats:
    """The relay's figures for the line so far (see benchmarks.net.relay.Relay.stats)."""

    packets: int
    received: int
    drops_loss: int
    drops_queue: int
    unroutable: int
    lateness_p50_us: int | None
    lateness_p99_us: int | None
    lateness_max_us: float | None
    cpu_s: float
    elapsed_s: float
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LinkStats:
        return cls(
            packets=raw["packets"],
            received=raw["received"],
            drops_loss=raw["drops_loss"],
            drops_queue=raw["drops_queue"],
            unroutable=raw["unroutable"],
            lateness_p50_us=raw["lateness_p50_us"],
            lateness_p99_us=raw["lateness_p99_us"],
            lateness_max_us=raw["lateness_max_us"],
            cpu_s=raw["cpu_user_s"] + raw["cpu_system_s"],
            elapsed_s=raw["elapsed_s"],
            raw=raw,
        )

    @property
    def drops(self) -> int:
        return self.drops_loss + self.drops_queue

    def summary(self) -> str:
        """The one line `net run` prints on stderr."""

        def us(value: float | None) -> str:
            return "-" if value is None else f"{value:,.0f} us"

        return (
            f"{self.packets:,} packets, {self.drops:,} drops ({self.drops_loss:,} loss, "
            f"{self.drops_queue:,} queue), lateness p50 {us(self.lateness_p50_us)} "
            f"p99 {us(self.lateness_p99_us)} max {us(self.lateness_max_us)}, "
            f"relay cpu {self.cpu_s:.2f} s in {self.elapsed_s:.1f} s"
        )


def _pdeathsig() -> None:
    netns.parent_death_signal(signal.SIGTERM)


class DelayLine:
    """A server namespace and client namespaces joined by the relay; see the module docstring.

    `relay_cpu` pins the relay to one core (the client's: its CPU is the client side's load).
    `realtime` runs it SCHED_FIFO (lateness p99 of tens of microseconds instead of a scheduler
    tick on a busy machine); `spin_us` busy-waits that long before each deadline (a few
    microseconds of lateness, paid in the relay's CPU).
    """

    def __init__(
        self,
        spec: LinkSpec,
        *,
        relay_cpu: int | None = None,
        realtime: bool = True,
        spin_us: float = 0.0,
    ) -> None:
        self.spec = spec
        self.relay_cpu = relay_cpu
        self.realtime = realtime
        self.spin_us = spin_us
        pid = os.getpid()
        self._seq = min(set(range(28)) - _in_use)
        self.server = Endpoint(netns.namespace_name(pid, self._seq, "s"), SERVER_ADDRESS)
        self.clients = [
            Endpoint(netns.namespace_name(pid, self._seq, f"c{i}"), client_address(i))
            for i in range(spec.clients)
        ]
        _in_use.add(self._seq)
        self.relay: subprocess.Popen[str] | None = None
        self.final_stats: LinkStats | None = None
        self.relay_realtime = False
        self._children: list[subprocess.Popen[Any]] = []
        self._created: list[str] = []

    @property
    def endpoints(self) -> list[Endpoint]:
        return [self.server, *self.clients]

    # -- lifetime ---------------------------------------------------------------------------

    def __enter__(self) -> DelayLine:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        netns.check_preconditions()
        netns.cleanup_stale()
        for ep in self.endpoints:
            if (netns.NETNS_DIR / ep.name).exists():
                netns.delete_namespace(ep.name)  # ours, from an earlier line of this process
            netns.create_namespace(ep.name)
            self._created.append(ep.name)
            # Before the device exists, so it starts without IPv6 (no router solicitations).
            netns.write_sysctl(ep.name, "net.ipv6.conf.default.disable_ipv6", "1")
        self._start_relay()
        for ep in self.endpoints:
            self._configure(ep)

    def _start_relay(self) -> None:
        argv = [sys.executable, "-m", "benchmarks.net.relay", *self.spec.relay_argv()]
        for ep in self.endpoints:
            argv += ["--port", f"{ep.name}={ep.address}"]
        if self.relay_cpu is not None:
            argv += ["--cpu", str(self.relay_cpu)]
        if self.realtime:
            argv.append("--realtime")
        if self.spin_us:
            argv += ["--spin-us", repr(self.spin_us)]
        self.relay = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop the relay
            preexec_fn=_pdeathsig,
        )
        word, ready = self._relay_line(RELAY_READY_TIMEOUT_S)
        if word != "READY":
            raise NetError(f"the relay did not start (it said {word!r})")
        self.relay_realtime = bool(ready.get("realtime"))

    def _relay_line(self, timeout_s: float) -> tuple[str, dict[str, Any]]:
        """The relay's next stdout line, as (word, payload).

        select() on a buffered pipe is safe here because the relay writes one line per request
        (READY once, then a STATS per `stats`): nothing ever waits in our buffer unseen.
        """
        assert self.relay is not None and self.relay.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.relay.stdout], [], [], 0.05)
            if ready:
                line = self.relay.stdout.readline()
                if not line:
                    break
                word, _, payload = line.partition(" ")
                return word, json.loads(payload) if payload.strip() else {}
            if self.relay.poll() is not None:
                break
        status = self.relay.poll()
        raise NetError("the relay exited" if status is not None else "the relay stopped answering")

    def _configure(self, ep: Endpoint) -> None:
        """Loopback up; the device up with its address, MTU and the one route of the line."""
        batch = "\n".join(
            [
                "link set lo up",
                f"link set {ep.name} mtu {self.spec.mtu} txqueuelen {TUN_TXQUEUELEN} up",
                f"addr add {ep.address}/32 dev {ep.name}",
                f"route add {LINE_PREFIX} dev {ep.name}",
            ]
        )
        netns.ip("-n", ep.name, "-batch", "-", stdin=batch + "\n")

    def close(self) -> None:
        """Stop everything and remove the namespaces; Ctrl-C and SIGTERM wait until it is done."""
        blocked = {signal.SIGINT, signal.SIGTERM}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            for child in reversed(self._children):
                _stop_group(child)
            self._children.clear()
            self._stop_relay()
            for name in reversed(self._created):
                with contextlib.suppress(NetError):
                    netns.delete_namespace(name)
            self._created.clear()
            _in_use.discard(self._seq)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _stop_relay(self) -> None:
        relay, self.relay = self.relay, None
        if relay is None:
            return
        try:
            # communicate() closes stdin: at its end the relay prints its final STATS and exits
            out, _ = relay.communicate(timeout=STOP_GRACE_S)
        except (subprocess.TimeoutExpired, OSError, ValueError):
            relay.kill()
            out, _ = relay.communicate()
        for line in out.splitlines():
            word, _, payload = line.partition(" ")
            if word == "STATS":
                self.final_stats = LinkStats.from_json(json.loads(payload))

    # -- using the line ---------------------------------------------------------------------

    def exec_argv(self, ep: Endpoint, argv: Sequence[str]) -> list[str]:
        """`argv` run inside `ep`'s namespace (for a caller that starts processes itself)."""
        return ["ip", "netns", "exec", ep.name, *argv]

    def server_cmd(self, argv: Sequence[str]) -> list[str]:
        return self.exec_argv(self.server, argv)

    def client_cmd(self, argv: Sequence[str], client: int = 0) -> list[str]:
        return self.exec_argv(self.clients[client], argv)

    def spawn(self, ep: Endpoint, argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """Start `argv` in `ep`'s namespace, in its own process group, stopped by `close`.

        It gets SIGTERM if this process dies (kill -9 included); what it spawns in turn is
        found by the next start's stale cleanup (`ip netns pids`).
        """
        proc = subprocess.Popen(
            self.exec_argv(ep, argv), start_new_session=True, preexec_fn=_pdeathsig, **popen
        )
        self._children.append(proc)
        return proc

    @contextlib.contextmanager
    def inside(self, ep: Endpoint) -> Iterator[None]:
        """This thread in `ep`'s namespace for the body; sockets made there stay there."""
        with netns.inside(ep.name):
            yield

    def connect(
        self, ep: Endpoint, address: tuple[str, int], timeout_s: float = 5.0
    ) -> socket.socket:
        """A TCP connection from `ep`'s namespace (a client's, or the server's own)."""
        with self.inside(ep):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout_s)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    def fetch(self, ep: Endpoint, url: str, timeout_s: float = 5.0) -> bytes:
        """GET `url` from inside `ep`'s namespace; the body (an error status raises NetError).

        This is how the root namespace reads a reference server's control listener (`control=`
        in its READY line: 198.18.0.2, unreachable from outside): fetched from the server's own
        namespace, it never crosses the relay, so it neither waits a round trip nor shows up in
        the link's packet counts.
        """
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout_s)
        try:
            with self.inside(ep):
                conn.connect()
            conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
            response = conn.getresponse()
            body = response.read()
        except OSError as exc:
            raise NetError(f"GET {url} from {ep.name}: {exc}") from None
        finally:
            conn.close()
        if response.status != 200:
            raise NetError(f"GET {url} from {ep.name}: status {response.status}")
        return body

    def proc_net(self, ep: Endpoint, name: str) -> str:
        """`/proc/net/NAME` of `ep`'s namespace (`snmp`: that namespace's own TCP counters).

        /proc/self/net follows the process's namespace, /proc/thread-self/net this thread's.
        """
        with self.inside(ep):
            return Path(f"/proc/thread-self/net/{name}").read_text()

    def sysctl(self, ep: Endpoint, key: str, value: str) -> None:
        """A per-namespace kernel setting, e.g. `net.ipv4.tcp_slow_start_after_idle`."""
        netns.write_sysctl(ep.name, key, value)

    def stats(self) -> LinkStats:
        """The relay's figures so far (after `close`, its final ones)."""
        if self.relay is None:
            if self.final_stats is None:
                raise NetError("the line is not running")
            return self.final_stats
        assert self.relay.stdin is not None
        self.relay.stdin.write("stats\n")
        self.relay.stdin.flush()
        while True:
            word, payload = self._relay_line(STATS_TIMEOUT_S)
            if word == "STATS":
                return LinkStats.from_json(payload)

    @property
    def relay_pid(self) -> int | None:
        return self.relay.pid if self.relay is not None else None


def _stop_group(proc: subprocess.Popen[Any], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group `spawn` made, SIGKILL after `grace_s`."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything of its group still left
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
