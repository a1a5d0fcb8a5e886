"""`python -m benchmarks instructions`: instructions per request, by callgrind.

Wall-clock throughput moves with the machine's load (other processes on the same cores);
instruction counts do not. Each target runs under `valgrind --tool=callgrind`; a sequential
client (one connection at a time, wrk's request bytes) sends a warm-up, then callgrind's counters
are zeroed, REQUESTS requests are sent, the server is left alone for SETTLE seconds (so that the
deadlines the requests armed, the linger and the header deadline, come due and are counted too),
and the counters are dumped. An idle window of the same length, measured the same way in the same
process, is subtracted, and the rest is divided by REQUESTS.

Modes: `keep-alive` (one connection, reconnecting only when the server says `Connection: close`,
as wrk does) and `close` (`Connection: close` on every request, a new connection each time; the
client closes as soon as it has read the response, as wrk does). The kernel's work (accept,
socket set-up and teardown) is not counted: this is the Python and C code of the server process.
Exit status: 0, 1 when a run failed, 2 for bad input or a missing valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from benchmarks.common import OneLineParser, UsageError, print_error
from benchmarks.serverperf import bare
from benchmarks.serverperf.targets import BARE_PREFIX
from servers.launch import ChildServer, server_command
from servers.options import ServerName, ServerOptions
from servers.policy import KeepAlivePolicy

PROG = "python -m benchmarks instructions"
TARGETS = ("uvloop", "bare-uvloop", "aiohttp", "bare-aiohttp", "stdlib", "bare-stdlib")
MODES = ("keep-alive", "close")
READY_TIMEOUT_S = 600.0  # Python starts about 50x slower under callgrind (aiohttp: minutes)
IO_TIMEOUT_S = 30.0
_TOTALS = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Config:
    targets: tuple[str, ...]
    modes: tuple[str, ...]
    requests: int
    warmup: int
    settle_s: float
    keepalive_max: int
    keep_dir: Path | None = None
    tree: Path | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["uvloop", "bare-uvloop"],
        choices=TARGETS,
        metavar="NAME",
        help=f"from {', '.join(TARGETS)} (default: uvloop bare-uvloop)",
    )
    parser.add_argument(
        "--modes", nargs="+", default=list(MODES), choices=MODES, help="default: both"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=2000,
        metavar="N",
        help="counted requests per mode (default %(default)d)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=200,
        metavar="N",
        help="requests before counting starts (default %(default)d)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=5.5,
        metavar="SECONDS",
        help="quiet time counted after the requests, so that their deadlines "
        "come due (default %(default)g: T and H are 5 s)",
    )
    parser.add_argument(
        "--keepalive-max",
        type=int,
        default=0,
        metavar="COUNT",
        help="requests per connection (default 0: unlimited)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the callgrind dumps there, for callgrind_annotate",
    )
    parser.add_argument(
        "--tree",
        type=Path,
        default=None,
        metavar="DIR",
        help="run the targets from this source tree (another commit's `git archive`), "
        "for before/after counts with the same client",
    )
    return parser


def parse_config(argv: Sequence[str]) -> Config:
    ns = build_parser().parse_args(list(argv))
    if ns.requests < 1 or ns.warmup < 0 or ns.settle < 0 or ns.keepalive_max < 0:
        raise UsageError("--requests must be >= 1; --warmup, --settle, --keepalive-max >= 0")
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise UsageError(f"{tool} not found; install it with `apt-get install valgrind`")
    targets = tuple(dict.fromkeys(ns.servers))
    return Config(
        targets,
        tuple(dict.fromkeys(ns.modes)),
        ns.requests,
        ns.warmup,
        ns.settle,
        ns.keepalive_max,
        ns.keep,
        ns.tree,
    )


def target_command(target: str, keepalive_max: int) -> list[str]:
    """The target's own argv (valgrind's goes in front), T = 5 s as in serverperf."""
    if target.startswith(BARE_PREFIX):
        return bare.command(target.removeprefix(BARE_PREFIX), KeepAlivePolicy(5.0, keepalive_max))
    options = ServerOptions(
        ServerName(target), keepalive_timeout_s=5.0, keepalive_max=keepalive_max
    )
    return server_command(options)


def request_bytes(host: str, port: int, close: bool) -> bytes:
    """What wrk sends: `GET /`, a Host field, `Connection: close` in close mode."""
    extra = b"Connection: close\r\n" if close else b""
    return b"GET / HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n" % (host.encode(), port, extra)


class Client:
    """Sequential requests, one connection at a time, reconnecting after `Connection: close`."""

    def __init__(self, host: str, port: int, close: bool) -> None:
        self.address = (host, port)
        self.request = request_bytes(host, port, close)
        self.sock: socket.socket | None = None

    def one(self) -> None:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=IO_TIMEOUT_S)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(self.request)
        if self._read_response():
            self.sock.close()  # as wrk: at once, without waiting for the server's FIN
            self.sock = None

    def _read_response(self) -> bool:
        """Read one response framed by Content-Length; True when it says `Connection: close`."""
        assert self.sock is not None
        data = b""
        while b"\r\n\r\n" not in data:
            data += self._recv()
        head, _, body = data.partition(b"\r\n\r\n")
        fields = head.lower()
        match = re.search(rb"\r\ncontent-length:\s*(\d+)", fields)
        length = int(match[1]) if match else 0
        while len(body) < length:
            body += self._recv()
        return b"\r\nconnection: close" in fields

    def _recv(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed before a whole response")
        return chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Callgrind:
    """One target under callgrind: start, zero, dump, read the instruction total, stop."""

    def __init__(self, target: str, keepalive_max: int, folder: Path, tree: Path | None) -> None:
        self.target = target
        self.tree = tree  # `python -m` finds the packages in its working directory first
        self.out = folder / f"callgrind.{target}.out"
        self.command = [
            "valgrind",
            "--tool=callgrind",
            "--compress-strings=no",
            f"--callgrind-out-file={self.out}",
            *target_command(target, keepalive_max),
        ]
        self.server = ChildServer(
            self.command, target, cwd=tree, ready_timeout_s=READY_TIMEOUT_S, stop_grace_s=30.0
        )
        self.pid = 0
        self.dumps = 0

    def start(self) -> tuple[str, int]:
        ready = self.server.start()
        self.pid = ready.pid
        return ready.host, ready.port

    def control(self, flag: str) -> None:
        subprocess.run(
            ["callgrind_control", flag, str(self.pid)], check=True, capture_output=True, timeout=60
        )

    def counted(self, work: Callable[[], None], settle_s: float) -> int:
        """Instructions spent during `work()` plus `settle_s` of quiet afterwards."""
        self.control("--zero")
        work()
        time.sleep(settle_s)
        self.control("--dump")
        self.dumps += 1
        return read_total(Path(f"{self.out}.{self.dumps}"))

    def stop(self) -> None:
        self.server.stop()


def read_total(path: Path) -> int:
    """The instruction total (`summary:` or `totals:` line) of a callgrind dump."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.is_file():
            match = _TOTALS.search(path.read_bytes())
            if match:
                return int(match[1])
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no totals to {path}")


def measure(target: str, config: Config) -> dict[str, float]:
    """Instructions per request for each mode of one target (one server process)."""
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="instructions-") as folder:
        if config.keep_dir is not None:
            config.keep_dir.mkdir(parents=True, exist_ok=True)
        cg = Callgrind(target, config.keepalive_max, config.keep_dir or Path(folder), config.tree)
        try:
            host, port = cg.start()
            idle = cg.counted(lambda: None, config.settle_s)
            for mode in config.modes:
                client = Client(host, port, close=mode == "close")
                try:
                    for _ in range(config.warmup):
                        client.one()
                    total = cg.counted(partial(send, client, config.requests), config.settle_s)
                finally:
                    client.close()
                results[mode] = (total - idle) / config.requests
                progress(
                    f"{target} {mode}: {results[mode]:,.0f} instructions per request "
                    f"({total:,} counted, {idle:,} idle)"
                )
        finally:
            cg.stop()
    return results


def send(client: Client, count: int) -> None:
    for _ in range(count):
        client.one()


def progress(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def format_table(config: Config, results: dict[str, dict[str, float]]) -> str:
    header = ["target", *config.modes]
    lines = [header] + [
        [t, *(f"{results[t][m]:,.0f}" if m in results[t] else "error" for m in config.modes)]
        for t in config.targets
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            [f"{line[0]:<{widths[0]}}"]
            + [f"{c:>{w}}" for c, w in zip(line[1:], widths[1:], strict=True)]
        )
        for line in lines
    )


def main(argv: list[str]) -> int:
    try:
        config = parse_config(argv)
    except UsageError as exc:
        return print_error(PROG, exc)
    results: dict[str, dict[str, float]] = {}
    failed = False
    for target in config.targets:
        try:
            results[target] = measure(target, config)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            sys.stderr.write(f"{PROG}: {target}: error: {exc}\n")
            results[target] = {}
            failed = True
    print(
        f"instructions per request (callgrind, {config.requests} requests, "
        f"keep-alive max {config.keepalive_max or 'unlimited'}, pid {os.getpid()})"
    )
    print(format_table(config, results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
