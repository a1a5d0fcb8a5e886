"""`python -m benchmarks net run|cleanup`: any server and any client behind a delay line.

    python -m benchmarks net run --rtt 50 --server "uvloop --keepalive-timeout 5" -- \\
        curl -s -w '%{time_connect} %{time_starttransfer}\\n' -o /dev/null {url}/

The server command runs in the server namespace: a reference server by name, with its options
(`python -m servers NAME ... --host 198.18.0.2 --port 0`, its READY line read for the port), or
any command line, whose `{host}` and `{port}` are replaced (the namespace is ours alone, so a
fixed port is safe: --server-port, 8080 by default) and which is ready once that port accepts a
connection. The client runs in the client namespace with `{url}` (and `{ca}` for a TLS reference
server) replaced and SERVER_URL (SERVER_CA) set; its output and exit status are passed through,
and the link's figures are printed on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from benchmarks.common import OneLineParser, write_atomic
from benchmarks.net import netns
from benchmarks.net.line import DelayLine
from benchmarks.net.netns import NetError
from benchmarks.net.spec import PRECISE_RTT_MS, LinkSpec
from servers.launch import ServerStartError, read_ready
from servers.options import ServerName

PROG = "python -m benchmarks net"
SERVER_READY_TIMEOUT_S = 20.0
DEFAULT_SERVER_PORT = 8080


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: tear down, exit 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass(frozen=True)
class ServerInfo:
    """Where the server listens, as the client is told."""

    url: str
    ca_path: Path | None
    control_url: str | None = None  # a reference server's counters (read with `line.fetch`)
    # the server's: READY's pid= for a reference server, else the command's (`ip netns exec`
    # execs it: the spawned pid is the command's own)
    pid: int | None = None
    proc: subprocess.Popen[Any] | None = field(default=None, compare=False, repr=False)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    run = sub.add_parser(
        "run",
        help="a server and a client command behind the delay line",
        usage=f"{PROG} run --rtt MS [options] --server CMD -- CLIENT...",
    )
    run.add_argument("--rtt", type=float, required=True, metavar="MS", help="round trip, ms")
    run.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        metavar="MS",
        help="uniform +-MS on each one-way delay; never reorders a flow",
    )
    run.add_argument(
        "--loss",
        type=float,
        default=0.0,
        metavar="PCT",
        help="random drop per packet, per direction",
    )
    run.add_argument(
        "--bandwidth",
        type=float,
        default=None,
        metavar="MBIT",
        help="serialise at this rate behind a bounded queue",
    )
    run.add_argument(
        "--queue",
        type=int,
        default=None,
        metavar="PACKETS",
        help="bottleneck queue (default: one bandwidth-delay product, >= 64)",
    )
    run.add_argument("--mtu", type=int, default=1500)
    run.add_argument("--seed", type=int, default=None, help="seed of loss and jitter")
    run.add_argument(
        "--relay-cpu",
        type=int,
        default=None,
        metavar="N",
        help="pin the relay to core N (the client's)",
    )
    run.add_argument(
        "--no-realtime",
        action="store_true",
        help="run the relay under the normal scheduler (p99 lateness grows)",
    )
    run.add_argument(
        "--server",
        required=True,
        metavar="CMD",
        help="'uvloop --keepalive-timeout 5', or any command with {host}/{port}",
    )
    run.add_argument(
        "--server-port",
        type=int,
        default=DEFAULT_SERVER_PORT,
        help="{port} of a non-reference server command",
    )
    run.add_argument(
        "--stats-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the link's figures here as JSON",
    )
    sub.add_parser("cleanup", help="remove namespaces and devices a crashed run left")
    # These import this module: their flags are added here, their modules loaded only now.
    from benchmarks.net import distributed, slowstart

    slowstart.add_arguments(
        sub.add_parser(
            "slowstart",
            help="/bytes/N on new, warm and idle connections: slow start in round trips",
            description=slowstart.__doc__.split("\n\n")[0],
        )
    )
    distributed.add_arguments(
        sub.add_parser(
            "locust",
            help="Locust's master and workers in namespaces of their own against the server",
            usage=f"{PROG} locust --rtt MS [options] [-- MASTER FLAGS...]",
            description=distributed.__doc__.split("\n\n")[0],
        )
    )
    return parser


def split_client(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Our options before `--`, the client command after it."""
    args = list(argv)
    if "--" not in args:
        return args, []
    cut = args.index("--")
    return args[:cut], args[cut + 1 :]


def main(argv: Sequence[str]) -> int:
    ours, client = split_client(argv)
    parser = build_parser()
    args = parser.parse_args(ours)
    try:
        if args.command == "cleanup":
            return cleanup()
        if args.command == "slowstart":
            from benchmarks.net import slowstart

            return slowstart.main(args, f"{PROG} slowstart")
        if args.command == "locust":
            from benchmarks.net import distributed

            return distributed.main(args, client, f"{PROG} locust")
        if not client:
            raise NetError("give the client command after --, e.g. -- curl {url}/")
        spec = LinkSpec(
            rtt_ms=args.rtt,
            jitter_ms=args.jitter,
            loss_pct=args.loss,
            bandwidth_mbit=args.bandwidth,
            queue_packets=args.queue,
            mtu=args.mtu,
            seed=args.seed,
        )
        if not 1 <= args.server_port <= 65535:
            raise NetError(f"--server-port must be between 1 and 65535, got {args.server_port}")
        server = shlex.split(args.server)
        if not server:
            raise NetError("--server needs a command")
        netns.check_preconditions()
    except (NetError, ValueError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    return run(spec, args, server, client)


def cleanup() -> int:
    netns.check_preconditions()
    removed = netns.cleanup_stale()
    if removed:
        print(f"removed {len(removed)}: {' '.join(removed)}")
    else:
        print("nothing stale")
    return 0


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def run(spec: LinkSpec, args: argparse.Namespace, server: list[str], client: list[str]) -> int:
    """Line up, server up, client run; whatever happens, everything is torn down."""
    if 0 < spec.rtt_ms < PRECISE_RTT_MS:
        sys.stderr.write(
            f"{PROG}: note: below {PRECISE_RTT_MS:g} ms the relay's own lateness (see the "
            "figures) is a noticeable part of the round trip\n"
        )
    previous = {s: signal.signal(s, raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    line = DelayLine(spec, relay_cpu=args.relay_cpu, realtime=not args.no_realtime)
    status = 2
    try:
        with line:
            info = start_server(line, server, args.server_port)
            status = run_client(line, client, info)
            stats = line.stats()
            sys.stderr.write(f"net: link {spec.describe()}: {stats.summary()}\n")
            if args.stats_json is not None:
                payload = {"link": spec.describe(), **stats.raw}
                write_atomic(args.stats_json, json.dumps(payload, indent=2) + "\n")
    except Interrupted as exc:
        sys.stderr.write(f"{PROG}: interrupted, line removed\n")
        status = 128 + exc.signum
    except (NetError, ServerStartError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        status = 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def reference_server_argv(words: list[str], host: str) -> list[str] | None:
    """`uvloop --keepalive-timeout 5` -> the python -m servers argv bound to `host`, port 0."""
    if words[0] not in {n.value for n in ServerName}:
        return None
    for flag in ("--host", "--port"):
        if any(w == flag or w.startswith(flag + "=") for w in words[1:]):
            raise NetError(f"the line chooses the server's {flag}: leave it out of --server")
    return [sys.executable, "-m", "servers", *words, "--host", host, "--port", "0"]


def start_server(
    line: DelayLine, words: Sequence[str], port: int, log: IO[str] | None = None
) -> ServerInfo:
    """Start the server in its namespace and wait until it listens. Its output goes to `log`
    (stdout and stderr; the harness's cell log), else its stdout to our stderr."""
    host = line.server.address
    words = list(words)
    argv = reference_server_argv(words, host)
    if argv is not None:
        proc = line.spawn(
            line.server, argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            stderr=log,
        )  # fmt: skip
        ready = read_ready(proc, f"the {words[0]} server", SERVER_READY_TIMEOUT_S)
        assert proc.stdout is not None
        _forward(proc.stdout, log or sys.stderr)  # after READY, so the server never blocks
        return ServerInfo(ready.url, ready.ca_path, ready.control_url, ready.pid, proc)
    argv = [w.replace("{host}", host).replace("{port}", str(port)) for w in words]
    try:
        # its stdout goes to our stderr: the client's stdout stays the client's alone
        proc = line.spawn(
            line.server, argv, stdin=subprocess.DEVNULL, stdout=log or sys.stderr, stderr=log
        )
    except OSError as exc:
        raise NetError(f"cannot start the server: {exc.strerror}") from None
    _wait_listening(line, proc, (host, port), words[0])
    return ServerInfo(f"http://{host}:{port}", None, pid=proc.pid, proc=proc)


def _wait_listening(
    line: DelayLine, proc: subprocess.Popen[Any], address: tuple[str, int], name: str
) -> None:
    """Connect from inside the server's namespace (no relay involved) until it accepts."""
    deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NetError(f"the server {name!r} exited with status {proc.returncode}")
        try:
            line.connect(line.server, address, timeout_s=1.0).close()
            return
        except OSError:
            time.sleep(0.05)
    raise NetError(
        f"the server {name!r} did not listen on port {address[1]} in {SERVER_READY_TIMEOUT_S:g} s"
    )


def _forward(src: IO[str], dst: IO[str]) -> None:
    def pump() -> None:
        with contextlib.suppress(OSError, ValueError):
            for text in src:
                dst.write(text)
                dst.flush()

    threading.Thread(target=pump, name="server-stdout", daemon=True).start()


def run_client(line: DelayLine, words: list[str], info: ServerInfo) -> int:
    """The client in its namespace; its exit status (128 + signal when killed)."""
    ca = str(info.ca_path) if info.ca_path else ""
    argv = [w.replace("{url}", info.url).replace("{ca}", ca) for w in words]
    env = dict(os.environ, SERVER_URL=info.url)
    if ca:
        env["SERVER_CA"] = ca
    try:
        proc = line.spawn(line.clients[0], argv, env=env)
    except OSError as exc:
        raise NetError(f"cannot start the client: {exc.strerror}") from None
    status = proc.wait()
    return 128 - status if status < 0 else status
