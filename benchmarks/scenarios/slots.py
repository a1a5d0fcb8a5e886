"""`python -m benchmarks slots`: the 101st connection, when N slots are held by keep-alive users.

    python -m benchmarks slots [--quick] [--rtt MS] [--servers stdlib,aiohttp,uvloop]
                               [--timeouts 1,2,4] [--slots 100] [--newcomers 10]

The seed's question: "if the server can handle 100 connections and all use keep-alive, is the
101st dumped?". Each reference server runs with `--max-connections N` (rule 11: beyond N it
stops accepting, the listen backlog holds the rest) and keep-alive timeout T. N holders take
every slot: each sends 3 requests on one keep-alive connection, 0.1 s of think time apart, then
stays connected and silent (a user reading the page); they start T/2 / (N - 1) apart, so their
connections went idle over T/2. Then M newcomers arrive together, each connects and sends a
request at once (slots_client.py). Measured per newcomer, from one client clock:

- `connect_s`: connect() returning. The kernel completes the handshake while the backlog has
  room, whether or not the server accepts, so this is one RTT, not the wait;
- `first_byte_s`: connect() start to the response's first byte: the wait for the server to
  accept (a slot), then the request's own time. `accept_wait_s` subtracts the same client's
  first byte on an empty server (`baseline_first_byte_s`);
- `model_wait_s`: the `accept_wait_s` of the k-th newcomer (k = `rank` in first-byte order) if
  it waits for the k-th oldest idle holder's timeout: T minus that holder's idle age at the
  arrival (`idle_age_s`, the client's clock), minus 2 RTT: the server's idle timer started half
  an RTT before the client read the holder's response, and the newcomer's handshake and
  request (1.5 RTT) travel while it waits. A model: no server timer granularity in it.

Three modes per server: `keepalive` (T, no reclaim), `reclaim` (`--reclaim-idle`: the
longest-idle connection is closed for each newcomer) for every T, and `off` (T = 0: every
response closes; the holders' connections exist only during their requests) once. A row is
invalid when its mode was not achieved: a holder not answered, keep-alive modes with more than
one connection per holder or without an accept pause (the server was never full), a holder
closed before the newcomers arrived; `off` with fewer connections than requests.
"""

from __future__ import annotations

import contextlib
import enum
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import OneLineParser
from benchmarks.net.line import DelayLine
from benchmarks.net.spec import LinkSpec
from benchmarks.scenarios.output import (
    Output,
    ScenarioError,
    client_stdout,
    progress,
    pyplot,
    run_and_write,
)
from servers.launch import ServerProcess, terminate
from servers.options import REFERENCE_SERVERS, OptionsError, ServerName, ServerOptions

PROG = "python -m benchmarks slots"
REQUESTS = 3  # per holder, before it goes idle
THINK_S = 0.1  # between a holder's requests (shorter than any T here)
ARRIVE_MARGIN_S = 0.25  # after the last holder's last request, before the newcomers arrive
CLIENT_SLACK_S = 30.0
MIN_T, MAX_T = 1.0, 10.0  # T >= 1 s: the servers' 50 ms close granularity stays small


class Mode(enum.StrEnum):
    KEEPALIVE = "keepalive"  # T, and newcomers wait for an idle connection's timeout
    RECLAIM = "reclaim"  # T and --reclaim-idle: the longest-idle connection is closed for them
    OFF = "off"  # T = 0: connections last one request


@dataclass(frozen=True)
class SlotsConfig:
    """One invocation, validated on construction (the error's message is the CLI's line)."""

    servers: tuple[ServerName, ...] = REFERENCE_SERVERS
    timeouts: tuple[float, ...] = (1.0, 2.0, 4.0)
    slots: int = 100
    newcomers: int = 10
    rtt_ms: float = 0.0

    def __post_init__(self) -> None:
        if not self.servers or any(s not in REFERENCE_SERVERS for s in self.servers):
            raise ScenarioError("--servers: stdlib, aiohttp and uvloop only")
        if not self.timeouts or any(not MIN_T <= t <= MAX_T for t in self.timeouts):
            raise ScenarioError(f"--timeouts must be between {MIN_T:g} and {MAX_T:g} s")
        if not 2 <= self.slots <= 500:
            raise ScenarioError(f"--slots must be between 2 and 500, got {self.slots}")
        if not 1 <= self.newcomers <= self.slots:
            raise ScenarioError(f"--newcomers must be between 1 and --slots, got {self.newcomers}")
        if not 0 <= self.rtt_ms <= 100:
            raise ScenarioError(f"--rtt must be between 0 and 100 ms, got {self.rtt_ms}")
        # The oldest holder is idle about T/2 + 0.25 s at the arrival: the newcomers' requests
        # (2 RTT after it, with the handshake) must reach the server before T runs out.
        if any(t / 2 <= ARRIVE_MARGIN_S + 2 * self.rtt_ms / 1000 + 0.1 for t in self.timeouts):
            raise ScenarioError("every T must exceed 2 x (0.35 s + 2 RTT): the slots would free")


@dataclass(frozen=True)
class SlotsPlan:
    """What the client does in one run (slots_client.py reads it as JSON)."""

    holders: int
    requests: int
    think_s: float
    spread_s: float
    arrive_s: float
    newcomers: int
    newcomer_timeout_s: float

    @classmethod
    def of(cls, config: SlotsConfig, timeout_s: float) -> SlotsPlan:
        """Holders' idle starts spread over T/2; newcomers after the last one is idle."""
        spread = timeout_s / 2
        rtt = config.rtt_ms / 1000
        arrive = spread + (REQUESTS - 1) * THINK_S + (REQUESTS + 1) * rtt + ARRIVE_MARGIN_S
        return cls(config.slots, REQUESTS, THINK_S, spread, arrive, config.newcomers,
                   timeout_s + spread + 10.0)  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(asdict(self))


# -- where the processes run: loopback or the delay line ------------------------------------------


class Site:
    """Loopback, or a delay line: the server in its server namespace, the client in a client's."""

    def __init__(self, line: DelayLine | None) -> None:
        self.line = line

    @contextlib.contextmanager
    def server(self, options: ServerOptions) -> Iterator[tuple[str, Any]]:
        """A server: (its URL, a function returning its counters)."""
        if self.line is None:
            with ServerProcess(options) as proc:
                assert proc.ready is not None
                yield proc.ready.url, proc.counters
            return
        from benchmarks.net.cli import start_server

        line = self.line
        argv, placed = options.to_argv(), ("--host", "--port")  # the line chooses these two
        words = [w for i, w in enumerate(argv) if w not in placed and argv[i - 1] not in placed]
        info = start_server(line, words, 0)
        control = str(info.control_url).rstrip("/") + "/counters"
        try:
            yield info.url, lambda: json.loads(line.fetch(line.server, control))
        finally:
            if info.proc is not None:
                terminate(info.proc)

    @property
    def host(self) -> str:
        return self.line.server.address if self.line else "127.0.0.1"

    def client(self, argv: Sequence[str], timeout_s: float) -> dict[str, Any]:
        out = client_stdout(self.line, argv, timeout_s, "slots client")
        result: dict[str, Any] = json.loads(out)
        return result


# -- one run --------------------------------------------------------------------------------------


def server_options(site: Site, name: ServerName, mode: Mode, timeout_s: float, slots: int) -> Any:
    return ServerOptions(
        name, host=site.host, keepalive_timeout_s=0.0 if mode is Mode.OFF else timeout_s,
        keepalive_max=0, max_connections=slots, reclaim_idle=mode is Mode.RECLAIM,
    )  # fmt: skip


def drive(site: Site, config: SlotsConfig, name: ServerName, mode: Mode, timeout_s: float) -> Any:
    """One server, one mode, one T: the client's result and the server's counters after it."""
    plan = SlotsPlan.of(config, timeout_s)
    with site.server(server_options(site, name, mode, timeout_s, config.slots)) as (url, counters):
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        argv = [sys.executable, "-m", "benchmarks.scenarios.slots_client", host, port,
                plan.to_json()]  # fmt: skip
        result = site.client(argv, plan.arrive_s + plan.newcomer_timeout_s + CLIENT_SLACK_S)
        return plan, result, counters()


def invalid_reason(mode: Mode, plan: SlotsPlan, result: dict[str, Any], counters: Any) -> str:
    """Why the run did not achieve its mode ('' when it did)."""
    holders = result["holders"]
    if any(h["answered"] != plan.requests for h in holders):
        return f"a holder was not answered every time ({holder_errors(holders) or 'no error'})"
    connections = sum(h["connections"] for h in holders)
    if mode is Mode.OFF:
        return "" if connections == plan.holders * plan.requests else "keep-alive off not achieved"
    if connections != plan.holders:
        return f"{connections} holder connections for {plan.holders} holders"
    if counters["accept_pauses"] < 1:
        return "the server never ran out of slots"
    early = [h for h in holders if h["closed_by_server_at"] is not None]
    if any(h["closed_by_server_at"] < result["arrive_at"] for h in early):
        return "a holder's connection closed before the newcomers arrived"
    return ""


def rows_of(
    config: SlotsConfig, name: ServerName, mode: Mode, timeout_s: float, drove: Any
) -> list[dict[str, Any]]:
    """One row per newcomer, ranked by first byte (rank 1: the 101st connection)."""
    plan, result, counters = drove
    arrive = result["arrive_at"]
    idle = [arrive - h["idle_since"] for h in result["holders"] if h["idle_since"] is not None]
    ages = sorted(idle, reverse=True)
    reason = invalid_reason(mode, plan, result, counters)
    newcomers = sorted(result["newcomers"], key=lambda n: (n["first_byte_s"] is None,
                                                           n["first_byte_s"] or 0.0))  # fmt: skip
    baseline = result["baseline_first_byte_s"]
    rows = []
    for rank, n in enumerate(newcomers, 1):
        age = ages[rank - 1] if mode is not Mode.OFF and rank <= len(ages) else None
        model = 0.0
        if mode is Mode.KEEPALIVE and age is not None:
            model = max(timeout_s - age - 2 * config.rtt_ms / 1000, 0.0)
        first = n["first_byte_s"]
        rows.append({
            "server": name.value, "mode": mode.value,
            "keepalive_timeout_s": 0.0 if mode is Mode.OFF else timeout_s,
            "max_connections": config.slots, "holders": plan.holders, "newcomers": plan.newcomers,
            "requests_per_holder": plan.requests, "think_s": plan.think_s, "rtt_ms": config.rtt_ms,
            "rank": rank, "connect_s": _r(n["connect_s"]), "first_byte_s": _r(first),
            "accept_wait_s": _r(None if first is None else max(first - baseline, 0.0)),
            "baseline_first_byte_s": _r(baseline), "idle_age_s": _r(age),
            "model_wait_s": _r(model), "status": n["status"] or "", "error": n["error"],
            "holder_connections": sum(h["connections"] for h in result["holders"]),
            "holders_closed_by_server": sum(h["closed_by_server_at"] is not None
                                            for h in result["holders"]),
            "holder_errors": holder_errors(result["holders"]),
            "server_accepted": counters["connections_accepted"],
            "server_accept_pauses": counters["accept_pauses"],
            "server_reclaimed": counters["closed"]["reclaimed"],
            "server_idle_timeouts": counters["closed"]["idle_timeout"],
            "valid": int(not reason), "invalid_reason": reason,
        })  # fmt: skip
    return rows


def holder_errors(holders: Sequence[dict[str, Any]]) -> str:
    """`ConnectionResetError=2;...`: what went wrong for holders ('' when nothing did)."""
    counts: dict[str, int] = {}
    for h in holders:
        if h["error"]:
            counts[h["error"]] = counts.get(h["error"], 0) + 1
    return ";".join(f"{k}={v}" for k, v in sorted(counts.items()))


def _r(value: float | None) -> float | str:
    return "" if value is None else round(value, 6)


def measure(config: SlotsConfig) -> list[dict[str, Any]]:
    """Every server and mode, one after the other (waits are the measurement: never in parallel)."""
    line_cm: Any = DelayLine(LinkSpec(rtt_ms=config.rtt_ms)) if config.rtt_ms > 0 else None
    rows: list[dict[str, Any]] = []
    with line_cm if line_cm is not None else contextlib.nullcontext() as line:
        site = Site(line)
        for name in config.servers:
            runs = [(m, t) for t in config.timeouts for m in (Mode.KEEPALIVE, Mode.RECLAIM)]
            runs.append((Mode.OFF, min(config.timeouts)))  # its schedule: the shortest T's
            for mode, t in runs:
                mine = rows_of(config, name, mode, t, drive(site, config, name, mode, t))
                progress(PROG, run_line(mine))
                rows += mine
    return rows


# -- verdicts and plot ----------------------------------------------------------------------------


def ordinal(n: int) -> str:
    """101 -> '101st', 112 -> '112th'."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds:.2f} s"


def run_line(rows: Sequence[dict[str, Any]]) -> str:
    first = rows[0]
    what = f"{first['server']} {first['mode']} T {first['keepalive_timeout_s']:g} s"
    served = [r for r in rows if r["status"] == 200]
    failed = [r for r in rows if r["status"] != 200]
    waits = [r["first_byte_s"] for r in served]
    text = f"{what}: {len(served)}/{len(rows)} newcomers answered"
    if waits:
        text += f", first byte after {_ms(min(waits))}..{_ms(max(waits))}"
    if failed:
        text += f", {len(failed)} failed ({', '.join(sorted({r['error'] for r in failed}))})"
    if not first["valid"]:
        text += f"; INVALID: {first['invalid_reason']}"
    return text


def verdicts(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per server and T, in the seed's terms, from the 101st connection (rank 1) of each mode."""
    lines = []
    for server in dict.fromkeys(r["server"] for r in rows):
        mine = [r for r in rows if r["server"] == server]
        off = [r for r in mine if r["mode"] == Mode.OFF and r["rank"] == 1]
        for t in dict.fromkeys(r["keepalive_timeout_s"] for r in mine if r["mode"] != Mode.OFF):
            keep = _first(mine, Mode.KEEPALIVE, t)
            reclaim = _first(mine, Mode.RECLAIM, t)
            if keep is None:
                continue
            lines.append(f"{server}, T {t:g} s, {keep['max_connections']} slots: "
                         + seed_verdict(keep, reclaim, off[0] if off else None))  # fmt: skip
    return lines


def _first(rows: Sequence[dict[str, Any]], mode: Mode, t: float) -> dict[str, Any] | None:
    found = [r for r in rows if r["mode"] == mode and r["keepalive_timeout_s"] == t]
    return min(found, key=lambda r: r["rank"]) if found else None


def seed_verdict(
    keep: dict[str, Any], reclaim: dict[str, Any] | None, off: dict[str, Any] | None
) -> str:
    """'the 101st connection is not dumped: it waited X s, which is T minus ...'. The wait is
    `accept_wait_s`: its first byte minus that of a request to the empty server (which holds
    the handshake's and the request's round trips)."""
    nth = f"the {ordinal(keep['max_connections'] + 1)} connection"
    if not keep["valid"]:
        return f"inconclusive ({keep['invalid_reason']})"
    if keep["status"] != 200:
        return f"{nth} was dumped: {keep['error'] or 'no answer'}"
    t, wait, age = keep["keepalive_timeout_s"], keep["accept_wait_s"], keep["idle_age_s"]
    off_by = abs(wait - keep["model_wait_s"])
    rtts = ""
    if keep["rtt_ms"]:
        rtts = (
            f", minus 2 RTT ({2 * keep['rtt_ms'] / 1000:g} s: the server's timer started before "
            "the client read the response, the handshake travelled during the wait)"
        )
    text = (
        f"{nth} is not dumped: it waited {wait:.2f} s (its first byte came "
        f"{keep['first_byte_s']:.2f} s after connect(), "
        f"{_ms(keep['baseline_first_byte_s'])} on an empty server; connect() itself returned "
        f"after {_ms(keep['connect_s'])}: the kernel's backlog), which is T ({t:g} s) minus the "
        f"{age:.2f} s the oldest idle connection had already been idle{rtts}, to within "
        f"{_ms(off_by)}"
    )
    if reclaim is not None and reclaim["valid"] and reclaim["status"] == 200:
        text += f"; with --reclaim-idle its first byte came after {_ms(reclaim['first_byte_s'])}"
    if off is not None and off["valid"] and off["status"] == 200:
        text += (
            f"; with keep-alive off after {_ms(off['first_byte_s'])}, at the price of "
            f"{off['holder_connections']} connections for "
            f"{off['holders'] * off['requests_per_holder']} requests"
        )
    return text


MODE_STYLE = {Mode.KEEPALIVE: ("tab:red", "keep-alive, no reclaim"),
              Mode.RECLAIM: ("tab:green", "keep-alive + --reclaim-idle"),
              Mode.OFF: ("tab:blue", "keep-alive off (T = 0)")}  # fmt: skip
MARKERS = {"stdlib": "o", "aiohttp": "s", "uvloop": "^"}


def figure(rows: Sequence[dict[str, Any]], title: str) -> Any:
    """Wait to the first byte against T: the 101st connection (marker) and every newcomer (bar),
    per mode and server; the model T - idle age as a dashed line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.0))
    servers = list(dict.fromkeys(r["server"] for r in rows))
    width = 0.06
    for s_index, server in enumerate(servers):
        for mode, (color, _) in MODE_STYLE.items():
            mine = [r for r in rows if r["server"] == server and r["mode"] == mode and r["valid"]]
            for t in sorted({r["keepalive_timeout_s"] for r in mine}):
                waits = [r["first_byte_s"] for r in mine
                         if r["keepalive_timeout_s"] == t and r["first_byte_s"] != ""]  # fmt: skip
                first = [r for r in mine if r["keepalive_timeout_s"] == t and r["rank"] == 1]
                if not waits or not first or first[0]["first_byte_s"] == "":
                    continue
                x = t + (s_index - (len(servers) - 1) / 2) * width
                ax.vlines(x, min(waits), max(waits), color=color, alpha=0.4, linewidth=3)
                ax.scatter(x, first[0]["first_byte_s"], color=color, marker=MARKERS[server],
                           s=36, zorder=3, edgecolors="black", linewidths=0.4)  # fmt: skip
    model = sorted({(r["keepalive_timeout_s"], r["model_wait_s"] + r["baseline_first_byte_s"])
                    for r in rows
                    if r["mode"] == Mode.KEEPALIVE and r["rank"] == 1 and r["valid"]})  # fmt: skip
    if model:
        ts = sorted({t for t, _ in model})
        means = [sum(m for tt, m in model if tt == t) / sum(tt == t for tt, _ in model) for t in ts]
        label = "model: T - oldest idle age at arrival + an empty server's first byte"
        ax.plot(ts, means, linestyle="--", color="grey", linewidth=1, label=label)
    for color, label in MODE_STYLE.values():
        ax.scatter([], [], color=color, marker="s", label=label)
    for server in servers:
        ax.scatter([], [], color="white", edgecolors="black", marker=MARKERS[server], label=server)
    ax.set_yscale("log")
    ax.set_xlabel("keep-alive timeout T (s); keep-alive off plotted at T = 0", fontsize=8)
    ax.set_ylabel("newcomer: connect() to first response byte (s)", fontsize=8)
    # Below the axes: inside, it hides points at one T or another.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, frameon=False)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    return fig


# -- command line ---------------------------------------------------------------------------------


def _floats(text: str, flag: str, parser: OneLineParser) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        parser.error(f"{flag}: comma-separated seconds, got {text!r}")
        raise  # unreachable


def parse(argv: list[str]) -> tuple[SlotsConfig, Path]:
    parser = OneLineParser(prog=PROG, description="The 101st connection: N slots held by "
                           "keep-alive users, then newcomers.")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="uvloop, T 1 and 2 s (<= 45 s)")
    parser.add_argument("--rtt", type=float, default=0.0, help="ms; > 0 uses the delay line (root)")
    parser.add_argument("--servers", default=None, help="comma-separated (default all three)")
    parser.add_argument("--timeouts", default=None, help="T values in s (default 1,2,4)")
    parser.add_argument("--slots", type=int, default=100, help="--max-connections (default 100)")
    parser.add_argument("--newcomers", type=int, default=10, help="users arriving (default 10)")
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    default_servers = "uvloop" if args.quick else ",".join(REFERENCE_SERVERS)
    timeouts = _floats(args.timeouts or ("1,2" if args.quick else "1,2,4"), "--timeouts", parser)
    try:
        servers = tuple(ServerName(s) for s in (args.servers or default_servers).split(",") if s)
        config = SlotsConfig(servers, timeouts, args.slots, args.newcomers, args.rtt)
    except ValueError as exc:
        parser.error(str(exc) if isinstance(exc, ScenarioError) else f"--servers: {exc}")
    except (ScenarioError, OptionsError) as exc:
        parser.error(str(exc))
    return config, args.results_dir


def main(argv: list[str]) -> int:
    config, results_dir = parse(argv)
    output = Output.plan(results_dir, "slots")
    where = f"rtt {config.rtt_ms:g} ms (delay line)" if config.rtt_ms else "loopback"
    progress(PROG, f"{', '.join(config.servers)}; {config.slots} slots, {config.newcomers} "
             f"newcomers, T {', '.join(f'{t:g}' for t in config.timeouts)} s; {where}")  # fmt: skip
    title = (f"the {ordinal(config.slots + 1)} connection: {config.slots} slots held by keep-alive "
             f"users, {config.newcomers} newcomers; {where}")  # fmt: skip
    return run_and_write(
        PROG, output, lambda: measure(config), lambda rows: figure(rows, title), verdicts
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
