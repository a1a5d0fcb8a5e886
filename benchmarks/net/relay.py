"""The relay: one process owns every TUN device of a line and forwards each packet after a delay.

`python -m benchmarks.net.relay --port NAME=ADDRESS ... --one-way-ms D [--loss-pct P] ...`

Each `--port` is a named namespace whose TUN device (also called NAME) the relay creates and
opens from inside it; ADDRESS is the IPv4 address that namespace owns. A packet read from any
device goes to the device whose namespace owns its destination address (a star: every client
reaches the server, and each other, through here), leaving at an absolute deadline:

    arrival (+ serialisation behind the destination's queue, with --bandwidth-mbit) + one-way delay

Deadlines live in one heap; the loop sleeps in select() until the earliest one (timer slack set
to 1 ns, so the kernel does not batch the wake-up) and never releases a packet before its
deadline: it checks the clock first. Lateness (actual release minus deadline) is recorded for
every packet in a 1 µs histogram.

Protocol: the first stdout line is `READY {json}` once every device exists; each line `stats`
on stdin is answered with a `STATS {json}` line; end of stdin (the owner died or is done) or
SIGTERM prints a final `STATS {json}` line and exits 0. SIGINT is ignored: the owner decides.
This module imports only the standard library, keeps its per-packet work small, and is the only
thing this process does.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
PR_SET_TIMERSLACK = 29
PR_SET_PDEATHSIG = 1
LATENESS_BUCKETS_US = 100_000  # later releases are counted in the last bucket; max is exact
READ_BATCH = 64
REALTIME_PRIORITY = 10


class Port:
    """One namespace's device: its fd, and the output queue and counters towards it."""

    __slots__ = (
        "name", "address", "fd", "busy_until", "backlog", "last_deadline",
        "received", "sent", "bytes_sent", "loss_drops", "queue_drops", "write_errors",
    )  # fmt: skip

    def __init__(self, name: str, address: str, fd: int) -> None:
        self.name = name
        self.address = address
        self.fd = fd
        self.busy_until = 0.0  # when the bottleneck towards this port finishes its last packet
        self.backlog: deque[float] = deque()  # finish times of packets still in that queue
        self.last_deadline = 0.0
        self.received = 0  # packets read from this device
        self.sent = 0  # packets written to this device
        self.bytes_sent = 0
        self.loss_drops = 0  # packets towards this device dropped at random
        self.queue_drops = 0  # ... dropped because its bottleneck queue was full
        self.write_errors = 0


class Histogram:
    """Lateness in whole microseconds; exact percentiles without keeping every sample."""

    def __init__(self) -> None:
        self.counts = [0] * (LATENESS_BUCKETS_US + 1)
        self.total = 0
        self.max_us = 0.0

    def record(self, late_s: float) -> None:
        us = late_s * 1e6
        self.counts[min(int(us), LATENESS_BUCKETS_US)] += 1
        self.total += 1
        if us > self.max_us:
            self.max_us = us

    def percentile(self, q: float) -> int | None:
        if not self.total:
            return None
        rank = max(1, round(q / 100 * self.total))
        seen = 0
        for us, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return us
        return LATENESS_BUCKETS_US


class Relay:
    """The forwarding loop and its state."""

    def __init__(self, ports: list[Port], args: argparse.Namespace) -> None:
        self.ports = ports
        self.by_address = {socket.inet_aton(p.address): p for p in ports}
        self.by_fd = {p.fd: p for p in ports}
        self.one_way_s = args.one_way_ms / 1e3
        self.jitter_s = args.jitter_ms / 1e3
        self.loss = args.loss_pct / 100
        self.rate_bps = args.bandwidth_mbit * 1e6 if args.bandwidth_mbit else 0.0
        self.queue_limit = args.queue_packets
        self.rng = random.Random(args.seed)
        self.heap: list[tuple[float, int, Port, bytes]] = []
        self.seq = 0
        self.unroutable = 0
        self.lateness = Histogram()
        self.started = time.monotonic()
        self.cpu0 = os.times()
        self.read_size = args.mtu + 64
        self.spin_s = args.spin_us / 1e6

    def intake(self, pkt: bytes, now: float) -> None:
        """Schedule one packet read at `now`, or count why it is dropped."""
        dst = self.by_address.get(pkt[16:20]) if len(pkt) >= 20 and pkt[0] >> 4 == 4 else None
        if dst is None:
            self.unroutable += 1
            return
        base = now
        if self.rate_bps:
            backlog = dst.backlog
            while backlog and backlog[0] <= now:
                backlog.popleft()
            if len(backlog) >= self.queue_limit:
                dst.queue_drops += 1
                return
            base = max(now, dst.busy_until) + len(pkt) * 8 / self.rate_bps
            dst.busy_until = base
            backlog.append(base)
        if self.loss and self.rng.random() < self.loss:
            dst.loss_drops += 1  # lost on the wire, after the bottleneck
            return
        deadline = base + self.one_way_s
        if self.jitter_s:
            deadline += self.rng.uniform(-self.jitter_s, self.jitter_s)
            deadline = max(deadline, base)
        if deadline < dst.last_deadline:
            deadline = dst.last_deadline  # never overtake: no flow is reordered
        dst.last_deadline = deadline
        self.seq += 1
        heapq.heappush(self.heap, (deadline, self.seq, dst, pkt))

    def release_due(self) -> float:
        """Write every packet whose deadline has passed; returns the clock after the last one."""
        heap = self.heap
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            deadline, _, dst, pkt = heapq.heappop(heap)
            self.lateness.record(now - deadline)
            try:
                os.write(dst.fd, pkt)
            except OSError:
                dst.write_errors += 1
            else:
                dst.sent += 1
                dst.bytes_sent += len(pkt)
            now = time.monotonic()
        return now

    def read_ready(self, fd: int) -> None:
        src = self.by_fd[fd]
        now = time.monotonic()
        for _ in range(READ_BATCH):
            try:
                pkt = os.read(fd, self.read_size)
            except BlockingIOError:
                return
            src.received += 1
            self.intake(pkt, now)

    def stats(self) -> dict[str, Any]:
        """Counts, drops and lateness so far, and the relay's own CPU (it shares a core)."""
        cpu = os.times()
        hist = self.lateness
        return {
            "packets": sum(p.sent for p in self.ports),
            "received": sum(p.received for p in self.ports),
            "bytes": sum(p.bytes_sent for p in self.ports),
            "drops_loss": sum(p.loss_drops for p in self.ports),
            "drops_queue": sum(p.queue_drops for p in self.ports),
            "unroutable": self.unroutable,
            "write_errors": sum(p.write_errors for p in self.ports),
            "in_flight": len(self.heap),
            "lateness_p50_us": hist.percentile(50),
            "lateness_p99_us": hist.percentile(99),
            "lateness_max_us": round(hist.max_us, 1) if hist.total else None,
            "cpu_user_s": round(cpu.user - self.cpu0.user, 3),
            "cpu_system_s": round(cpu.system - self.cpu0.system, 3),
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "ports": {
                p.name: {
                    "address": p.address,
                    "received": p.received,
                    "sent": p.sent,
                    "drops_loss": p.loss_drops,
                    "drops_queue": p.queue_drops,
                }  # fmt: skip
                for p in self.ports
            },
        }

    def run(self) -> None:
        """Until stdin closes: release due packets, sleep until the next deadline or a packet."""
        fds = [*self.by_fd, sys.stdin.fileno()]
        stdin_fd = sys.stdin.fileno()
        heap = self.heap
        while True:
            now = self.release_due()
            timeout = None
            if heap:
                timeout = heap[0][0] - now - self.spin_s
                if timeout <= 0:  # within the spin margin: wait on the clock, not the kernel
                    while time.monotonic() < heap[0][0]:
                        pass
                    timeout = 0.0
            readable, _, _ = select.select(fds, [], [], timeout)
            for fd in readable:
                if fd == stdin_fd:
                    if not self.command(os.read(stdin_fd, 4096)):
                        return
                else:
                    self.read_ready(fd)

    def command(self, data: bytes) -> bool:
        """`stats` lines get a STATS line each; empty data (EOF) means stop."""
        if not data:
            return False
        for _ in range(data.count(b"stats")):
            emit("STATS", self.stats())
        return True


def emit(word: str, payload: dict[str, Any]) -> None:
    sys.stdout.write(f"{word} {json.dumps(payload)}\n")
    sys.stdout.flush()


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def open_tun(libc: ctypes.CDLL, name: str) -> int:
    """Create device `name` inside namespace `name` (entered with setns) and return its fd.

    The device is not persistent: it disappears when the fd closes, i.e. with this process.
    """
    here = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        ifr = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        return fd
    finally:
        libc.setns(here, CLONE_NEWNET)
        os.close(target)
        os.close(here)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks.net.relay")
    parser.add_argument("--port", action="append", required=True, metavar="NAME=ADDRESS")
    parser.add_argument("--one-way-ms", type=float, required=True)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--loss-pct", type=float, default=0.0)
    parser.add_argument("--bandwidth-mbit", type=float, default=None)
    parser.add_argument("--queue-packets", type=int, default=64)
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--spin-us", type=float, default=0.0)
    parser.add_argument("--realtime", action="store_true")
    return parser.parse_args(argv)


def set_realtime() -> bool:
    """SCHED_FIFO, so the relay is not queued behind the client or server sharing its core.

    Under CFS on a busy machine a wake-up waits up to a scheduler tick (4 ms here): that was the
    p99 lateness. A real network does not wait for a host's CPU. The kernel's RT throttling
    (95% per second by default) keeps even a runaway relay from taking the whole core.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    except (OSError, AttributeError):
        return False
    return True


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)
    libc = _libc()
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    realtime = args.realtime and set_realtime()
    ports = []
    try:
        for spec in args.port:
            name, address = spec.split("=", 1)
            ports.append(Port(name, address, open_tun(libc, name)))
    except OSError as exc:
        sys.stderr.write(f"relay: cannot open a TUN device: {exc}\n")
        return 1
    relay = Relay(ports, args)
    emit("READY", {"pid": os.getpid(), "ports": [p.name for p in ports], "realtime": realtime})
    try:
        relay.run()
    finally:
        emit("STATS", relay.stats())
    return 0


if __name__ == "__main__":
    sys.exit(main())
