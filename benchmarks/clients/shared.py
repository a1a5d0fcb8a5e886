"""What every load client shares: flags, the target, error kinds and per-process tallies.

The pyperf clients and the Locust user classes measure differently but must report the same
`ClientResult`, so the pieces that decide *what* is counted live here: which flags exist and how
they are validated (one line and exit 2 on bad input), how an exception becomes an error kind
(`EADDRNOTAVAIL` when ephemeral ports run out), and `Tally`, the counts plus HdrHistogram that a
process ships to whoever merges them (histograms are added, never percentiles averaged).
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import socket
import ssl
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from benchmarks import latency
from benchmarks.clients.contract import Mode

CONNECT_TIMEOUT_S = 5.0
EXIT_BAD_FLAGS = 2
EXIT_UNREACHABLE = 1


def fail(prog: str, message: str, status: int = EXIT_UNREACHABLE) -> NoReturn:
    """One line on stderr and a non-zero exit: what the harness shows when a client gives up."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(status)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The flags `ClientConfig._common_flags()` spells, plus the hidden worker hand-off."""
    parser.add_argument("--url", required=True, help="server base URL, http:// or https://")
    parser.add_argument("--mode", required=True, choices=[m.value for m in Mode])
    parser.add_argument("--path", default="/", help="request path (default %(default)s)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds (approx.)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds first")
    parser.add_argument("--output", type=Path, required=True, help="ClientResult JSON path")
    parser.add_argument("--ca", type=Path, help="CA PEM to verify https servers with")
    parser.add_argument("--parts-dir", type=Path, help=argparse.SUPPRESS)  # main -> workers


def validate_common(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> None:
    """Reject what cannot run before anything connects (exit 2 via parser.error)."""
    if not (math.isfinite(ns.duration) and ns.duration > 0):
        parser.error(f"--duration must be a finite number > 0, got {ns.duration:g}")
    if not (math.isfinite(ns.warmup) and ns.warmup >= 0):
        parser.error(f"--warmup must be a finite number >= 0, got {ns.warmup:g}")
    if not ns.path.startswith("/"):
        parser.error(f"--path must start with '/', got {ns.path!r}")
    if ns.ca is not None and not ns.ca.is_file():
        parser.error(f"--ca: no such file: {ns.ca}")
    try:
        Target.from_url(ns.url, ns.path, ns.ca)
    except ValueError as exc:
        parser.error(str(exc))


@dataclass(frozen=True)
class Target:
    """Where requests go, resolved once so that no request pays for DNS."""

    scheme: str
    host: str  # as written in the URL (Host header, TLS server name)
    port: int
    path: str
    ca: Path | None = None

    @classmethod
    def from_url(cls, url: str, path: str = "/", ca: Path | None = None) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--url must be http://HOST:PORT or https://HOST:PORT, got {url!r}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise ValueError(f"--url has a bad port: {url!r}") from exc
        return cls(parts.scheme, parts.hostname, port, path, ca)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """Verifying context: the given CA, or the system store when none was given."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=str(self.ca) if self.ca else None)

    def request_bytes(self, mode: Mode) -> bytes:
        """The one GET this client sends over and over; unpooled asks the server to close."""
        connection = "close" if mode is Mode.UNPOOLED else "keep-alive"
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
            f"User-Agent: keepalive-bench\r\nConnection: {connection}\r\n\r\n"
        ).encode("latin-1")

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


@dataclass
class Tally:
    """One process's counts for its measured window, plus latencies in microseconds."""

    requests: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    requests_total: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    hist: Any = field(default_factory=latency.new_histogram)

    def record_latencies_ns(self, latencies_ns: Iterable[int]) -> None:
        """Bulk-record after the clock stopped: identical values are recorded once, with a count."""
        for value_ns, count in Counter(latencies_ns).items():
            us = min(max(value_ns // 1000, latency.LOWEST_US), latency.HIGHEST_US)
            self.hist.record_value(us, count)

    def add_errors(self, kinds: Counter[str]) -> None:
        self.errors += sum(kinds.values())
        self.error_kinds.update(kinds)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "elapsed_s": self.elapsed_s,
            "requests_total": self.requests_total,
            "error_kinds": dict(self.error_kinds),
            "histogram": latency.encode(self.hist),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        return cls(
            requests=data["requests"],
            errors=data["errors"],
            elapsed_s=data["elapsed_s"],
            requests_total=data["requests_total"],
            error_kinds=Counter(data["error_kinds"]),
            hist=latency.decode(data["histogram"]),
        )

    def merge(self, other: Tally) -> None:
        """Add another process's tally: windows of processes that ran one after another."""
        self.requests += other.requests
        self.errors += other.errors
        self.elapsed_s += other.elapsed_s
        self.requests_total += other.requests_total
        self.error_kinds.update(other.error_kinds)
        self.hist.add(other.hist)


def dump_part(parts_dir: Path, tally: Tally) -> None:
    """A worker's tally, one file per process; written whole or not at all."""
    from benchmarks.clients.contract import write_atomic

    write_atomic(parts_dir / f"worker-{os.getpid()}.json", json.dumps(tally.to_json()))


def load_parts(parts_dir: Path) -> tuple[Tally, int]:
    """Merge every worker's tally; returns it with the number of worker processes."""
    merged = Tally()
    files = sorted(parts_dir.glob("worker-*.json"))
    for path in files:
        merged.merge(Tally.from_json(json.loads(path.read_text())))
    return merged, len(files)
