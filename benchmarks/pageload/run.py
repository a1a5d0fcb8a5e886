"""Running the page-load grid on the delay line: servers, clients, counters, rows.

One `DelayLine` per RTT; on it one server process per (server, keep-alive, TLS) in the server
namespace, and in the client namespace the clients: the Python client as one process per batch
(argv in, JSON out) and one Chromium driver for the whole line (a browser takes seconds to
start; it reads batches on stdin). Around every batch the server's counters are read from its
own namespace (never through the relay): accepted connections and served requests are what the
row's mode is judged by, and what each client's own account must agree with.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchmarks.clients.contract import Mode
from benchmarks.harness.fingerprint import Fingerprint
from benchmarks.net import DelayLine, LinkSpec
from benchmarks.net.netns import NetError
from benchmarks.pageload import browser as browser_client
from benchmarks.pageload.certs import RunCertificate
from benchmarks.pageload.config import Batch, Client, KeepAlive, PageLoadConfig, Tls
from benchmarks.pageload.model import CONNECTIONS_PER_HOST, handshake_round_trips, schedule
from benchmarks.pageload.pyclient import PageClientConfig
from benchmarks.pageload.rows import PAGELOAD_SCHEMA_VERSION, PageLoadRow
from servers.launch import ReadyInfo, ServerStartError, read_ready, server_command
from servers.options import ServerName, ServerOptions

READY_TIMEOUT_S = 30.0
BROWSER_START_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 5.0
LOAD_TIMEOUT_S = 60.0
INFO = "info: "  # a note that says what a browser did, not why the row is invalid


class RunError(Exception):
    """Something that stops the whole run (the line, the browser): one line."""


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default), q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def model_for(batch: Batch) -> tuple[int, int]:
    """(round trips, connections) of the paper model for this batch."""
    h = handshake_round_trips(batch.tls.value)
    pooled = batch.expected_mode is Mode.POOLED
    max_requests = batch.keepalive.max_requests if pooled else 1
    s = schedule(batch.resources, h, max_requests)
    return s.round_trips, s.connections


def max_pooled_connections(resources: int, keepalive: KeepAlive) -> int:
    """A pooled load's ceiling: six connections, plus one per keep-alive max's worth."""
    if keepalive.max_requests == 0:
        return CONNECTIONS_PER_HOST
    return CONNECTIONS_PER_HOST + math.ceil((resources + 1) / keepalive.max_requests)


# -- the server on the line ----------------------------------------------------------------


class LineServer:
    """A reference server in the line's server namespace; counters read from inside it."""

    def __init__(
        self,
        line: DelayLine,
        name: ServerName,
        keepalive: KeepAlive,
        tls: Tls,
        cert: RunCertificate | None,
        log: Path,
    ) -> None:
        self.line = line
        self.name = name
        options = ServerOptions(
            name=name,
            host=line.server.address,
            port=0,
            keepalive_timeout_s=keepalive.timeout_s,
            keepalive_max=keepalive.max_requests,
            tls=tls.enabled,
            certfile=cert.certfile if tls.enabled and cert else None,
            keyfile=cert.keyfile if tls.enabled and cert else None,
        )
        self._log = log.open("ab")
        self.proc = line.spawn(
            line.server,
            server_command(options),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            stderr=self._log,
            text=True,
        )
        self.ready: ReadyInfo = read_ready(self.proc, name, READY_TIMEOUT_S)

    @property
    def url(self) -> str:
        return self.ready.url

    def counters(self) -> dict[str, Any]:
        if self.proc.poll() is not None:
            raise ServerStartError(f"the {self.name} server exited ({self.proc.returncode})")
        data: dict[str, Any] = json.loads(
            self.line.fetch(self.line.server, self.ready.control_url + "/counters")
        )
        return data

    def settled(self) -> dict[str, Any]:
        """Counters once every connection of the batch is closed (or after a timeout)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            snap = self.counters()
            if snap["connections_open"] == 0 or time.monotonic() > deadline:
                return snap
            time.sleep(0.02)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def _read_line(proc: subprocess.Popen[str], timeout_s: float, what: str) -> str:
    """The next stdout line of `proc` (select, so a silent child cannot hang the run)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.05)
        if ready:
            line = proc.stdout.readline()
            if line:
                return line
            break
        if proc.poll() is not None:
            break
    status = proc.poll()
    if status is not None:
        raise ServerStartError(f"{what} exited with status {status}")
    raise ServerStartError(f"{what} said nothing in {timeout_s:g} s")


# -- the clients ---------------------------------------------------------------------------


class BrowserDriver:
    """`benchmarks.pageload.browser --serve` in the client namespace, for the line's life."""

    def __init__(self, line: DelayLine, cert: RunCertificate | None, log: Path) -> None:
        argv = [sys.executable, "-m", "benchmarks.pageload.browser", "--serve"]
        argv += ["--timeout", repr(LOAD_TIMEOUT_S)]
        if cert is not None:
            argv += ["--spki", cert.spki_sha256]
        self._log = log.open("ab")
        self.proc = line.spawn(
            line.clients[0],
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        try:
            word, payload = self._line(BROWSER_START_TIMEOUT_S)
        except ServerStartError as exc:
            raise RunError(f"chromium did not start: {exc} (see {log})") from None
        if word != "READY":
            raise RunError(f"chromium did not start: {word} (see {log})")
        self.version = str(payload.get("browser_version", ""))

    def _line(self, timeout_s: float) -> tuple[str, dict[str, Any]]:
        line = _read_line(self.proc, timeout_s, "the chromium driver")
        word, _, payload = line.partition(" ")
        return word, json.loads(payload) if payload.strip() else {}

    def batch(self, url: str, loads: int, resources: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        request = {"url": url, "loads": loads, "resources": resources}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        word, payload = self._line(loads * (LOAD_TIMEOUT_S + 10))
        if word != "RESULT":
            raise RunError(f"the chromium driver said {word!r}")
        return payload

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # EOF: the driver closes the browser and exits
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def run_python(line: DelayLine, batch: Batch, url: str, ca: Path | None) -> dict[str, Any]:
    config = PageClientConfig(
        url=url,
        resources=batch.resources,
        size=batch.size,
        mode=batch.client.mode,
        loads=batch.loads,
        ca_path=ca,
        timeout_s=LOAD_TIMEOUT_S,
    )
    done = subprocess.run(
        line.client_cmd(config.command()),
        capture_output=True,
        text=True,
        timeout=batch.loads * (LOAD_TIMEOUT_S + 10) + 30,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {last[:300]}", "loads": []}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# -- one batch, one row --------------------------------------------------------------------


@dataclass
class Outcome:
    """A batch's row and its raw loads (kept in the run's loads.jsonl)."""

    row: PageLoadRow
    loads: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0


def chromium_agreement(loads: list[dict[str, Any]]) -> tuple[int, str]:
    """(preconnected connections, disagreement) from Chromium's per-response connection ids.

    Every response after the first on a connection id must say connectionReused; the first may
    say it too, when Chromium opened the connection before it had a request for it (a
    preconnect): those are counted, not flagged."""
    preconnected = 0
    for load in loads:
        seen: set[Any] = set()
        for fetch in load.get("fetches", []):
            conn = fetch.get("connection")
            if conn in seen and not fetch.get("reused"):
                return preconnected, f"response on connection {conn} not marked reused"
            if conn not in seen and fetch.get("reused"):
                preconnected += 1
            seen.add(conn)
    return preconnected, ""


UNKNOWN = -1  # a handshake count nobody counted (a server without the counter)
# The servers' /counters keys for TLS (servers.counters): handshakes that succeeded, and of
# those the resumed ones; full = handshakes - resumed. A server without them (a build from before
# they existed) leaves both figures unknown.
TLS_COUNTERS = ("tls_handshakes", "tls_resumed")


@dataclass(frozen=True)
class ServerDelta:
    """What the server counted over one batch: its /counters after minus before."""

    connections: int
    requests: int
    # full and resumed TLS handshakes; UNKNOWN where the server has no such counter
    tls_full: int = UNKNOWN
    tls_resumed: int = UNKNOWN


def server_delta(before: dict[str, Any], after: dict[str, Any]) -> ServerDelta:
    """The batch's counts from two /counters snapshots; a counter missing from either is
    unknown (a server from before the counter existed), never 0."""

    def diff(key: str) -> int:
        a, b = after.get(key), before.get(key)
        return a - b if isinstance(a, int) and isinstance(b, int) else UNKNOWN

    handshakes, resumed = (diff(key) for key in TLS_COUNTERS)
    full = handshakes - resumed if UNKNOWN not in (handshakes, resumed) else UNKNOWN
    return ServerDelta(
        after["connections_accepted"] - before["connections_accepted"],
        after["requests_served"] - before["requests_served"],
        full,
        resumed,
    )


def tls_per_page(
    batch: Batch, good: list[dict[str, Any]], delta: ServerDelta, n_loads: int
) -> tuple[float, float]:
    """(full, resumed) TLS handshakes per load. The Python client counts its own; Chromium
    does not say, so the server's counters do (UNKNOWN without them); plain HTTP has none."""
    if not batch.tls.enabled:
        return 0.0, 0.0
    pages = max(len(good), 1)
    if batch.client is not Client.CHROMIUM:
        return (
            sum(float(ld.get("tls_full", 0)) for ld in good) / pages,
            sum(float(ld.get("tls_resumed", 0)) for ld in good) / pages,
        )
    full, resumed = (
        float(UNKNOWN) if n == UNKNOWN else n / max(n_loads, 1)
        for n in (delta.tls_full, delta.tls_resumed)
    )
    return full, resumed


def make_row(
    batch: Batch,
    fp: Fingerprint,
    run_id: str,
    started: str,
    result: dict[str, Any],
    delta: ServerDelta | tuple[int, int],
    link: tuple[int, int, int],
    browser_version: str,
) -> PageLoadRow:
    loads = result.get("loads", [])
    errors = [ld["error"] for ld in loads if ld.get("error")]
    if result.get("error"):
        errors.insert(0, result["error"])
    good = [ld for ld in loads if not ld.get("error")]
    n_loads = max(len(loads), 1)
    times = [float(ld["page_load_ms"]) for ld in good]
    if not isinstance(delta, ServerDelta):
        delta = ServerDelta(*delta)
    d_conn, d_req = delta.connections, delta.requests
    expected_requests = batch.loads * (batch.resources + 1)
    rounds, model_conns = model_for(batch)
    model_ms = rounds * batch.rtt_ms
    p50 = percentile(times, 50)

    def per_page(key: str, default: float = 0.0) -> float:
        return sum(float(ld.get(key, default)) for ld in good) / max(len(good), 1)

    notes: list[str] = []
    client_conns = sum(int(ld.get("connections", 0)) for ld in good)
    preconnected = 0
    if batch.client is Client.CHROMIUM:
        preconnected, disagreement = chromium_agreement(good)
        if disagreement:
            notes.append(f"chromium: {disagreement}")
        if preconnected:
            notes.append(f"{INFO}chromium preconnected {preconnected} connection(s)")
    if errors:
        notes.append(f"{len(errors)} load(s) failed: {errors[0]}")
    if d_req != expected_requests:
        notes.append(f"server served {d_req} requests, expected {expected_requests}")
    unused = d_conn - client_conns
    if batch.client is Client.CHROMIUM and unused > 0 and d_req == expected_requests:
        # A connection Chromium opened ahead (a preconnect) that no request needed: the server
        # accepted it, no response names it. Counted, as the preconnects above.
        notes.append(f"{INFO}chromium opened {unused} connection(s) it never used")
    elif not errors and client_conns != d_conn:
        notes.append(f"client saw {client_conns} connections, server accepted {d_conn}")
    if batch.expected_mode is Mode.UNPOOLED and d_conn != d_req:
        notes.append(f"unpooled not achieved: {d_req} requests on {d_conn} connections")
    if batch.expected_mode is Mode.POOLED:
        ceiling = batch.loads * max_pooled_connections(batch.resources, batch.keepalive)
        if d_conn > ceiling or (batch.keepalive.max_requests != 1 and d_conn >= d_req > 1):
            notes.append(f"pooled not achieved: {d_conn} connections for {d_req} requests")
    valid = int(all(n.startswith(INFO) for n in notes))
    notes = [n.removeprefix(INFO) for n in notes]
    tls_full, tls_resumed = tls_per_page(batch, good, delta, n_loads)
    tls_versions = sorted({str(ld.get("tls_version", "")) for ld in good} - {""})
    return PageLoadRow(
        schema_version=PAGELOAD_SCHEMA_VERSION,
        run_id=run_id,
        started_utc=started,
        git_commit=fp.git_commit,
        host_id=fp.host_id,
        cpu_model=fp.cpu_model,
        cpu_count=fp.cpu_count,
        kernel=fp.kernel,
        python_version=fp.python_version,
        packages=fp.packages,
        browser_version=browser_version if batch.client is Client.CHROMIUM else "",
        server=batch.server.value,
        client=batch.client.value,
        mode=batch.expected_mode.value,
        tls=batch.tls.value,
        tls_version=",".join(tls_versions),
        rtt_ms=batch.rtt_ms,
        resources=batch.resources,
        resource_bytes=batch.size,
        keepalive_timeout_s=batch.keepalive.timeout_s,
        keepalive_max=batch.keepalive.max_requests,
        repetition=batch.repetition,
        loads=len(loads),
        page_load_p50_ms=p50,
        page_load_p90_ms=percentile(times, 90),
        page_load_min_ms=min(times, default=math.nan),
        page_load_max_ms=max(times, default=math.nan),
        document_p50_ms=percentile([float(ld["document_ms"]) for ld in good], 50),
        client_connections_per_page=per_page("connections"),
        reused_per_page=per_page("reused"),
        preconnected_per_page=preconnected / max(len(good), 1),
        tls_full_per_page=tls_full,
        tls_resumed_per_page=tls_resumed,
        bytes_per_page=per_page("bytes_received"),
        client_cpu_p50_ms=percentile([float(ld.get("cpu_ms", 0.0)) for ld in good], 50),
        connections_per_page=d_conn / n_loads,
        requests_per_page=d_req / n_loads,
        requests_per_connection=d_req / d_conn if d_conn else 0.0,
        model_round_trips=rounds,
        model_connections=model_conns,
        model_ms=model_ms,
        model_ratio=p50 / model_ms if model_ms > 0 and times else 0.0,
        link_packets=link[0],
        link_drops=link[1],
        link_lateness_p99_us=link[2],
        valid=valid if not errors else 0,
        status="ok" if not errors else "client-failed",
        note="; ".join(notes),
    )


# -- the run -------------------------------------------------------------------------------


@dataclass
class RunContext:
    config: PageLoadConfig
    fingerprint: Fingerprint
    run_id: str
    folder: Path  # artifacts: logs, loads.jsonl, the certificate
    cert: RunCertificate | None
    on_start: Callable[[Batch], None]
    on_done: Callable[[Batch, Outcome], None]
    now_utc: Callable[[], str]


def run_grid(ctx: RunContext) -> None:
    """Every batch, in order; RunError, NetError or KeyboardInterrupt stop it (rows so far are
    already written by `on_done`)."""
    batches = ctx.config.batches()
    for rtt, in_line in itertools.groupby(batches, key=lambda b: b.rtt_ms):
        with DelayLine(LinkSpec(rtt_ms=rtt)) as line:
            _run_line(ctx, line, list(in_line))


def _run_line(ctx: RunContext, line: DelayLine, batches: list[Batch]) -> None:
    driver: BrowserDriver | None = None
    if any(b.client is Client.CHROMIUM for b in batches):
        driver = BrowserDriver(line, ctx.cert, ctx.folder / "chromium.log")
    try:
        key = lambda b: (b.server, b.keepalive, b.tls)  # noqa: E731
        for (name, ka, tls), group in itertools.groupby(batches, key=key):
            _run_server(ctx, line, driver, name, ka, tls, list(group))
    finally:
        if driver is not None:
            driver.close()


def _run_server(
    ctx: RunContext,
    line: DelayLine,
    driver: BrowserDriver | None,
    name: ServerName,
    ka: KeepAlive,
    tls: Tls,
    batches: list[Batch],
) -> None:
    try:
        server = LineServer(line, name, ka, tls, ctx.cert, ctx.folder / f"server-{name}.log")
    except ServerStartError as exc:
        for batch in batches:
            ctx.on_start(batch)
            ctx.on_done(batch, _failed(ctx, batch, "server-start", str(exc)))
        return
    try:
        for batch in batches:
            ctx.on_start(batch)
            ctx.on_done(batch, _run_batch(ctx, line, driver, server, batch))
    finally:
        server.close()


def _failed(ctx: RunContext, batch: Batch, status: str, why: str) -> Outcome:
    result = {"error": why, "loads": []}
    row = make_row(batch, ctx.fingerprint, ctx.run_id, ctx.now_utc(), result, (0, 0), (0, 0, 0), "")
    row = _replace(row, status=status, valid=0)
    return Outcome(row)


def _replace(row: PageLoadRow, **changes: Any) -> PageLoadRow:
    from dataclasses import replace

    return replace(row, **changes)


def _run_batch(
    ctx: RunContext, line: DelayLine, driver: BrowserDriver | None, server: LineServer, batch: Batch
) -> Outcome:
    started_wall = time.monotonic()
    started = ctx.now_utc()
    try:
        before = server.settled()
        link_before = line.stats()
        if batch.client is Client.CHROMIUM:
            assert driver is not None
            path = f"/page?n={batch.resources}&size={batch.size}"
            result = driver.batch(server.url + path, batch.loads, batch.resources)
            version = driver.version
        else:
            ca = ctx.cert.ca_path if ctx.cert is not None and batch.tls.enabled else None
            result = run_python(line, batch, server.url, ca)
            version = ""
        after = server.settled()
        link_after = line.stats()
    except (ServerStartError, NetError) as exc:
        return _failed(ctx, batch, "server-died", str(exc))
    except subprocess.TimeoutExpired:
        return _failed(ctx, batch, "client-timeout", "the client did not finish")
    delta = server_delta(before, after)
    link = (
        link_after.packets - link_before.packets,
        link_after.drops - link_before.drops,
        link_after.lateness_p99_us or 0,
    )
    row = make_row(batch, ctx.fingerprint, ctx.run_id, started, result, delta, link, version)
    return Outcome(row, result.get("loads", []), time.monotonic() - started_wall)


def write_loads(stream: IO[str], batch: Batch, outcome: Outcome) -> None:
    """One JSON line per load: the batch's cell and the load, fetches compacted."""
    for number, load in enumerate(outcome.loads, 1):
        compact = {k: v for k, v in load.items() if k != "fetches"}
        compact["fetches"] = [
            [f.get("connection"), int(bool(f.get("reused")))] for f in load.get("fetches", [])
        ]
        cell = {
            "server": batch.server.value, "client": batch.client.value,
            "rtt_ms": batch.rtt_ms, "resources": batch.resources, "tls": batch.tls.value,
            "keepalive": batch.keepalive.label, "repetition": batch.repetition, "load": number,
        }  # fmt: skip
        stream.write(json.dumps({**cell, **compact}) + "\n")
    stream.flush()


def merged(outcomes: Sequence[Outcome]) -> list[float]:
    """Every good load's page-load time over the repetitions of one cell."""
    return [float(ld["page_load_ms"]) for o in outcomes for ld in o.loads if not ld.get("error")]


def summary_median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def iter_cells(outcomes: Sequence[tuple[Batch, Outcome]]) -> Iterator[tuple[Batch, list[Outcome]]]:
    """Outcomes grouped by cell (everything but the repetition), in first-seen order."""
    cells: dict[tuple[Any, ...], tuple[Batch, list[Outcome]]] = {}
    for batch, outcome in outcomes:
        key = (batch.server, batch.client, batch.rtt_ms, batch.resources, batch.keepalive,
               batch.tls)  # fmt: skip
        cells.setdefault(key, (batch, []))[1].append(outcome)
    yield from cells.values()


def browser_missing() -> str:
    return browser_client.missing()
