"""`python -m benchmarks thinktime`: the keep-alive timeout against the time between requests.

    python -m benchmarks thinktime [--quick] [--rtt MS] [--server uvloop] [--means 0.5,1,2]
                                   [--timeouts 1,1.5,2,3,4,6] [--seconds S] [--max N]

Users that wait a random think time between requests (exponential, mean m) keep their
connection only if the wait is shorter than the server's idle timeout T. Measured from the
server (its idle timer starts when it has written a response, the next request arrives one
round trip after the response left), the usable window is T' = T - RTT, so the model is

    P(reuse) = 1 - exp(-T'/m)          and, with at most N requests per connection,
    P(reuse) = 1 - (1 - p) / (1 - p^N)  (a connection carries (1 - p^N)/(1 - p) requests).

For every (m, T) of the sweep (T >= 1 s, so the servers' close granularity of up to 50 ms
stays small next to it; the outcome depends on T/m, so m and T are scaled to keep the run
short) one server with `--keepalive-timeout T` and its own population of open-loop users (each
on its own connection: `benchmarks.clients.openloop` via thinktime_client.py) run, all points
at once. Per point: the reuse fraction from the server's counters (`reuse_measured`: new
connections beyond each user's first, against the gaps it saw) and the client's own
(`reuse_client`), the model (`reuse_model`) and the check |measured - model| <= 0.03; new
connections per second; idle connections held open (the server's open connections, sampled);
the server's RSS per idle connection (its RSS growth at the peak of open connections, over
their number); server CPU per request; p50/p99 latency from each request's intended start.
Plus one point per N of `--max` (the smallest m at the largest T): what a max of N requests
per connection adds. With --rtt the servers sit in the delay line's server namespace and the
users in a client one.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

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
from servers.launch import ServerProcess, fetch_counters, terminate
from servers.options import OptionsError, ServerName, ServerOptions

PROG = "python -m benchmarks thinktime"
TOLERANCE = 0.03  # |measured - model| the check allows
TARGET_REUSE = 0.95
SAMPLE_S = 0.25  # the server's open connections and RSS, sampled this often
CLIENT_SLACK_S = 60.0
MIN_USERS, MAX_USERS = 20, 2000
SERVERS = (ServerName.STDLIB, ServerName.AIOHTTP, ServerName.UVLOOP)


@dataclass(frozen=True)
class Point:
    """One cell of the sweep: users of mean think m against a server of timeout T (and max N)."""

    mean_s: float
    timeout_s: float
    keepalive_max: int = 0  # 0: unlimited
    users: int = 100
    seed: int = 1


@dataclass(frozen=True)
class ThinkConfig:
    """One run, validated on construction (the error's message is the CLI's line)."""

    means_s: tuple[float, ...] = (0.5, 1.0, 2.0)
    timeouts_s: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    seconds: float = 100.0
    rtt_ms: float = 0.0  # 0: loopback, no delay line
    server: ServerName = ServerName.UVLOOP
    max_requests: tuple[int, ...] = (10,)
    gaps_per_point: int = 6000  # users are sized so that each point sees about this many gaps
    seed: int = 1

    def __post_init__(self) -> None:
        if self.server not in SERVERS:
            raise ScenarioError(
                f"--server must be one of stdlib, aiohttp, uvloop, got {self.server}"
            )
        if not self.means_s or not all(0.05 <= m <= 30 for m in self.means_s):
            raise ScenarioError(f"--means must be seconds between 0.05 and 30, got {self.means_s}")
        if not self.timeouts_s or not all(1 <= t <= 60 for t in self.timeouts_s):
            raise ScenarioError(
                f"--timeouts must be seconds between 1 and 60, got {self.timeouts_s}"
            )
        if not 5 <= self.seconds <= 600:
            raise ScenarioError(f"--seconds must be between 5 and 600, got {self.seconds:g}")
        if not 0 <= self.rtt_ms <= 200 or self.rtt_ms / 1000 >= min(self.timeouts_s) / 2:
            raise ScenarioError(
                f"--rtt must be between 0 and 200 ms and under T/2, got {self.rtt_ms:g}"
            )
        if not all(n >= 2 for n in self.max_requests):
            raise ScenarioError(f"--max must be at least 2 requests, got {self.max_requests}")
        if self.gaps_per_point < 100:
            raise ScenarioError(f"--gaps must be at least 100, got {self.gaps_per_point}")

    def users_for(self, mean_s: float) -> int:
        """Enough users for `gaps_per_point` gaps in the run: each makes about seconds/m - 1."""
        per_user = max(self.seconds / mean_s - 1, 1)
        return min(max(math.ceil(self.gaps_per_point / per_user), MIN_USERS), MAX_USERS)

    def points(self) -> list[Point]:
        grid = [(m, t, 0) for m in self.means_s for t in self.timeouts_s]
        grid += [(min(self.means_s), max(self.timeouts_s), n) for n in self.max_requests]
        return [
            Point(m, t, n, self.users_for(m), self.seed + i) for i, (m, t, n) in enumerate(grid)
        ]


# -- the model --------------------------------------------------------------------------------


def usable_window_s(timeout_s: float, rtt_ms: float) -> float:
    """T minus one round trip: the longest think time after which the request still arrives
    before the server's idle timer (started when the response left) ends."""
    return max(timeout_s - rtt_ms / 1000, 0.0)


def reuse_model(mean_s: float, timeout_s: float, rtt_ms: float, keepalive_max: int = 0) -> float:
    """P(reuse) of a gap: 1 - exp(-T'/m); with a max of N, 1 - (1 - p)/(1 - p^N)."""
    p = 1 - math.exp(-usable_window_s(timeout_s, rtt_ms) / mean_s)
    if keepalive_max <= 0:
        return p
    if p >= 1:  # the limit: every connection carries exactly N requests
        return 1 - 1 / keepalive_max
    return 1 - (1 - p) / (1 - p**keepalive_max)


def timeout_for(reuse: float, mean_s: float, rtt_ms: float) -> float:
    """The smallest T the model says reaches `reuse`: m ln(1/(1 - reuse)) + RTT (3.0 m at 95%)."""
    return mean_s * math.log(1 / (1 - reuse)) + rtt_ms / 1000


def idle_model(users: int, mean_s: float, timeout_s: float) -> float:
    """Connections a server holds idle at once: a user's connection is open for min(think, T)
    of each think (the request itself is short), so users x (m (1 - e^(-T/m))) / m."""
    return users * (1 - math.exp(-timeout_s / mean_s))


def reuse_from_server(accepted: int, served: int, firsts: int) -> float | None:
    """From the server's counters: of the gaps it saw (requests beyond each chain's first), the
    share that came on a connection it already had (no new accept)."""
    gaps = served - firsts
    return 1 - (accepted - firsts) / gaps if gaps > 0 else None


# -- where processes run: loopback or the delay line ---------------------------------------------


@dataclass
class Server:
    """A running reference server: its URL, pid and a way to read its counters."""

    url: str
    pid: int
    read_counters: Any

    def counters(self) -> dict[str, Any]:
        return dict(self.read_counters())


class Site:
    """Loopback, or the delay line: servers in its server namespace, clients in a client one."""

    def __init__(self, line: DelayLine | None) -> None:
        self.line = line

    @contextlib.contextmanager
    def server(self, name: ServerName, timeout_s: float, keepalive_max: int) -> Iterator[Server]:
        host = self.line.server.address if self.line else "127.0.0.1"
        options = ServerOptions(name, host=host, keepalive_timeout_s=timeout_s,
                                keepalive_max=keepalive_max)  # fmt: skip
        if self.line is None:
            with ServerProcess(options) as proc:
                ready = proc.ready
                assert ready is not None
                yield Server(ready.url, ready.pid, lambda: fetch_counters(ready.control_url))
            return
        from benchmarks.net.cli import start_server

        line = self.line
        argv = options.to_argv()
        for flag in ("--host", "--port"):  # the line chooses both
            at = argv.index(flag)
            del argv[at : at + 2]
        info = start_server(line, argv, 0)
        control = f"{info.control_url}/counters"
        try:
            assert info.pid is not None
            yield Server(info.url, info.pid,
                         lambda: json.loads(line.fetch(line.server, control)))  # fmt: skip
        finally:
            if info.proc is not None:
                terminate(info.proc)

    def client(self, argv: Sequence[str], timeout_s: float) -> dict[str, Any]:
        out = client_stdout(self.line, argv, timeout_s, "thinktime client")
        result: dict[str, Any] = json.loads(out)
        return result


def client_argv(url: str, point: Point, seconds: float) -> list[str]:
    """The one place the scenario client's command line is spelled."""
    return [sys.executable, "-m", "benchmarks.scenarios.thinktime_client", url, str(point.users),
            repr(point.mean_s), repr(seconds), str(point.seed)]  # fmt: skip


class Sampler:
    """The server's open connections and RSS every SAMPLE_S, in a thread, while the users run."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.process = psutil.Process(server.pid)
        self.samples: list[tuple[int, int, float]] = []  # (open connections, rss bytes, time)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            with contextlib.suppress(Exception):  # a sample lost is a sample fewer, no more
                open_now = int(self.server.counters()["connections_open"])
                rss = self.process.memory_info().rss
                self.samples.append((open_now, rss, time.monotonic()))


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def measure_point(site: Site, config: ThinkConfig, point: Point, server: Server) -> dict[str, Any]:
    """One point's users against its own (running) server; one row."""
    process = psutil.Process(server.pid)
    before, rss_base, cpu_before = server.counters(), process.memory_info().rss, cpu_s(process)
    with Sampler(server) as sampler:
        started = time.monotonic()
        result = site.client(client_argv(server.url, point, config.seconds),
                             config.seconds + CLIENT_SLACK_S)  # fmt: skip
    after, cpu_after = server.counters(), cpu_s(process)
    # Idle connections in the steady state: once every user had time to come back (T and 3 m
    # after the start) until the users stop (after that, connections only time out)
    settle = min(max(point.timeout_s, 3 * point.mean_s), config.seconds / 2)
    steady = [s[0] for s in sampler.samples if started + settle <= s[2] <= started + config.seconds]
    peak = max(sampler.samples, default=(0, rss_base, 0.0))
    return row_of(config, point, result, before, after, (steady, peak[0], peak[1]), rss_base,
                  cpu_after - cpu_before)  # fmt: skip


def row_of(
    config: ThinkConfig, point: Point, result: dict[str, Any], before: dict[str, Any],
    after: dict[str, Any], open_samples: tuple[Sequence[int], int, int], rss_base: int,
    cpu_s: float,
) -> dict[str, Any]:  # fmt: skip
    """The CSV row of a point; `open_samples` is (open connections in the steady state, the
    peak of open connections, the server's RSS at that peak)."""
    accepted = int(after["connections_accepted"]) - int(before["connections_accepted"])
    served = int(after["requests_served"]) - int(before["requests_served"])
    firsts, gaps = int(result["firsts"]), int(result["gaps"])
    measured = reuse_from_server(accepted, served, firsts)
    model = reuse_model(point.mean_s, point.timeout_s, config.rtt_ms, point.keepalive_max)
    client_reuse = result["reused"] / gaps if gaps else None
    steady, peak_open, peak_rss = open_samples
    per_conn = (peak_rss - rss_base) / peak_open / 1024 if peak_open else None
    elapsed = float(result["elapsed_s"])
    sigma = math.sqrt(model * (1 - model) / gaps) if gaps else None
    diff = measured - model if measured is not None else None
    return {
        "mean_think_s": point.mean_s, "keepalive_timeout_s": point.timeout_s,
        "keepalive_max": point.keepalive_max, "rtt_ms": config.rtt_ms,
        "server": config.server.value, "users": point.users, "seed": point.seed,
        "seconds": round(elapsed, 3), "requests": served, "gaps": gaps,
        "reuse_measured": _round(measured), "reuse_client": _round(client_reuse),
        "reuse_model": round(model, 4), "diff": _round(diff), "sigma": _round(sigma),
        "within_tolerance": int(diff is not None and abs(diff) <= TOLERANCE),
        "new_connections_per_s": round(accepted / elapsed, 2) if elapsed > 0 else 0.0,
        "connections_accepted": accepted,
        "idle_open_mean": round(sum(steady) / len(steady), 1) if steady else "",
        "idle_open_model": "" if point.keepalive_max else
        round(idle_model(point.users, point.mean_s, point.timeout_s), 1),
        "open_peak": peak_open,
        "rss_base_kib": rss_base // 1024, "rss_peak_kib": peak_rss // 1024,
        "rss_per_idle_conn_kib": _round(per_conn, 2),
        "server_cpu_us_per_req": round(cpu_s / served * 1e6, 1) if served else 0.0,
        "latency_p50_ms": round(float(result["latency_p50_ms"]), 3),
        "latency_p99_ms": round(float(result["latency_p99_ms"]), 3),
        "races": result.get("races", 0), "late_starts": result.get("late", 0),
        "errors": sum(result.get("errors", {}).values()),
        "error_kinds": ";".join(f"{k}={v}" for k, v in sorted(result.get("errors", {}).items())),
        "closed_idle_timeout": int(after["closed"]["idle_timeout"])
        - int(before["closed"]["idle_timeout"]),
        "closed_max_reached": int(after["closed"]["max_reached"])
        - int(before["closed"]["max_reached"]),
    }  # fmt: skip


def _round(value: float | None, digits: int = 4) -> float | str:
    return "" if value is None else round(value, digits)


def measure_points(
    site: Site, config: ThinkConfig, points: Sequence[Point]
) -> list[dict[str, Any]]:
    """The servers one after another (a start is mostly imports: at once, on a busy machine,
    they would crowd each other), then every point's users at once."""
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(site.server(config.server, p.timeout_s, p.keepalive_max))
            for p in points
        ]
        with ThreadPoolExecutor(max_workers=len(points)) as pool:
            futures = [
                pool.submit(measure_point, site, config, p, s)
                for p, s in zip(points, servers, strict=True)
            ]
            return [f.result() for f in futures]


def measure(config: ThinkConfig) -> list[dict[str, Any]]:
    """Every point at once (the users mostly sleep), on loopback or in one delay line."""
    line_cm: Any = DelayLine(LinkSpec(rtt_ms=config.rtt_ms)) if config.rtt_ms > 0 else None
    points = config.points()
    with line_cm if line_cm is not None else contextlib.nullcontext() as line:
        rows = measure_points(Site(line), config, points)
    for row in rows:
        progress(PROG, point_line(row))
    return rows


# -- verdicts and plot ------------------------------------------------------------------------


def point_line(row: dict[str, Any]) -> str:
    n = f", max {row['keepalive_max']}" if row["keepalive_max"] else ""
    ok = "ok" if row["within_tolerance"] else "OUTSIDE"
    return (f"m {row['mean_think_s']:g} s, T {row['keepalive_timeout_s']:g} s{n}: reuse "
            f"{row['reuse_measured']} (model {row['reuse_model']}, {ok} within {TOLERANCE}), "
            f"{row['gaps']} gaps, {row['new_connections_per_s']:g} new conn/s, "
            f"{row['idle_open_mean']:g} idle open")  # fmt: skip


def verdicts(rows: Sequence[dict[str, Any]], rtt_ms: float) -> list[str]:
    """The check, then for each m the smallest measured T reaching 95% and what it costs."""
    sweep = [r for r in rows if not r["keepalive_max"]]
    inside = sum(r["within_tolerance"] for r in rows)
    worst = max(rows, key=lambda r: abs(r["diff"]) if r["diff"] != "" else math.inf)
    lines = [f"check |measured - model| <= {TOLERANCE}: {inside} of {len(rows)} points pass "
             f"(largest difference {worst['diff']} at m {worst['mean_think_s']:g} s, "
             f"T {worst['keepalive_timeout_s']:g} s)"]  # fmt: skip
    for mean in sorted({r["mean_think_s"] for r in sweep}):
        mine = sorted((r for r in sweep if r["mean_think_s"] == mean),
                      key=lambda r: r["keepalive_timeout_s"])  # fmt: skip
        model_t = timeout_for(TARGET_REUSE, mean, rtt_ms)
        hit = next((r for r in mine if r["reuse_measured"] != "" and
                    r["reuse_measured"] >= TARGET_REUSE), None)  # fmt: skip
        head = f"m {mean:g} s: model T95 = {model_t:.2f} s ({model_t / mean:.2f} m)"
        if hit is None:
            top = mine[-1]
            lines.append(f"{head}; no T up to {top['keepalive_timeout_s']:g} s reached 95% "
                         f"(measured {top['reuse_measured']})")  # fmt: skip
            continue
        idle = hit["idle_open_mean"] if hit["idle_open_mean"] != "" else hit["open_peak"]
        per_user = idle / hit["users"]
        mem = (f", {hit['rss_per_idle_conn_kib']:g} KiB of server RSS each, "
               f"{idle * hit['rss_per_idle_conn_kib'] / 1024:.1f} MiB in all"
               if hit["rss_per_idle_conn_kib"] != "" else "")  # fmt: skip
        lines.append(
            f"{head}; measured: T {hit['keepalive_timeout_s']:g} s reaches "
            f"{hit['reuse_measured']:.3f}, holding {per_user:.2f} idle connections per user "
            f"({idle:g} for {hit['users']} users){mem}; "
            f"{hit['new_connections_per_s']:g} new connections/s"
        )
    for r in (r for r in rows if r["keepalive_max"]):
        base = reuse_model(r["mean_think_s"], r["keepalive_timeout_s"], rtt_ms)
        lines.append(
            f"max {r['keepalive_max']} requests (m {r['mean_think_s']:g} s, T "
            f"{r['keepalive_timeout_s']:g} s): reuse {r['reuse_measured']} against "
            f"{base:.4f} without it (model {r['reuse_model']}): about one new connection per "
            f"{r['keepalive_max']} requests more, {r['closed_max_reached']} closes at the max"
        )
    return lines


def figure(rows: Sequence[dict[str, Any]], title: str, rtt_ms: float) -> Any:
    """Reuse against T/m: measured dots per m, the model curve, the 95% line."""
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    sweep = [r for r in rows if not r["keepalive_max"]]
    means = sorted({r["mean_think_s"] for r in sweep})
    top = max(r["keepalive_timeout_s"] / r["mean_think_s"] for r in sweep)
    xs = [i * top / 200 for i in range(201)]
    ax.plot(xs, [1 - math.exp(-x) for x in xs], color="grey", linewidth=1,
            label="model 1 - exp(-T'/m)")  # fmt: skip
    for mean in means:
        mine = [r for r in sweep if r["mean_think_s"] == mean and r["reuse_measured"] != ""]
        ax.scatter([usable_window_s(r["keepalive_timeout_s"], rtt_ms) / mean for r in mine],
                   [r["reuse_measured"] for r in mine], label=f"measured, m = {mean:g} s",
                   s=24)  # fmt: skip
        held = [r for r in mine if r["idle_open_mean"] != ""]
        ax2.plot([r["keepalive_timeout_s"] for r in held],
                 [r["idle_open_mean"] / r["users"] for r in held], marker="o",
                 label=f"m = {mean:g} s")  # fmt: skip
    ax.axhline(TARGET_REUSE, color="tab:red", linestyle=":", linewidth=1)
    ax.set_xlabel("T'/m  (T' = T - RTT, m = mean think time)", fontsize=8)
    ax.set_ylabel("share of gaps with the connection reused", fontsize=8)
    ax.legend(fontsize=7)
    ax2.set_xlabel("server keep-alive timeout T (s)", fontsize=8)
    ax2.set_ylabel("idle connections held per user", fontsize=8)
    ax2.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# -- command line -----------------------------------------------------------------------------


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ScenarioError(f"{flag}: comma-separated seconds, got {text!r}") from None


def parse(argv: list[str]) -> tuple[ThinkConfig, Path]:
    parser = OneLineParser(prog=PROG, description="Keep-alive timeout against think time.")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter points (<= 45 s)")
    parser.add_argument("--rtt", type=float, default=0.0, help="ms; > 0 uses the delay line (root)")
    parser.add_argument("--server", default="uvloop", help="reference server (default uvloop)")
    parser.add_argument("--means", help="mean think times m, s (default 0.5,1,2; quick 0.5,1)")
    parser.add_argument(
        "--timeouts", help="server timeouts T >= 1, s (default 1,1.5,2,3,4,6; quick 1,3)"
    )
    parser.add_argument(
        "--seconds", type=float, help="per point, all at once (default 100, quick 12)"
    )
    parser.add_argument("--max", default="10", help="keep-alive max points (N), comma-separated")
    parser.add_argument("--gaps", type=int, help="gaps per point the users are sized for")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    quick = args.quick
    try:
        server = ServerName(args.server)
    except ValueError:
        parser.error(f"--server must be one of stdlib, aiohttp, uvloop, got {args.server!r}")
    try:
        config = ThinkConfig(
            means_s=_floats(args.means or ("0.5,1" if quick else "0.5,1,2"), "--means"),
            timeouts_s=_floats(
                args.timeouts or ("1,3" if quick else "1,1.5,2,3,4,6"), "--timeouts"
            ),  # fmt: skip
            seconds=args.seconds if args.seconds is not None else (12.0 if quick else 100.0),
            rtt_ms=args.rtt,
            server=server,
            max_requests=tuple(int(v) for v in args.max.split(",") if v.strip()),
            gaps_per_point=args.gaps if args.gaps is not None else (1800 if quick else 6000),
            seed=args.seed,
        )
    except (ScenarioError, OptionsError) as exc:
        parser.error(str(exc))
    except ValueError:
        parser.error(f"--max: comma-separated whole numbers, got {args.max!r}")
    return config, args.results_dir


def main(argv: list[str]) -> int:
    config, results_dir = parse(argv)
    output = Output.plan(results_dir, "thinktime")
    where = f"rtt {config.rtt_ms:g} ms (delay line)" if config.rtt_ms else "loopback"
    points = config.points()
    progress(PROG, f"{config.server} server, {where}: {len(points)} points at once for "
             f"{config.seconds:g} s, m {', '.join(f'{m:g}' for m in config.means_s)} s, "
             f"T {', '.join(f'{t:g}' for t in config.timeouts_s)} s, "
             f"{sum(p.users for p in points)} users in all")  # fmt: skip
    title = f"think time against keep-alive timeout: {config.server} server, {where}"
    return run_and_write(
        PROG, output, lambda: measure(config),
        lambda rows: figure(rows, title, config.rtt_ms), lambda rows: verdicts(rows, config.rtt_ms),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
