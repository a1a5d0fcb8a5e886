"""`python -m benchmarks net locust`: Locust's master and workers on separate hosts, for real.

    python -m benchmarks net locust --rtt 50 [--loss PCT] [--bandwidth MBIT] [--workers 2]
        [--users 20] [--spawn-rate R] [--run-time 10] [--user-class PooledUser]
        [--server "uvloop --keepalive-timeout 5"] [--json PATH] [-- MASTER FLAGS...]

A delay line with one client namespace per load host: the master in the first (198.18.1.2),
worker i in client namespace i (198.18.1.(i + 2)), the server in its own (198.18.0.2). Each
process sees only its own namespace's addresses, as on separate machines: the master binds its
address, the workers reach it with `--master-host`, their requests go to the server's address,
and all of that crosses the relay (a star: worker to master is client to client) with the
line's delay, loss and bandwidth. The run is headless (`--expect-workers N`, `-t`), with
`locustfiles/keepalive.py`; flags after `--` go to the master (`--kab-output PATH`, say).

The commands are printed as they start; the master's output is passed through, the workers'
(at WARNING) go to stderr, and at the end the server's counters and the packets each namespace
received from the relay follow on stderr (and in `--json`). Exit status: the master's.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.clients.contract import LOCUST_USER_CLASSES, PAGE_LOCUSTFILE, LocustSettings
from benchmarks.common import write_atomic
from benchmarks.net.cli import Interrupted, ServerInfo, raise_interrupted, start_server
from benchmarks.net.line import DelayLine, LinkStats
from benchmarks.net.netns import NetError
from benchmarks.net.spec import MAX_CLIENTS, LinkSpec
from servers.launch import ServerStartError
from servers.options import ServerName

LOCUSTFILE = Path(__file__).resolve().parents[2] / "locustfiles" / "keepalive.py"
MASTER_PORT = 5557  # Locust's default; safe here, the namespace is ours alone
START_ALLOWANCE_S = 120.0  # Locust imports gevent and the locustfile: slow on a busy machine
USER_CLASSES = sorted(LOCUST_USER_CLASSES.values())
# The page users (PageUser, UnpooledPageUser) live in their own locustfile.
PAGE_USER_CLASSES = frozenset(n for (k, _), n in LOCUST_USER_CLASSES.items() if k.loads_pages)
MAX_USERS = 100_000


@dataclass(frozen=True)
class DistributedConfig:
    """One distributed run, validated on construction; argv is built from it in one place."""

    link: LinkSpec
    workers: int = 1
    users: int = 10
    spawn_rate: float | None = None  # default: all users at once
    run_time_s: int = 10
    user_class: str = "PooledUser"
    server: tuple[str, ...] = ("uvloop",)
    master_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not 1 <= self.workers < MAX_CLIENTS:
            raise NetError(f"--workers must be between 1 and {MAX_CLIENTS - 1}, got {self.workers}")
        if self.link.clients != self.workers + 1:
            raise NetError("the line needs one client namespace per worker plus the master's")
        if not 1 <= self.users <= MAX_USERS:
            raise NetError(f"--users must be between 1 and {MAX_USERS}, got {self.users}")
        if self.spawn_rate is not None and not 0 < self.spawn_rate <= MAX_USERS:
            raise NetError(f"--spawn-rate must be > 0, got {self.spawn_rate}")
        if not 1 <= self.run_time_s <= 86_400:
            raise NetError(f"--run-time must be 1 to 86400 s, got {self.run_time_s}")
        if self.user_class not in USER_CLASSES:
            raise NetError(f"--user-class must be one of {', '.join(USER_CLASSES)}")
        if not self.server or self.server[0] not in {n.value for n in ServerName}:
            names = ", ".join(n.value for n in ServerName)
            raise NetError(f"--server must name a reference server ({names}) and its options")

    @property
    def locustfile(self) -> Path:
        """keepalive.py, or pageload.py for a page user (master and workers load the same)."""
        return PAGE_LOCUSTFILE if self.user_class in PAGE_USER_CLASSES else LOCUSTFILE

    def master_argv(self, address: str, info: ServerInfo) -> list[str]:
        rate = self.spawn_rate if self.spawn_rate is not None else self.users
        argv = [
            sys.executable, "-m", "locust", "-f", str(self.locustfile), "--master",
            "--master-bind-host", address, "--master-bind-port", str(MASTER_PORT),
            "--expect-workers", str(self.workers), "--headless", "--host", info.url,
            "-u", str(self.users), "-r", f"{rate:g}", "-t", f"{self.run_time_s}s",
            "--only-summary",
        ]  # fmt: skip
        return argv + _ca_args(info) + [*self.master_args, self.user_class]

    def worker_argv(self, master_address: str, info: ServerInfo) -> list[str]:
        argv = [
            sys.executable, "-m", "locust", "-f", str(self.locustfile), "--worker",
            "--master-host", master_address, "--master-port", str(MASTER_PORT),
            "--loglevel", "WARNING",
        ]  # fmt: skip
        return argv + _ca_args(info)


def _ca_args(info: ServerInfo) -> list[str]:
    return LocustSettings(ca=info.ca_path).to_argv()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `locust` subcommand's flags (its parser is made by benchmarks.net.cli)."""
    parser.add_argument("--rtt", type=float, required=True, metavar="MS", help="round trip, ms")
    parser.add_argument("--loss", type=float, default=0.0, metavar="PCT")
    parser.add_argument("--bandwidth", type=float, default=None, metavar="MBIT")
    parser.add_argument("--workers", type=int, default=1, help="worker hosts (default 1)")
    parser.add_argument("--users", type=int, default=10, help="Locust users (default 10)")
    parser.add_argument("--spawn-rate", type=float, default=None, metavar="R")
    parser.add_argument("--run-time", type=int, default=10, metavar="S", help="default 10")
    parser.add_argument("--user-class", default="PooledUser", help=", ".join(USER_CLASSES))
    parser.add_argument("--server", default="uvloop", metavar="CMD", help="default uvloop")
    parser.add_argument("--relay-cpu", type=int, default=None, metavar="N")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="the figures")


def main(args: argparse.Namespace, master_args: Sequence[str], prog: str) -> int:
    try:
        config = DistributedConfig(
            link=LinkSpec(
                rtt_ms=args.rtt,
                loss_pct=args.loss,
                bandwidth_mbit=args.bandwidth,
                clients=args.workers + 1,
            ),
            workers=args.workers,
            users=args.users,
            spawn_rate=args.spawn_rate,
            run_time_s=args.run_time,
            user_class=args.user_class,
            server=tuple(shlex.split(args.server)),
            master_args=tuple(master_args),
        )
        if args.json is not None and not args.json.parent.is_dir():
            raise NetError(f"--json: no such directory: {args.json.parent}")
    except (NetError, ValueError) as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    previous = {s: signal.signal(s, raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status, figures = run(config, args.relay_cpu)
    except Interrupted as exc:
        sys.stderr.write(f"{prog}: interrupted, line removed\n")
        return 128 + exc.signum
    except (NetError, ServerStartError, OSError) as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.json is not None:
        write_atomic(args.json, json.dumps(figures, indent=1) + "\n")
    return status


def run(config: DistributedConfig, relay_cpu: int | None) -> tuple[int, dict[str, Any]]:
    """Line, server, master, workers; the master's status and the run's figures."""
    with DelayLine(config.link, relay_cpu=relay_cpu) as line:
        info = start_server(line, list(config.server), 0)
        master_ep = line.clients[0]
        master_argv = config.master_argv(master_ep.address, info)
        _announce("master", master_ep.name, master_ep.address, master_argv)
        master = line.spawn(master_ep, master_argv, stdin=subprocess.DEVNULL)
        workers = []
        for i, ep in enumerate(line.clients[1:], start=1):
            argv = config.worker_argv(master_ep.address, info)
            _announce(f"worker {i}", ep.name, ep.address, argv)
            workers.append(line.spawn(ep, argv, stdin=subprocess.DEVNULL, stdout=sys.stderr))
        status = _wait(master, config.run_time_s + START_ALLOWANCE_S)
        for worker in workers:
            _wait(worker, 30.0)  # they quit when the master tells them to
        counters = (
            json.loads(line.fetch(line.server, info.control_url + "/counters"))
            if info.control_url
            else {}
        )
        stats = line.stats()
    figures = _figures(line, config, counters, stats, status)
    _report(figures, stats)
    return status, figures


def _announce(role: str, name: str, address: str, argv: list[str]) -> None:
    sys.stderr.write(f"net: {role} in {name} ({address}): {shlex.join(argv)}\n")
    sys.stderr.flush()


def _wait(proc: subprocess.Popen[Any], timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise NetError(f"a Locust process ran {timeout_s:g} s without exiting")
        time.sleep(0.1)
    return 128 - proc.returncode if proc.returncode < 0 else proc.returncode


def _figures(
    line: DelayLine,
    config: DistributedConfig,
    counters: dict[str, Any],
    stats: LinkStats,
    status: int,
) -> dict[str, Any]:
    ports = stats.raw["ports"]
    hosts = [("server", line.server), ("master", line.clients[0])] + [
        (f"worker {i}", ep) for i, ep in enumerate(line.clients[1:], start=1)
    ]
    return {
        "link": config.link.describe(),
        "master_status": status,
        "server": {
            k: counters[k] for k in ("connections_accepted", "requests_served") if k in counters
        },
        "hosts": {
            role: {"namespace": ep.name, "address": ep.address, **ports[ep.name]}
            for role, ep in hosts
        },
        "link_stats": {k: v for k, v in stats.raw.items() if k != "ports"},
    }


def _report(figures: dict[str, Any], stats: LinkStats) -> None:
    server = figures["server"]
    if server:
        sys.stderr.write(
            f"net: server: {server['connections_accepted']:,} connections accepted, "
            f"{server['requests_served']:,} requests served\n"
        )
    for role, host in figures["hosts"].items():
        sys.stderr.write(
            f"net: {role} {host['address']}: {host['sent']:,} packets in from the relay, "
            f"{host['received']:,} out\n"
        )
    sys.stderr.write(f"net: link {figures['link']}: {stats.summary()}\n")
