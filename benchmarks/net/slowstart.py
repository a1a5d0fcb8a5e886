"""`python -m benchmarks net slowstart`: what TCP slow start costs a response, in round trips.

    python -m benchmarks net slowstart [--rtt 50] [--bandwidth 20] [--sizes 16384,65536,...]
                                       [--repeat 3] [--idle 1.5] [--cc cubic] [--csv PATH]

Loopback hides slow start: its round trip is 30 us, so however many round trips a response
needs, they cost nothing. Over the delay line each one costs the RTT. A uvloop server runs in
the server namespace; a raw-socket client in the client namespace asks `/bytes/N` and times the
request's write to the response's last byte on three kinds of connection:

- `new`: connected just before the request (the connect time is added: one more round trip);
  the server's congestion window starts at the initial window (10 segments, RFC 6928).
- `warm`: reused right after a warm-up response (the largest size asked), its window grown.
- `idle`: reused after the warm-up and `--idle` seconds of silence, longer than the
  retransmission timeout (at least 200 ms + RTT): with `net.ipv4.tcp_slow_start_after_idle` = 1
  (the default) Linux shrinks the window back to the initial one before sending again
  (RFC 2861); with 0 it keeps it.

The sysctl is set in the server namespace (the sender's window is what matters), once to 1 and
once to 0, and every kind of connection is measured under both. The sender's congestion control
is `--cc`: reno by default, the textbook's slow start (cubic's is the same plus HyStart, but a
namespace may only use the kernel's allowed list, here reno and bbr), and the kernel's
per-destination metrics cache is off (`tcp_no_metrics_save`), so no connection inherits the
previous one's slow-start threshold. The server's `cwnd` before and after each request and its
retransmissions come from `ss -ti` in the server namespace. The textbook column is the
classic model: the window starts at the measured one (10 on a new connection or after a
restart) and doubles every round trip until it fills the link, after which the rest leaves at
the link's rate; see `textbook_round_trips`.
"""

from __future__ import annotations

import argparse
import csv
import enum
import io
import math
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from benchmarks.clients.contract import write_atomic
from benchmarks.net.cli import Interrupted, raise_interrupted, start_server
from benchmarks.net.line import DelayLine
from benchmarks.net.netns import NetError
from benchmarks.net.spec import PRECISE_RTT_MS, LinkSpec
from servers.launch import ServerStartError

KIB = 1024
DEFAULT_SIZES = (16 * KIB, 64 * KIB, 256 * KIB, 1024 * KIB)
MAX_SIZE = 16 * KIB * KIB  # the reference servers' /bytes limit
MAX_REPEAT = 100
INITIAL_WINDOW = 10  # segments (RFC 6928); Linux's TCP_INIT_CWND
IP_TCP_HEADERS = 52  # IPv4 + TCP + timestamps: what a full segment adds on the wire
SETTINGS = (1, 0)  # tcp_slow_start_after_idle: on, then off
SOCKET_TIMEOUT_S = 30.0
SS_TIMEOUT_S = 5.0
RECV_CHUNK = 256 * KIB
SERVER_WORDS = ["uvloop", "--keepalive-timeout", "300", "--keepalive-max", "0"]


class Connection(enum.StrEnum):
    """How the measured request's connection was made (see the module docstring)."""

    NEW = "new"
    WARM = "warm"
    IDLE = "idle"


@dataclass(frozen=True)
class SlowStartConfig:
    """One run: the link, what is fetched, how often; validated on construction."""

    rtt_ms: float = 50.0
    bandwidth_mbit: float | None = 20.0
    queue_packets: int | None = None
    sizes: tuple[int, ...] = DEFAULT_SIZES
    repeat: int = 3
    idle_s: float = 1.5
    cc: str = "reno"
    relay_cpu: int | None = None

    def __post_init__(self) -> None:
        if not self.sizes:
            raise NetError("--sizes needs at least one size")
        for size in self.sizes:
            if not 1 <= size <= MAX_SIZE:
                raise NetError(f"--sizes: each size must be 1 to {MAX_SIZE} bytes, got {size}")
        if not 1 <= self.repeat <= MAX_REPEAT:
            raise NetError(f"--repeat must be between 1 and {MAX_REPEAT}, got {self.repeat}")
        if not (math.isfinite(self.idle_s) and 0 < self.idle_s <= 600):
            raise NetError(f"--idle must be more than 0 and at most 600 s, got {self.idle_s}")
        if not re.fullmatch(r"[a-z0-9_]{1,15}", self.cc):
            raise NetError(f"--cc must name a congestion control (e.g. reno), got {self.cc!r}")
        self.link_spec()  # --rtt and --bandwidth are LinkSpec's to check

    def link_spec(self) -> LinkSpec:
        return LinkSpec(
            rtt_ms=self.rtt_ms, bandwidth_mbit=self.bandwidth_mbit, queue_packets=self.queue_packets
        )

    @property
    def warmup_bytes(self) -> int:
        return max(self.sizes)


@dataclass(frozen=True)
class TcpInfo:
    """What `ss -ti` says of the server's end of one connection."""

    cwnd: int
    retrans: int  # segments retransmitted over the connection's life so far


@dataclass(frozen=True)
class Sample:
    """One measured request: a row of the CSV."""

    rtt_ms: float
    bandwidth_mbit: float | None
    cc: str
    slow_start_after_idle: int
    connection: str
    size_bytes: int
    repeat: int
    idle_s: float | None
    connect_ms: float | None
    first_byte_ms: float
    last_byte_ms: float
    round_trips: float
    textbook_round_trips: float
    mss: int
    cwnd_before: int
    cwnd_after: int
    retrans: int  # segments the server retransmitted during the measured response
    drops: int  # packets the line dropped meanwhile (its bottleneck queue was full)


@dataclass(frozen=True)
class Transfer:
    """One response, timed from the start of the request's write."""

    first_byte_s: float
    last_byte_s: float
    wire_bytes: int  # head and body


def textbook_round_trips(
    wire_bytes: int, mss: int, cwnd: int, rtt_s: float, packet_s: float
) -> float:
    """Request write to last byte, in round trips, by the classic slow-start model.

    Flight k (k = 1, 2, ...) of `cwnd * 2**(k-1)` segments leaves when the previous flight's
    ACKs arrive, so its first byte lands k round trips after the request was written and its
    last `packet_s` per segment later. Once a flight takes a round trip or more to serialise the
    link is full: from then on the rest leaves at the link's rate. `packet_s` is 0 without a
    bandwidth limit. Delayed ACKs do not slow this: Linux grows the window by the segments an
    ACK covers (RFC 3465), not per ACK.
    """
    segments = max(1, math.ceil(wire_bytes / mss))
    sent, flight, window = 0, 1, max(1, cwnd)
    while sent + window < segments and window * packet_s < rtt_s:
        sent += window
        window *= 2
        flight += 1
    return (flight * rtt_s + (segments - sent) * packet_s) / rtt_s


def request(sock: socket.socket, host: str, size: int) -> Transfer:
    """GET /bytes/SIZE on `sock` and read the whole response; times from before the write."""
    buf = bytearray(RECV_CHUNK)
    view = memoryview(buf)
    head = bytearray()
    start = time.perf_counter()
    sock.sendall(f"GET /bytes/{size} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    first: float | None = None
    while b"\r\n\r\n" not in head:
        n = sock.recv_into(view)
        if n == 0:
            raise NetError(f"the server closed the connection before answering /bytes/{size}")
        if first is None:
            first = time.perf_counter() - start
        head += view[:n]
    head_bytes, _, body = bytes(head).partition(b"\r\n\r\n")
    status, length = _parse_head(head_bytes, size)
    got = len(body)
    while got < length:
        n = sock.recv_into(view)
        if n == 0:
            raise NetError(f"the server closed the connection after {got} of {length} bytes")
        got += n
    last = time.perf_counter() - start
    if got != length:
        raise NetError(f"/bytes/{size}: {got} body bytes for Content-Length {length}")
    assert first is not None and status == 200
    return Transfer(first, last, len(head_bytes) + 4 + length)


def _parse_head(head: bytes, size: int) -> tuple[int, int]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[1] != "200":
        raise NetError(f"/bytes/{size}: the server answered {lines[0]!r}")
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return 200, int(value.strip())
    raise NetError(f"/bytes/{size}: no Content-Length in the response")


def server_tcp_info(line: DelayLine, server_port: int, client_port: int) -> TcpInfo:
    """The server end's congestion window and retransmissions, from `ss -ti` in its namespace.

    `ss` reads the kernel's tcp_info over netlink; the window it shows is the one the next send
    starts from, except that a restart after idle is applied lazily, at that send. Right after
    connect() the server's end is still in SYN-RECV (the client's ACK is half a round trip
    away): asked again until it is established.
    """
    query = f"( sport = :{server_port} and dport = :{client_port} )"
    argv = ["ss", "-N", line.server.name, "-tinH", "state", "established", query]
    deadline = time.monotonic() + SS_TIMEOUT_S
    while True:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=SS_TIMEOUT_S, check=False
        )
        cwnd = re.search(r"\bcwnd:(\d+)", proc.stdout)
        if cwnd is not None or proc.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    if cwnd is None:
        detail = proc.stderr.strip() or f"no established connection from port {client_port}"
        raise NetError(f"ss in {line.server.name}: {detail}")
    retrans = re.search(r"\bretrans:\d+/(\d+)", proc.stdout)
    return TcpInfo(int(cwnd.group(1)), int(retrans.group(1)) if retrans else 0)


class Bench:
    """A running line and server: measures one request on one kind of connection at a time."""

    def __init__(self, line: DelayLine, config: SlowStartConfig, server_port: int) -> None:
        self.line = line
        self.config = config
        self.address = (line.server.address, server_port)
        self.rtt_s = config.rtt_ms / 1e3
        mbit = config.bandwidth_mbit
        self.bits_per_s = mbit * 1e6 if mbit is not None else None

    def packet_s(self, mss: int) -> float:
        """Serialisation time of a full segment on the bottleneck (0 without one)."""
        return 0.0 if self.bits_per_s is None else (mss + IP_TCP_HEADERS) * 8 / self.bits_per_s

    def measure(self, kind: Connection, size: int, setting: int, rep: int) -> Sample:
        started = time.perf_counter()
        sock = self.line.connect(self.line.clients[0], self.address, timeout_s=SOCKET_TIMEOUT_S)
        with sock:
            connect_s = time.perf_counter() - started
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            mss = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
            client_port = sock.getsockname()[1]
            if kind is not Connection.NEW:
                request(sock, self.address[0], self.config.warmup_bytes)
            before = server_tcp_info(self.line, self.address[1], client_port)
            if kind is Connection.IDLE:
                time.sleep(self.config.idle_s)
            link_before = self.line.stats()
            transfer = request(sock, self.address[0], size)
            link_after = self.line.stats()
            after = server_tcp_info(self.line, self.address[1], client_port)
        window = before.cwnd
        if kind is Connection.IDLE and setting:
            window = min(INITIAL_WINDOW, window)  # the kernel's restart window
        textbook = textbook_round_trips(
            transfer.wire_bytes, mss, window, self.rtt_s, self.packet_s(mss)
        )
        connect_ms = connect_s * 1e3 if kind is Connection.NEW else None
        total_s = transfer.last_byte_s + (connect_s if kind is Connection.NEW else 0.0)
        return Sample(
            rtt_ms=self.config.rtt_ms,
            bandwidth_mbit=self.config.bandwidth_mbit,
            cc=self.config.cc,
            slow_start_after_idle=setting,
            connection=kind.value,
            size_bytes=size,
            repeat=rep,
            idle_s=self.config.idle_s if kind is Connection.IDLE else None,
            connect_ms=_round(connect_ms),
            first_byte_ms=round(transfer.first_byte_s * 1e3, 3),
            last_byte_ms=round(transfer.last_byte_s * 1e3, 3),
            round_trips=round(total_s / self.rtt_s, 2),
            textbook_round_trips=round(textbook + (1 if kind is Connection.NEW else 0), 2),
            mss=mss,
            cwnd_before=before.cwnd,
            cwnd_after=after.cwnd,
            retrans=after.retrans - before.retrans,
            drops=link_after.drops - link_before.drops,
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def run(config: SlowStartConfig, progress: bool = True) -> list[Sample]:
    """Every size on every kind of connection, under both settings, `repeat` times."""
    samples: list[Sample] = []
    with DelayLine(config.link_spec(), relay_cpu=config.relay_cpu) as line:
        line.sysctl(line.server, "net.ipv4.tcp_congestion_control", config.cc)
        line.sysctl(line.server, "net.ipv4.tcp_no_metrics_save", "1")
        info = start_server(line, SERVER_WORDS, 0)
        bench = Bench(line, config, int(info.url.rsplit(":", 1)[1]))
        for setting in SETTINGS:
            line.sysctl(line.server, "net.ipv4.tcp_slow_start_after_idle", str(setting))
            for rep in range(1, config.repeat + 1):
                for size in config.sizes:
                    for kind in Connection:
                        sample = bench.measure(kind, size, setting, rep)
                        samples.append(sample)
                        if progress:
                            sys.stderr.write(_progress(sample))
        stats = line.stats()
    if progress:
        sys.stderr.write(f"net: link {config.link_spec().describe()}: {stats.summary()}\n")
    return samples


def _progress(s: Sample) -> str:
    return (
        f"slow start after idle {s.slow_start_after_idle}, {s.connection:<4} "
        f"{_size(s.size_bytes):>8} #{s.repeat}: {s.last_byte_ms:8.1f} ms "
        f"({s.round_trips:.2f} RTT), cwnd {s.cwnd_before} -> {s.cwnd_after}\n"
    )


def _size(size: int) -> str:
    if size % (KIB * KIB) == 0:
        return f"{size // (KIB * KIB)} MiB"
    if size % KIB == 0:
        return f"{size // KIB} KiB"
    return f"{size} B"


def table(samples: Sequence[Sample]) -> str:
    """The medians of each cell as a Markdown table (it reads as plain text too)."""
    lines = [
        "| size | connection | slow start after idle | connect ms | request to last byte ms "
        "| round trips | textbook | server cwnd before -> after | drops / retransmits |",
        "| ---: | --- | :-: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (size, kind, setting), cell in _cells(samples):
        connect = [s.connect_ms for s in cell if s.connect_ms is not None]
        lines.append(
            f"| {_size(size)} | {kind} | {'on' if setting else 'off'} "
            f"| {_median_text(connect)} | {_median_text([s.last_byte_ms for s in cell])} "
            f"| {_median_text([s.round_trips for s in cell], 2)} "
            f"| {_median_text([s.textbook_round_trips for s in cell], 2)} "
            f"| {_median_text([s.cwnd_before for s in cell], 0)} -> "
            f"{_median_text([s.cwnd_after for s in cell], 0)} "
            f"| {sum(s.drops for s in cell)} / {sum(s.retrans for s in cell)} |"
        )
    return "\n".join(lines) + "\n"


def _cells(samples: Iterable[Sample]) -> list[tuple[tuple[int, str, int], list[Sample]]]:
    order = {kind.value: i for i, kind in enumerate(Connection)}
    cells: dict[tuple[int, str, int], list[Sample]] = {}
    for s in samples:
        cells.setdefault((s.size_bytes, s.connection, s.slow_start_after_idle), []).append(s)
    return sorted(cells.items(), key=lambda kv: (kv[0][0], order[kv[0][1]], -kv[0][2]))


def _median_text(values: Sequence[float], digits: int = 1) -> str:
    return "-" if not values else f"{statistics.median(values):.{digits}f}"


def to_csv(samples: Sequence[Sample]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = [f.name for f in fields(Sample)]
    writer.writerow(names)
    for s in samples:
        row = asdict(s)
        writer.writerow(["" if row[n] is None else row[n] for n in names])
    return out.getvalue()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `slowstart` subcommand's flags (its parser is made by benchmarks.net.cli)."""
    parser.add_argument("--rtt", type=float, default=50.0, metavar="MS", help="default 50")
    parser.add_argument(
        "--bandwidth",
        type=_bandwidth,
        default=20.0,
        metavar="MBIT",
        help="bottleneck rate, or 'none' (default 20)",
    )
    parser.add_argument(
        "--queue",
        type=int,
        default=None,
        metavar="PACKETS",
        help="bottleneck queue (default: one bandwidth-delay product, >= 64)",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=DEFAULT_SIZES,
        metavar="N,N",
        help="response sizes in bytes (suffix k or m for KiB/MiB; default 16k,64k,256k,1m)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="samples per cell (default 3)")
    parser.add_argument(
        "--idle", type=float, default=1.5, metavar="S", help="idle time, > the RTO (default 1.5)"
    )
    parser.add_argument(
        "--cc", default="reno", help="the server's congestion control (default reno)"
    )
    parser.add_argument("--relay-cpu", type=int, default=None, metavar="N")
    parser.add_argument("--csv", type=Path, default=None, metavar="PATH", help="every sample")


def _bandwidth(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def _sizes(text: str) -> tuple[int, ...]:
    sizes = []
    for word in text.split(","):
        word = word.strip().lower()
        scale = {"k": KIB, "m": KIB * KIB}.get(word[-1:], 1)
        number = word[:-1] if scale != 1 else word
        if not number.isdigit():
            raise argparse.ArgumentTypeError(f"not a size in bytes: {word!r}")
        sizes.append(int(number) * scale)
    return tuple(sizes)


def main(args: argparse.Namespace, prog: str) -> int:
    """Validate, check the tools, run, print the table, write the CSV."""
    try:
        config = SlowStartConfig(
            rtt_ms=args.rtt,
            bandwidth_mbit=args.bandwidth,
            queue_packets=args.queue,
            sizes=args.sizes,
            repeat=args.repeat,
            idle_s=args.idle,
            cc=args.cc,
            relay_cpu=args.relay_cpu,
        )
        if shutil.which("ss") is None:
            raise NetError("slowstart needs the 'ss' command (iproute2)")
        _check_cc(config.cc)
        if args.csv is not None and not args.csv.parent.is_dir():
            raise NetError(f"--csv: no such directory: {args.csv.parent}")
    except NetError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    if config.rtt_ms < PRECISE_RTT_MS:
        sys.stderr.write(f"{prog}: note: below {PRECISE_RTT_MS:g} ms round trips are imprecise\n")
    previous = {s: signal.signal(s, raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        samples = run(config)
    except Interrupted as exc:
        sys.stderr.write(f"{prog}: interrupted, line removed\n")
        return 128 + exc.signum
    except (NetError, ServerStartError, OSError) as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(_title(config, samples))
    print(table(samples), end="")
    if args.csv is not None:
        write_atomic(args.csv, to_csv(samples))
        sys.stderr.write(f"wrote {args.csv}\n")
    return 0


def _check_cc(cc: str) -> None:
    """A namespace other than the root one may only use the allowed congestion controls."""
    allowed = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read_text().split()
    if cc not in allowed:
        raise NetError(
            f"--cc {cc}: a namespace may use only {', '.join(allowed)} "
            "(net.ipv4.tcp_allowed_congestion_control)"
        )


def _title(config: SlowStartConfig, samples: Sequence[Sample]) -> str:
    mss = samples[0].mss if samples else 0
    return (
        f"slow start: {config.link_spec().describe()}, {config.cc}, MSS {mss}, idle "
        f"{config.idle_s:g} s, median of {config.repeat}; warm-up {_size(config.warmup_bytes)}\n"
    )
