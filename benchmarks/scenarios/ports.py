"""`python -m benchmarks ports`: unpooled load runs out of ephemeral ports; pooled load never does.

    python -m benchmarks ports [--quick] [--ports 1000] [--seconds 8] [--rtt 0] [--server uvloop]

Each connection a client opens and closes first leaves a TIME_WAIT socket holding its local
port for 60 s; with the default 28,232 ports (32768-60999) per destination a client beyond
about 470 new connections per second runs out, and connect() fails with EADDRNOTAVAIL. So it
takes seconds rather than a minute, the client namespace of a delay line gets a narrow
`net.ipv4.ip_local_port_range` (--ports, 1000 by default); the namespace's sysctls are its own,
the host's are never touched. Unpooled load (ports_client.py) runs with `net.ipv4.tcp_tw_reuse`
0 (never reuse), 1 (reuse a TIME_WAIT port for a new outgoing connection once it is 1 s old,
timestamps permitting) and 2 (the kernel default: 1 for loopback traffic only; the delay line's
traffic crosses a TUN device, so it acts as 0), each in a fresh line (no TIME_WAIT carried
over); then pooled load with 0. Root and /dev/net/tun are needed: over loopback it would have
to change the host's sysctls, which it never does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import OneLineParser
from benchmarks.net.cli import start_server
from benchmarks.net.line import DelayLine
from benchmarks.net.netns import NetError, check_preconditions
from benchmarks.net.spec import LinkSpec
from benchmarks.scenarios.output import Output, ScenarioError, progress, pyplot
from servers.launch import ServerStartError, terminate
from servers.options import ServerName

PROG = "python -m benchmarks ports"
FIRST_PORT = 20000
TW_REUSE = (0, 1, 2)
MIN_PORTS, MAX_PORTS = 8, 28232
CLIENT_SLACK_S = 30.0


@dataclass(frozen=True)
class PortsConfig:
    ports: int = 1000
    seconds: float = 8.0
    rtt_ms: float = 0.0
    server: ServerName = ServerName.UVLOOP

    def __post_init__(self) -> None:
        if not MIN_PORTS <= self.ports <= MAX_PORTS:
            raise ScenarioError(
                f"--ports must be between {MIN_PORTS} and {MAX_PORTS}, got {self.ports}"
            )
        if not 0.5 <= self.seconds <= 60:
            raise ScenarioError(f"--seconds must be between 0.5 and 60, got {self.seconds}")
        if not 0 <= self.rtt_ms <= 200:
            raise ScenarioError(f"--rtt must be between 0 and 200 ms, got {self.rtt_ms}")

    @property
    def port_range(self) -> str:
        return f"{FIRST_PORT} {FIRST_PORT + self.ports - 1}"


def drive(config: PortsConfig, mode: str, tw_reuse: int) -> dict[str, Any]:
    """One fresh line: the sysctls in its client namespace, a server, the load; one row."""
    with DelayLine(LinkSpec(rtt_ms=config.rtt_ms)) as line:
        client = line.clients[0]
        line.sysctl(client, "net.ipv4.ip_local_port_range", config.port_range)
        line.sysctl(client, "net.ipv4.tcp_tw_reuse", str(tw_reuse))
        words = [config.server.value, "--keepalive-timeout", "60", "--keepalive-max", "0"]
        info = start_server(line, words, 0)  # the line adds the server's --host
        try:
            host, port = info.url.split("://", 1)[1].rsplit(":", 1)
            argv = [sys.executable, "-m", "benchmarks.scenarios.ports_client", mode, host, port,
                    f"{config.seconds:g}"]  # fmt: skip
            proc = subprocess.run(line.client_cmd(argv), capture_output=True, text=True,
                                  timeout=config.seconds + CLIENT_SLACK_S)  # fmt: skip
            if proc.returncode != 0:
                lines = proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"]
                raise ScenarioError(f"ports client: {lines[-1]}")
            result = json.loads(proc.stdout)
            time_wait = sum(
                1 for row in line.proc_net(client, "tcp").splitlines()[1:]
                if row.split()[3] == "06"
            )  # fmt: skip
        finally:
            if info.proc is not None:
                terminate(info.proc)
    at = result["eaddrnotavail_at_s"]
    return {
        "mode": mode, "tw_reuse": tw_reuse, "ports": config.ports, "rtt_ms": config.rtt_ms,
        "server": config.server.value, "seconds": config.seconds,
        "requests": result["requests"], "connections": result["connections"],
        "elapsed_s": round(result["elapsed_s"], 3),
        "connections_per_s": round(result["connections"] / max(result["elapsed_s"], 1e-9), 1),
        "eaddrnotavail": int(at is not None),
        "eaddrnotavail_at_s": "" if at is None else round(at, 3),
        "time_wait_after": time_wait,
        "other_errors": ";".join(f"{k}={v}" for k, v in sorted(result["other_errors"].items())),
    }  # fmt: skip


def verdict(row: dict[str, Any]) -> str:
    what = f"{row['mode']}, tcp_tw_reuse={row['tw_reuse']}"
    if row["eaddrnotavail"]:
        return (f"{what}: EADDRNOTAVAIL after {row['eaddrnotavail_at_s']} s and "
                f"{row['connections']} connections ({row['connections_per_s']:g}/s, "
                f"{row['ports']} ports, {row['time_wait_after']} in TIME_WAIT)")  # fmt: skip
    return (f"{what}: no EADDRNOTAVAIL in {row['elapsed_s']:g} s: {row['requests']} requests "
            f"on {row['connections']} connections "
            f"({row['time_wait_after']} in TIME_WAIT)")  # fmt: skip


def figure(rows: Sequence[dict[str, Any]], title: str) -> Any:
    """Connections made before the run stopped (red: it stopped at EADDRNOTAVAIL), per setting."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    labels = [f"{r['mode']}\ntw_reuse={r['tw_reuse']}" for r in rows]
    values = [r["requests"] for r in rows]
    colors = ["tab:red" if r["eaddrnotavail"] else "tab:green" for r in rows]
    bars = ax.bar(range(len(rows)), values, color=colors)
    for bar, r in zip(bars, rows, strict=True):
        note = (
            f"EADDRNOTAVAIL\nat {r['eaddrnotavail_at_s']} s" if r["eaddrnotavail"] else "no failure"
        )
        ax.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                    va="bottom", fontsize=7)  # fmt: skip
    ax.axhline(rows[0]["ports"], color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("requests before stopping", fontsize=8)
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def parse(argv: list[str]) -> tuple[PortsConfig, Path]:
    parser = OneLineParser(prog=PROG, description="Unpooled load against the ephemeral port range.")
    parser.add_argument("--quick", action="store_true", help="shorter runs (<= 45 s)")
    parser.add_argument("--ports", type=int, default=1000, help="ports in the client's range")
    parser.add_argument("--seconds", type=float, default=None, help="per run (default 8, quick 3)")
    parser.add_argument("--rtt", type=float, default=0.0, help="ms on the delay line")
    parser.add_argument("--server", default="uvloop", help="reference server")
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    try:
        server = ServerName(args.server)
        seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 8.0)
        config = PortsConfig(args.ports, seconds, args.rtt, server)
    except ValueError as exc:
        parser.error(
            str(exc) if isinstance(exc, ScenarioError) else f"unknown --server {args.server!r}"
        )
    except ScenarioError as exc:
        parser.error(str(exc))
    return config, args.results_dir


def measure(config: PortsConfig) -> list[dict[str, Any]]:
    rows = []
    for mode, tw_reuse in [*(("unpooled", t) for t in TW_REUSE), ("pooled", 0)]:
        row = drive(config, mode, tw_reuse)
        progress(PROG, verdict(row))
        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    config, results_dir = parse(argv)
    if os.geteuid() != 0:
        progress(
            PROG, "skipped: needs root (a client namespace; the host's sysctls are never changed)"
        )
        return 0
    try:
        check_preconditions()
    except NetError as exc:
        progress(PROG, f"skipped: {exc}")
        return 0
    output = Output.plan(results_dir, "ports")
    progress(PROG, f"client namespace with {config.ports} ephemeral ports ({config.port_range}), "
             f"{config.seconds:g} s per run, rtt {config.rtt_ms:g} ms")  # fmt: skip
    try:
        rows = measure(config)
    except KeyboardInterrupt:
        progress(PROG, "interrupted, line removed")
        return 130
    except (ScenarioError, NetError, ServerStartError, OSError, subprocess.TimeoutExpired) as exc:
        progress(PROG, f"error: {exc}")
        return 2
    output.write_csv(rows)
    output.write_png(figure(rows, f"ephemeral ports: {config.ports} ports, {config.server} server, "
                               f"rtt {config.rtt_ms:g} ms"))  # fmt: skip
    for row in rows:
        print(verdict(row))
    progress(PROG, f"wrote {output.csv} and {output.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
