"""What every load client shares: the target, error kinds and per-process tallies.

The pyperf clients and the Locust user classes measure differently but must report the same
`ClientResult`, so the pieces that decide *what* is counted live here (their flags are in
`benchmarks.clients.contract`, which writes them): how an exception becomes an error kind
(`EADDRNOTAVAIL` when ephemeral ports run out), and `Tally`, the counts plus HdrHistogram that a
process ships to whoever merges them (histograms are added, never percentiles averaged).
"""

from __future__ import annotations

import enum
import errno
import json
import os
import socket
import ssl
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import repeat
from operator import floordiv
from pathlib import Path
from typing import Any, NoReturn

from benchmarks import latency
from benchmarks.clients.contract import Mode
from benchmarks.common import HttpTarget, UsageError, split_http_url, write_atomic

CONNECT_TIMEOUT_S = 5.0
EXIT_UNREACHABLE = 1


def fail(prog: str, message: str, status: int = EXIT_UNREACHABLE) -> NoReturn:
    """One line on stderr and a non-zero exit: what the harness shows when a client gives up."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(status)


@dataclass(frozen=True)
class Target(HttpTarget):
    """Where a client's requests go, and the CA that verifies an https server."""

    ca: Path | None = None
    insecure: bool = False  # https without verifying the certificate

    @classmethod
    def from_url(
        cls, url: str, path: str = "/", ca: Path | None = None, flag: str = "--url",
        insecure: bool = False,
    ) -> Target:  # fmt: skip
        """The base URL's scheme, host and port (its own path is not used: `path` is);
        UsageError naming `flag` when it is not http(s)://HOST[:PORT]."""
        try:
            scheme, host, port, _ = split_http_url(url)
        except UsageError as exc:
            raise UsageError(f"{flag}: {exc}") from None
        return cls(scheme, host, port, path, ca, insecure)

    def ssl_context(self) -> ssl.SSLContext | None:
        """Verifying context: the given CA, or the system store when none was given; with
        `insecure`, one that checks neither the chain nor the name."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def request_bytes(self, mode: Mode) -> bytes:
        """The one GET the raw client sends over and over: what wrk sends (a Host field only;
        HTTP/1.1 is persistent without `Connection: keep-alive`), `Connection: close` when
        unpooled. The same bytes as wrk's, so that a ceiling against wrk compares the same work
        on the server: our uvloop server spent 41k instructions on a request that also carried
        `User-Agent` and `Connection: keep-alive`, 24k on wrk's (callgrind, one connection)."""
        close = "Connection: close\r\n" if mode is Mode.UNPOOLED else ""
        return f"GET {self.path} HTTP/1.1\r\nHost: {self.host_header}\r\n{close}\r\n".encode(
            "latin-1"
        )

    def resolve(self) -> tuple[int, str]:
        """(family, address) of the first resolved address; ValueError if none."""
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ValueError(f"cannot resolve {self.host!r}: {exc.strerror}") from exc
        family, _, _, _, sockaddr = infos[0]
        return family, str(sockaddr[0])

    def check_reachable(self, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
        """None if a TCP connection opens, else a one-line reason (no request is sent)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout_s):
                return None
        except OSError as exc:
            return f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"


def error_kind(exc: BaseException) -> str:
    """A short stable label: errno name for socket errors, else the exception class."""
    if isinstance(exc, ssl.SSLError):  # its errno is an SSL code, not a socket errno
        return f"ssl-{exc.reason}" if exc.reason else type(exc).__name__
    # An OSError raised with a message only has errno None: it falls through to its class name.
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    return type(exc).__name__


class Phase(enum.StrEnum):
    """The parts of a request a client can time apart (`ClientResult.phases_p50_us` keys)."""

    CONNECT = "connect"  # connect() to established; 0 for a request on a reused connection
    TLS = "tls"  # the TLS handshake after it; 0 on a reused connection
    TTFB = "ttfb"  # start of the request's write to the first response byte


def socket_phases(tls: bool) -> frozenset[Phase]:
    """What a client that opens its own sockets times: all three (TLS only over https)."""
    return frozenset({Phase.CONNECT, Phase.TTFB, *([Phase.TLS] if tls else [])})


@dataclass
class Tally:
    """One process's counts for its measured window, plus latencies in microseconds."""

    requests: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    requests_total: int = 0
    connections: int = 0  # TCP connections this process opened (every request, like requests_total)
    connections_window: int = 0  # ... of which in the measured window (the span of `requests`)
    tls_resumed: int = 0  # of those, the ones whose TLS session was resumed (resuming clients)
    error_kinds: Counter[str] = field(default_factory=Counter)
    hist: Any = field(default_factory=latency.new_histogram)
    paced: Counter[str] = field(default_factory=Counter)  # open loop: counts, added up
    paced_max: Counter[str] = field(default_factory=Counter)  # open loop: maxima
    phases: dict[Phase, Any] = field(default_factory=dict)  # Phase -> histogram (us), measured

    def add_paced(self, counts: Counter[str], maxima: Counter[str]) -> None:
        self.paced.update(counts)
        for key, value in maxima.items():
            self.paced_max[key] = max(self.paced_max[key], value)

    def record_latencies_ns(self, latencies_ns: Iterable[int]) -> None:
        """Bulk-record after the clock stopped: each distinct microsecond once, with a count.

        Nanosecond values are nearly all distinct, so they are floored to microseconds first,
        in C (`map` with `operator.floordiv`, counted by `Counter`'s C loop), then recorded once
        per distinct microsecond (`latency.record_counts`) instead of once per request; it runs
        on the client's core, so it is CPU the client does not spend sending."""
        _record_ns(self.hist, latencies_ns)

    def record_phases(
        self, timings: frozenset[Phase], requests: int, connects_ns: list[int],
        tls_ns: list[int], ttfb_ns: list[int],
    ) -> None:  # fmt: skip
        """A batch's phases, per request: connect and TLS are 0 for each of the `requests` that
        found its connection open (those beyond the connections the batch opened)."""
        for phase, values in ((Phase.CONNECT, connects_ns), (Phase.TLS, tls_ns)):
            if phase in timings:
                hist = self._phase(phase)
                reused = requests - len(values)
                if reused > 0:
                    hist.record_value(0, reused)
                _record_ns(hist, values)  # a real connect is >= 1 us
        if Phase.TTFB in timings:
            _record_ns(self._phase(Phase.TTFB), ttfb_ns)

    def _phase(self, phase: Phase) -> Any:
        if phase not in self.phases:
            self.phases[phase] = latency.new_histogram()
        return self.phases[phase]

    def phases_p50_us(self) -> dict[str, float]:
        """Median of each measured phase, microseconds (the row's *_p50_ms columns)."""
        return {
            phase.value: float(hist.get_value_at_percentile(50.0))
            for phase, hist in sorted(self.phases.items())
            if hist.get_total_count() > 0
        }

    def add_errors(self, kinds: Counter[str]) -> None:
        self.errors += sum(kinds.values())
        self.error_kinds.update(kinds)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "elapsed_s": self.elapsed_s,
            "requests_total": self.requests_total,
            "connections": self.connections,
            "connections_window": self.connections_window,
            "tls_resumed": self.tls_resumed,
            "error_kinds": dict(self.error_kinds),
            "histogram": latency.encode(self.hist),
            "paced": dict(self.paced),
            "paced_max": dict(self.paced_max),
            "phases": {p.value: latency.encode(h) for p, h in self.phases.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        return cls(
            requests=data["requests"],
            errors=data["errors"],
            elapsed_s=data["elapsed_s"],
            requests_total=data["requests_total"],
            connections=data.get("connections", 0),
            connections_window=data.get("connections_window", 0),
            tls_resumed=data.get("tls_resumed", 0),
            error_kinds=Counter(data["error_kinds"]),
            hist=latency.decode(data["histogram"]),
            paced=Counter(data.get("paced", {})),
            paced_max=Counter(data.get("paced_max", {})),
            phases={Phase(p): latency.decode(h) for p, h in data.get("phases", {}).items()},
        )

    def merge(self, other: Tally) -> None:
        """Add another process's tally: windows of processes that ran one after another."""
        self.requests += other.requests
        self.errors += other.errors
        self.elapsed_s += other.elapsed_s
        self.requests_total += other.requests_total
        self.connections += other.connections
        self.connections_window += other.connections_window
        self.tls_resumed += other.tls_resumed
        self.error_kinds.update(other.error_kinds)
        self.hist.add(other.hist)
        self.add_paced(other.paced, other.paced_max)
        for phase, hist in other.phases.items():
            self._phase(phase).add(hist)


def _record_ns(hist: Any, values_ns: Iterable[int]) -> None:
    """Nanoseconds into a microsecond histogram: floored in C, each distinct value once."""
    latency.record_counts(hist, Counter(map(floordiv, values_ns, repeat(1000))))


def dump_part(parts_dir: Path, tally: Tally) -> None:
    """A worker's tally, one file per process; written whole or not at all."""
    write_atomic(parts_dir / f"worker-{os.getpid()}.json", json.dumps(tally.to_json()))


def load_parts(parts_dir: Path) -> tuple[Tally, int]:
    """Merge every worker's tally; returns it with the number of worker processes."""
    merged = Tally()
    files = sorted(parts_dir.glob("worker-*.json"))
    for path in files:
        merged.merge(Tally.from_json(json.loads(path.read_text())))
    return merged, len(files)
