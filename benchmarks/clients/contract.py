"""The contract between the harness and every load client: argv in, one JSON file out.

The harness never imports locust (gevent) or the pyperf clients: it builds a `ClientConfig`,
turns it into a command with `command()` (the only place client flags are spelled), runs it as a
subprocess, and reads the `ClientResult` JSON the client wrote atomically to `output`.
"""

from __future__ import annotations

import enum
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, write_atomic

RESULT_FORMAT = 1
LOCUSTFILE = REPO_ROOT / "locustfiles" / "keepalive.py"
MAX_CONCURRENCY = 10_000  # connections one client holds at once (file descriptors, ports)
MAX_WORKERS = 64  # Locust worker processes of one client: make bench's and the lab's --workers


class Mode(enum.StrEnum):
    POOLED = "pooled"  # connections reused across requests
    UNPOOLED = "unpooled"  # a new TCP connection per request (Connection: close)


class ClientKind(enum.StrEnum):
    """Client and variant; the value is the CSV's `client` column."""

    LOCUST_FASTHTTP = "locust-fasthttp"  # FastHttpUser: PooledUser / UnpooledUser
    LOCUST_REQUESTS = "locust-requests"  # HttpUser: PooledRequestsUser / UnpooledRequestsUser
    PYPERF_SEQUENTIAL = "pyperf-sequential"  # one request at a time (the seed experiment)
    PYPERF_CONCURRENT_RAW = "pyperf-concurrent-raw"  # asyncio Protocol client on uvloop
    PYPERF_CONCURRENT_AIOHTTP = "pyperf-concurrent-aiohttp"  # aiohttp ClientSession

    @property
    def is_locust(self) -> bool:
        return self.value.startswith("locust")

    def connections(self, concurrency: int) -> int:
        """Connections this client holds at once: the sequential client always uses one."""
        return 1 if self is ClientKind.PYPERF_SEQUENTIAL else concurrency


LOCUST_USER_CLASSES = {
    (ClientKind.LOCUST_FASTHTTP, Mode.POOLED): "PooledUser",
    (ClientKind.LOCUST_FASTHTTP, Mode.UNPOOLED): "UnpooledUser",
    (ClientKind.LOCUST_REQUESTS, Mode.POOLED): "PooledRequestsUser",
    (ClientKind.LOCUST_REQUESTS, Mode.UNPOOLED): "UnpooledRequestsUser",
}

PYPERF_MODULES = {
    ClientKind.PYPERF_SEQUENTIAL: "benchmarks.clients.pyperf_sequential",
    ClientKind.PYPERF_CONCURRENT_RAW: "benchmarks.clients.pyperf_concurrent",
    ClientKind.PYPERF_CONCURRENT_AIOHTTP: "benchmarks.clients.pyperf_concurrent",
}


@dataclass(frozen=True)
class ClientConfig:
    """One client run against one server."""

    kind: ClientKind
    url: str
    mode: Mode
    concurrency: int
    duration_s: float  # the measured window (approximate for pyperf, which calibrates)
    output: Path  # where the client writes its ClientResult JSON
    warmup_s: float = 1.0
    path: str = "/"
    ca_path: Path | None = None  # CA to trust for https URLs
    workers: int = 1  # Locust worker processes (--processes); the pyperf clients ignore it

    def command(self) -> list[str]:
        """The full argv of the client process."""
        if self.kind.is_locust:
            return self._locust_command()
        argv = [sys.executable, "-m", PYPERF_MODULES[self.kind]]
        if self.kind is not ClientKind.PYPERF_SEQUENTIAL:
            variant = "raw" if self.kind is ClientKind.PYPERF_CONCURRENT_RAW else "aiohttp"
            argv += ["--variant", variant, "--concurrency", str(self.concurrency)]
        return argv + self._common_flags()

    def _common_flags(self) -> list[str]:
        flags = [
            "--url", self.url, "--mode", self.mode.value, "--path", self.path,
            "--duration", f"{self.duration_s:g}", "--warmup", f"{self.warmup_s:g}",
            "--output", str(self.output),
        ]  # fmt: skip
        if self.ca_path is not None:
            flags += ["--ca", str(self.ca_path)]
        return flags

    def _locust_command(self) -> list[str]:
        """Locust's --run-time takes whole seconds, so it is rounded up and the locustfile
        closes the window itself after exactly --kab-duration seconds."""
        user_class = LOCUST_USER_CLASSES[(self.kind, self.mode)]
        total_s = max(math.ceil(self.duration_s + self.warmup_s), 1)
        argv = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--host", self.url, "-u", str(self.concurrency), "-r", str(self.concurrency),
            "-t", f"{total_s}s", "--stop-timeout", "2", "--only-summary", "--loglevel", "WARNING",
            "--kab-output", str(self.output), "--kab-warmup", f"{self.warmup_s:g}",
            "--kab-duration", repr(self.duration_s), "--kab-path", self.path,
        ]  # fmt: skip
        if self.ca_path is not None:
            argv += ["--kab-ca", str(self.ca_path)]
        if self.workers > 1:
            argv += ["--processes", str(self.workers)]
        return [*argv, user_class]


@dataclass(frozen=True)
class ClientResult:
    """What a client measured. Latencies in microseconds, from its merged HdrHistogram."""

    client: str  # ClientKind value
    mode: str  # Mode value
    requests: int  # completed in the measured window
    errors: int  # failed in the measured window
    elapsed_s: float  # length of the measured window
    requests_total: int  # every request sent, warm-up and calibration included
    load_processes: int  # processes that each held their own connections (pyperf workers)
    latency_us: dict[str, float]  # p50, p90, p99, p999, max
    histogram: str  # HdrHistogram, encoded (benchmarks.latency.encode)
    error_kinds: dict[str, int] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)  # e.g. the pyperf JSON file
    format: int = RESULT_FORMAT

    @property
    def throughput_rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def write(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self), indent=1, sort_keys=True))

    @classmethod
    def read(cls, path: Path) -> ClientResult:
        data: dict[str, Any] = json.loads(path.read_text())
        if data.get("format") != RESULT_FORMAT:
            raise ValueError(f"{path}: unknown client result format {data.get('format')!r}")
        return cls(**data)
