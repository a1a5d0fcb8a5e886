"""`python -m benchmarks race`: the idle-timeout race, client by client, then behind nginx.

    python -m benchmarks race [--quick] [--rtt MS] [--server aiohttp] [--timeout T]
                              [--clients http.client,requests,...] [--no-proxy]

A client reuses a pooled connection just as the server's idle timer closes it. For each client
library (each in a process of its own, see race_client.py / race_client.mjs), GET and POST apart:
a request, a wait of T + delta, the next request, classified from the server's counters and the
library's own retry count as

- `reused`: answered on the same connection;
- `new-connection`: the library noticed the close (the FIN) and connected again first;
- `retried`: it sent on the dead connection, failed, and sent again (the server saw the request
  twice, or the library's counters say so: the first attempt usually never reached the server);
- `failed`: the request raised; the exception's type is kept.

delta steps across +-2 RTT (+-5 ms on loopback), plus points 25 ms, 60 ms and 250 ms past it: a
server's close lands up to its timer granularity after T (uvloop and stdlib: 50 ms; aiohttp
within a few ms, hence the default). Then the load-balancer case: nginx as a reverse proxy with
an upstream keep-alive pool whose idle time (T + 1 s) is longer than the backend's T; requests
through it spaced T + delta apart; 502s counted for GET and POST; then the fix, the backend's T
above the proxy's (T + 2 s), with the same spacing. With --rtt the servers sit in the delay
line's server namespace and the clients (and nginx) in a client namespace.
"""

from __future__ import annotations

import contextlib
import enum
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from benchmarks.serverperf.nginx import find_nginx, free_port, nginx_string, temp_path_lines
from servers.launch import ServerProcess, terminate
from servers.options import OptionsError, ServerName, ServerOptions

PROG = "python -m benchmarks race"
HERE = Path(__file__).resolve().parent
PY_CLIENTS = ("http.client", "requests", "aiohttp", "geventhttpclient")
CLIENTS = (*PY_CLIENTS, "node")
METHODS = ("GET", "POST")
TAIL_MS = (25.0, 60.0, 250.0)  # past the sweep: a close up to a timer tick late, and well after
CLIENT_TIMEOUT_S = 170.0
PROXY_KEEPALIVE_EXTRA_S = 1.0  # nginx keeps upstream connections T + 1 s: longer than the backend
FIX_EXTRA_S = 2.0  # the fix: the backend's T above the proxy's
RACE_SERVERS = (ServerName.STDLIB, ServerName.AIOHTTP, ServerName.UVLOOP)


class Outcome(enum.StrEnum):
    REUSED = "reused"
    NEW_CONNECTION = "new-connection"
    RETRIED = "retried"
    FAILED = "failed"


@dataclass(frozen=True)
class RaceConfig:
    """One run, validated on construction (the message of the error is the CLI's line)."""

    server: ServerName = ServerName.AIOHTTP
    timeout_s: float = 2.0
    rtt_ms: float = 0.0
    clients: tuple[str, ...] = CLIENTS
    points: int = 11
    proxy: bool = True
    proxy_trials: int = 16

    def __post_init__(self) -> None:
        if self.server not in RACE_SERVERS:
            raise ScenarioError(
                f"--server must be one of stdlib, aiohttp, uvloop, got {self.server}"
            )
        if not 0.5 <= self.timeout_s <= 10:
            raise ScenarioError(f"--timeout must be between 0.5 and 10 s, got {self.timeout_s}")
        if not 0 <= self.rtt_ms <= 200 or self.rtt_ms * 2 / 1000 >= self.timeout_s / 2:
            raise ScenarioError(
                f"--rtt must be between 0 and 200 ms and 2 RTT under T/2, got {self.rtt_ms}"
            )
        unknown = [c for c in self.clients if c not in CLIENTS]
        if unknown or not self.clients:
            raise ScenarioError(
                f"--clients: unknown {', '.join(unknown) or '(none given)'} "
                f"(known: {', '.join(CLIENTS)})"
            )
        if self.points < 2 or self.proxy_trials < 2:
            raise ScenarioError(f"--points must be at least 2, got {self.points}")

    def deltas_ms(self) -> list[float]:
        """+-2 RTT (at least +-5 ms) in `points` steps, then the tail points past it."""
        span = max(2 * self.rtt_ms, 5.0)
        step = 2 * span / (self.points - 1)
        sweep = [round(-span + i * step, 3) for i in range(self.points)]
        return [*sweep, *(span + t for t in TAIL_MS)]

    def proxy_deltas_ms(self) -> list[float]:
        """Dense over the proxy's race window: a request fails when it leaves nginx less than one
        RTT before the backend's FIN reaches it (delta in (-RTT, 0) plus the backend's close
        lateness), so the sweep runs from -1.5 to +0.5 RTT (at least +-5 ms)."""
        span = max(self.rtt_ms, 5.0)
        n = self.proxy_trials
        return [round(-1.5 * span + 2 * span * i / (n - 1), 3) for i in range(n)]


def classify(trial: dict[str, Any]) -> tuple[Outcome, str]:
    """One trial's outcome from what the server counted and what the library said."""
    if trial.get("status") != 200:
        return Outcome.FAILED, str(trial.get("error") or f"status {trial.get('status')}")
    if trial.get("retries", 0) > 0 or trial.get("served", 1) >= 2:
        return Outcome.RETRIED, ""
    if trial.get("accepted", 0) >= 1:
        return Outcome.NEW_CONNECTION, ""
    return Outcome.REUSED, ""


# -- where processes run: loopback or the delay line ---------------------------------------------


class Site:
    """Loopback, or the delay line: servers in its server namespace, clients in a client one."""

    def __init__(self, line: DelayLine | None) -> None:
        self.line = line
        self._procs: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()
        # A dozen sweeps start a server each at once; two at a time keeps a busy machine's
        # start-ups inside the READY timeout (the sweeps then overlap their sleeps as before).
        self._starting = threading.BoundedSemaphore(2)

    @property
    def server_host(self) -> str:
        return self.line.server.address if self.line else "127.0.0.1"

    @contextlib.contextmanager
    def server(self, timeout_s: float, name: ServerName) -> Iterator[tuple[str, str]]:
        """A reference server with keep-alive timeout T: (url, control url)."""
        options = ServerOptions(name, host=self.server_host, keepalive_timeout_s=timeout_s,
                                keepalive_max=0)  # fmt: skip
        if self.line is None:
            server = ServerProcess(options)
            try:
                with self._starting:
                    ready = server.start()
                yield ready.url, ready.control_url
            finally:
                server.stop()
            return
        from benchmarks.net.cli import start_server

        words = _without_flags(options.to_argv(), ("--host", "--port"))
        with self._starting:
            info = start_server(self.line, words, 0)  # the line adds the server's --host
        try:
            yield info.url, str(info.control_url)
        finally:
            if info.proc is not None:
                terminate(info.proc)

    def client(self, argv: Sequence[str], timeout_s: float) -> str:
        """Run a client to its end on the client side; its stdout."""
        return client_stdout(self.line, argv, timeout_s, argv[2] if len(argv) > 2 else argv[0])

    def spawn(self, argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """A long-running process on the client side (nginx), stopped by `close`."""
        if self.line is not None:
            return self.line.spawn(self.line.clients[0], argv, **popen)
        proc = subprocess.Popen(argv, start_new_session=True, **popen)
        with self._lock:
            self._procs.append(proc)
        return proc

    def connect(self, port: int) -> socket.socket:
        """A connection to 127.0.0.1:port on the client side (nginx's listener)."""
        if self.line is not None:
            return self.line.connect(self.line.clients[0], ("127.0.0.1", port), 10.0)
        return socket.create_connection(("127.0.0.1", port), timeout=10.0)

    def close(self) -> None:
        for proc in self._procs:
            with contextlib.suppress(OSError):
                terminate(proc)
        self._procs.clear()


def _without_flags(argv: Sequence[str], flags: Sequence[str]) -> list[str]:
    """argv minus each `FLAG VALUE` pair named (the line binds the server itself)."""
    out: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in flags:
            skip = True
        else:
            out.append(word)
    return out


# -- the client sweep -------------------------------------------------------------------------


def client_argv(
    client: str, method: str, url: str, control: str, waits: Sequence[float]
) -> list[str]:
    """The one place a race client's command line is spelled."""
    text = ",".join(f"{w:.6f}" for w in waits)
    if client == "node":
        return ["node", str(HERE / "race_client.mjs"), method, url, control, text]
    return [sys.executable, "-m", "benchmarks.scenarios.race_client", client, method, url, control,
            text]  # fmt: skip


def sweep(site: Site, config: RaceConfig, client: str, method: str) -> list[dict[str, Any]]:
    """One client and method over every delta, against a server of its own."""
    deltas = config.deltas_ms()
    waits = [config.timeout_s + d / 1000 for d in deltas]
    with site.server(config.timeout_s, config.server) as (url, control):
        out = site.client(client_argv(client, method, url, control, waits), CLIENT_TIMEOUT_S)
    rows = []
    for delta, trial in zip(deltas, json.loads(out), strict=True):
        outcome, error = classify(trial)
        rows.append({
            "part": "client", "client": client, "method": method, "server": config.server.value,
            "keepalive_timeout_s": config.timeout_s, "proxy_keepalive_s": "",
            "rtt_ms": config.rtt_ms, "delta_ms": delta,
            "actual_delta_ms": _actual_delta_ms(trial, config.timeout_s),
            "outcome": outcome.value, "error": error,
            "status": trial.get("status"),
            "accepted": trial.get("accepted", ""), "served": trial.get("served", ""),
            "retries": trial.get("retries", ""),
        })  # fmt: skip
    return rows


def _actual_delta_ms(trial: dict[str, Any], timeout_s: float) -> float | str:
    """The delta the client really waited ('' when it failed before the wait)."""
    slept = trial.get("actual_wait_s")
    return "" if slept is None else round((float(slept) - timeout_s) * 1000, 3)


def run_clients(site: Site, config: RaceConfig) -> list[dict[str, Any]]:
    """Every client and method at once (each mostly sleeps), each with its own server."""
    jobs = [(c, m) for c in config.clients for m in METHODS]
    if "node" in config.clients and shutil.which("node") is None:
        progress(PROG, "node: skipped (node not found; apt-get install nodejs)")
        jobs = [(c, m) for c, m in jobs if c != "node"]
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {job: pool.submit(sweep, site, config, *job) for job in jobs}
        for (client, method), future in futures.items():
            result = future.result()
            rows += result
            progress(PROG, f"{client} {method}: {summary(result)}")
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


# -- the load-balancer case -------------------------------------------------------------------


def proxy_config(prefix: Path, port: int, backend: str, keepalive_s: float) -> str:
    """nginx in front of one backend with an upstream keep-alive pool (the AWS ALB situation)."""
    temp_paths = temp_path_lines(prefix)
    return f"""daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp_paths}
    upstream backend {{
        server {backend};
        keepalive 8;
        keepalive_timeout {keepalive_s:g}s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {nginx_string("backend")};
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_proxy(site: Site, backend: str, keepalive_s: float) -> Iterator[tuple[int, Path]]:
    """nginx on the client side in a temporary prefix; yields its port and its error log."""
    binary = find_nginx()
    if binary is None:
        raise ScenarioError("nginx not found (apt-get install nginx)")
    prefix = Path(tempfile.mkdtemp(prefix="keepalive-bench-race-"))
    proc = None
    try:
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(proxy_config(prefix, port, backend, keepalive_s))
        proc = site.spawn([binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c",
                           str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                site.connect(port).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (prefix / "error.log").read_text(errors="replace").splitlines()
                    why = log[-1] if log else "no log"
                    raise ScenarioError(f"nginx did not start: {why}") from None
                time.sleep(0.05)
        yield port, prefix / "error.log"
    finally:
        if proc is not None:
            terminate(proc)
        shutil.rmtree(prefix, ignore_errors=True)


def proxied(site: Site, port: int, method: str) -> int:
    """One request through nginx on a connection of its own; the status."""
    body = b"race-body-0123456789" if method == "POST" else b""
    head = f"{method} / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n" if method == "POST" else "\r\n"
    with site.connect(port) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while b"\r\n" not in data and (chunk := sock.recv(4096)):
            data += chunk
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def proxy_case(
    site: Site, config: RaceConfig, method: str, backend_t: float
) -> list[dict[str, Any]]:
    """Requests through nginx spaced T + delta apart (T the broken backend's), 502s counted."""
    keepalive_s = config.timeout_s + PROXY_KEEPALIVE_EXTRA_S
    rows = []
    with (
        site.server(backend_t, config.server) as (url, _),
        nginx_proxy(site, url.split("://", 1)[1], keepalive_s) as (port, error_log),
    ):
        proxied(site, port, method)
        last = time.monotonic()
        for delta in config.proxy_deltas_ms():
            time.sleep(max(0.0, last + config.timeout_s + delta / 1000 - time.monotonic()))
            errors_before = upstream_errors(error_log)
            sent = time.monotonic()  # a busy machine oversleeps: the row keeps the real spacing
            status = proxied(site, port, method)
            actual_ms = round((sent - last - config.timeout_s) * 1000, 3)
            last = time.monotonic()
            met = upstream_errors(error_log) - errors_before
            outcome = "failed" if status != 200 else "retried" if met else "ok"
            rows.append({
                "part": "proxy" if backend_t < keepalive_s else "proxy-fixed", "client": "nginx",
                "method": method, "server": config.server.value, "keepalive_timeout_s": backend_t,
                "proxy_keepalive_s": keepalive_s, "rtt_ms": config.rtt_ms, "delta_ms": delta,
                "actual_delta_ms": actual_ms, "outcome": outcome,
                "error": "" if status == 200 else f"status {status}", "status": status,
                "accepted": "", "served": "", "retries": met if status == 200 else 0,
            })  # fmt: skip
    return rows


def upstream_errors(error_log: Path) -> int:
    """Failures nginx met on upstream connections, by its own error log (one line each:
    'upstream prematurely closed connection', 'recv() failed (104: ...)', ...)."""
    try:
        text = error_log.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return sum("upstream" in line for line in text.splitlines())


def run_proxy(site: Site, config: RaceConfig) -> list[dict[str, Any]]:
    fixed_t = config.timeout_s + FIX_EXTRA_S
    jobs = [(m, t) for t in (config.timeout_s, fixed_t) for m in METHODS]
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(proxy_case, site, config, m, t) for m, t in jobs]
        for (method, t), future in zip(jobs, futures, strict=True):
            result = future.result()
            rows += result
            bad = sum(r["status"] == 502 for r in result)
            progress(PROG, f"nginx {method}, backend T {t:g} s: {bad} of {len(result)} 502")
    return rows


# -- verdicts and plot ------------------------------------------------------------------------


def failure_window(rows: Sequence[dict[str, Any]]) -> str:
    """Where in the sweep requests failed: a range of the deltas really waited, or 'none'."""
    ordered = sorted(rows, key=lambda r: r["delta_ms"])
    failed = [r for r in ordered if r["outcome"] == "failed"]
    if not failed:
        return "no failures"
    first, last = (_real_delta(r) for r in (failed[0], failed[-1]))
    if failed[-1] is ordered[-1] and len(failed) > 1:
        return f"fails from delta {first:+.0f} ms to the end of the sweep ({last:+.0f} ms)"
    return f"fails for delta {first:+.0f}..{last:+.0f} ms (width {last - first:.0f} ms)"


def _real_delta(row: dict[str, Any]) -> float:
    """The delta the client really waited, where it said so; else the one asked."""
    actual = row.get("actual_delta_ms")
    return float(actual) if isinstance(actual, int | float) else float(row["delta_ms"])


def verdicts(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    client_rows = [r for r in rows if r["part"] == "client"]
    for client in dict.fromkeys(r["client"] for r in client_rows):
        parts = []
        for method in METHODS:
            mine = [r for r in client_rows if r["client"] == client and r["method"] == method]
            if not mine:
                continue
            after = {r["outcome"] for r in mine if r["delta_ms"] > 0}
            errors = sorted({r["error"] for r in mine if r["error"]})
            how = "retries" if "retried" in after else "does not retry"
            noticed = "notices the close" if "new-connection" in after else "never notices"
            raised = f" ({', '.join(errors)})" if errors else ""
            parts.append(f"{method}: {failure_window(mine)}{raised}; {noticed}, {how}")
        lines.append(f"{client}: " + "; ".join(parts))
    for part, label in (("proxy", "nginx, backend T < proxy's"), ("proxy-fixed", "nginx, fixed")):
        mine = [r for r in rows if r["part"] == part]
        if mine:
            t = mine[0]["keepalive_timeout_s"]
            parts = [_proxy_verdict([r for r in mine if r["method"] == m], m) for m in METHODS]
            lines.append(
                f"{label} (backend T {t:g} s, proxy {mine[0]['proxy_keepalive_s']:g} s): "
                + "; ".join(p for p in parts if p)
            )
    return lines


def _proxy_verdict(rows: Sequence[dict[str, Any]], method: str) -> str:
    """`POST 7/21 502 for delta -18..-2 ms (width 16 ms)`, and whether nginx sent any twice."""
    if not rows:
        return ""
    bad = sorted(r["actual_delta_ms"] for r in rows if r["status"] == 502)
    where = ""
    if bad:
        where = f" for delta {bad[0]:+.1f}..{bad[-1]:+.1f} ms (width {bad[-1] - bad[0]:.1f} ms)"
    retries = sum(r["outcome"] == "retried" for r in rows)
    twice = f"; {retries} met a closed upstream and were retried by nginx" if retries else ""
    return f"{method} {len(bad)}/{len(rows)} 502{where}{twice}"


COLORS = {"reused": "tab:green", "new-connection": "tab:blue", "retried": "tab:orange",
          "failed": "tab:red", "ok": "tab:green"}  # fmt: skip


def figure(rows: Sequence[dict[str, Any]], title: str) -> Any:
    """Outcome against delta: one strip per client and method, a dot per trial; below it the
    nginx strips (their own, denser deltas around the proxy's race window)."""
    plt = pyplot()
    client_rows = [r for r in rows if r["part"] == "client"]
    proxy_rows = [r for r in rows if r["part"] != "client"]
    panels = [(client_rows, "the second request asked for T + delta after the first response")]
    if proxy_rows:
        panels.append((proxy_rows, "requests through nginx spaced T + delta (T: the broken "
                       "backend's)"))  # fmt: skip
    heights = [len(_strips(r)) + 1.5 for r, _ in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 0.45 * sum(heights) + 1),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)  # fmt: skip
    for ax, (mine, xlabel) in zip(axes[:, 0], panels, strict=True):
        _strip_panel(ax, mine, xlabel)
    for name in ("reused", "new-connection", "retried", "failed"):
        axes[0, 0].scatter([], [], color=COLORS[name], marker="s", label=name)
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, 1.25),
                      frameon=False)  # fmt: skip
    axes[0, 0].set_title(title, fontsize=9, pad=22)
    fig.tight_layout()
    return fig


def _strips(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((_strip_name(r), r["method"]) for r in rows))


def _strip_name(row: dict[str, Any]) -> str:
    if row["part"] == "client":
        return str(row["client"])
    return f"nginx, backend T {row['keepalive_timeout_s']:g} s"


def _strip_panel(ax: Any, rows: Sequence[dict[str, Any]], xlabel: str) -> None:
    """Each trial at the delta it really waited (a busy machine oversleeps), with the model's
    race window, (-RTT, 0), shaded; linear across the sweep, logarithmic past it."""
    strips = _strips(rows)
    rtt = float(rows[0]["rtt_ms"])
    for y, strip in enumerate(strips):
        for r in rows:
            if (_strip_name(r), r["method"]) == strip:
                ax.scatter(_real_delta(r), y, color=COLORS[r["outcome"]], s=50, marker="s")
    ax.set_yticks(range(len(strips)), [f"{c} {m}" for c, m in strips], fontsize=8)
    ax.set_xscale("symlog", linthresh=max(2.5 * rtt, 10.0))
    if rtt > 0:
        ax.axvspan(-rtt, 0, color="tab:red", alpha=0.08, label="model: race window (-RTT, 0)")
        ax.legend(fontsize=7, loc="lower right")
    ax.axvline(0, color="grey", lw=0.6, ls=":")
    step = max(rtt, 5.0)
    ticks = [k * step for k in range(-3, 3)] + [t for t in (50, 100, 300) if t > 2.5 * step]
    ax.set_xticks(ticks, [f"{t:+g}" for t in ticks], fontsize=7)
    ax.set_xlabel(f"delta (ms), as waited: {xlabel}", fontsize=8)
    ax.set_ylim(len(strips) - 0.5, -0.5)


# -- command line -----------------------------------------------------------------------------


def parse(argv: list[str]) -> tuple[RaceConfig, Path]:
    parser = OneLineParser(prog=PROG, description="The idle-timeout race, client by client, and "
                           "nginx's 502s.")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="T 1 s, fewer points (<= 45 s)")
    parser.add_argument("--rtt", type=float, default=0.0, help="ms; > 0 uses the delay line (root)")
    parser.add_argument("--server", default="aiohttp", help="reference server (default aiohttp)")
    parser.add_argument("--timeout", type=float, default=None, help="server's T in s (default 2)")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated")
    parser.add_argument("--points", type=int, default=None, help="deltas in the +-2 RTT sweep")
    parser.add_argument("--no-proxy", action="store_true", help="skip the nginx case")
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    try:
        server = ServerName(args.server)
    except ValueError:
        parser.error(f"--server must be one of stdlib, aiohttp, uvloop, got {args.server!r}")
    try:
        config = RaceConfig(
            server=server,
            timeout_s=args.timeout if args.timeout is not None else (1.0 if args.quick else 2.0),
            rtt_ms=args.rtt,
            clients=tuple(c for c in args.clients.split(",") if c),
            points=args.points if args.points is not None else (3 if args.quick else 11),
            proxy=not args.no_proxy,
            proxy_trials=11 if args.quick else 21,
        )
    except (ScenarioError, OptionsError) as exc:
        parser.error(str(exc))
    return config, args.results_dir


def measure(config: RaceConfig) -> list[dict[str, Any]]:
    """Both parts, on loopback or inside a delay line that is removed whatever happens."""
    line_cm: Any = DelayLine(LinkSpec(rtt_ms=config.rtt_ms)) if config.rtt_ms > 0 else None
    with line_cm if line_cm is not None else contextlib.nullcontext() as line:
        site = Site(line)
        try:
            with ThreadPoolExecutor(max_workers=2) as pool:  # both parts mostly sleep: at once
                proxy = pool.submit(run_proxy, site, config) if config.proxy else None
                rows = run_clients(site, config)
                rows += proxy.result() if proxy is not None else []
        finally:
            site.close()
    return rows


def main(argv: list[str]) -> int:
    config, results_dir = parse(argv)
    output = Output.plan(results_dir, "race")
    where = f"rtt {config.rtt_ms:g} ms (delay line)" if config.rtt_ms else "loopback"
    progress(PROG, f"{config.server} server, T {config.timeout_s:g} s, {where}, "
             f"deltas {', '.join(f'{d:+g}' for d in config.deltas_ms())} ms")  # fmt: skip
    title = f"idle-timeout race: {config.server} T {config.timeout_s:g} s, {where}"
    return run_and_write(
        PROG, output, lambda: measure(config), lambda rows: figure(rows, title), verdicts
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
