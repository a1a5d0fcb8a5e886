"""What a page-load run measures: typed, validated once at the edge, expanded into batches.

The grid is RTT x server x server keep-alive setting x TLS x repetition x N x client. One delay
line per RTT (its round trip is fixed when it starts), one server process per (server,
keep-alive, TLS) on it, one Chromium for the whole line; repetitions are the loop inside a
server so that the two clients and the two page sizes of one repetition are measured seconds
apart and slow drift spreads over all of them.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from pathlib import Path

from benchmarks.clients.contract import Mode
from benchmarks.common import UsageError
from benchmarks.net.spec import MAX_RTT_MS
from servers.endpoints import MAX_PAGE_RESOURCES, MAX_RESOURCE_BYTES
from servers.options import DEFAULT_KEEPALIVE_MAX, DEFAULT_KEEPALIVE_TIMEOUT_S, ServerName

# Chromium opens a backup connection when a connect takes longer than 250 ms: keep below it.
BACKUP_CONNECT_MS = 250.0
DEFAULT_SIZE = 4096  # one flight: well under the initial window of ten segments


class ConfigError(UsageError):
    """A page-load configuration that cannot run: one line, exit 2."""


class Client(enum.StrEnum):
    """The CSV's `client` column."""

    CHROMIUM = "chromium"  # headless Chromium via Playwright, a fresh context per load
    PYTHON = "python"  # benchmarks.pageload.pyclient, pooled (a browser's pool)
    PYTHON_UNPOOLED = "python-unpooled"  # the same, a new connection per request

    @property
    def mode(self) -> Mode:
        return Mode.UNPOOLED if self is Client.PYTHON_UNPOOLED else Mode.POOLED


class Tls(enum.StrEnum):
    NONE = "none"
    TLS13 = "1.3"  # what the servers and both clients negotiate (TLS 1.3 is their best)

    @property
    def enabled(self) -> bool:
        return self is not Tls.NONE


TLS_ALIASES = {"none": Tls.NONE, "0": Tls.NONE, "off": Tls.NONE, "1.3": Tls.TLS13, "1": Tls.TLS13}


@dataclass(frozen=True, order=True)
class KeepAlive:
    """The server's keep-alive setting: T seconds idle, M requests (0 = unlimited); T = 0 off."""

    timeout_s: float
    max_requests: int

    @property
    def enabled(self) -> bool:
        return self.timeout_s > 0

    @property
    def label(self) -> str:
        return f"{self.timeout_s:g}s/{self.max_requests}" if self.enabled else "off"


@dataclass(frozen=True)
class Profile:
    rtts_ms: tuple[float, ...]
    resources: tuple[int, ...]
    keepalive: tuple[str, ...]
    tls: tuple[Tls, ...]
    repeat: int


# Budget: the full grid <= 5 min, QUICK <= 60 s on this 2-core machine (see README).
FULL = Profile((0.0, 20.0, 50.0, 100.0), (10, 70), ("on", "off"), (Tls.NONE, Tls.TLS13), 3)
QUICK = Profile((50.0,), (10, 70), ("on", "off"), (Tls.NONE, Tls.TLS13), 1)
DEFAULT_CLIENTS = (Client.CHROMIUM, Client.PYTHON)


@dataclass(frozen=True)
class Batch:
    """`loads` page loads of one cell by one client, with the server's counters around them."""

    index: int  # 1-based position in the run
    server: ServerName
    client: Client
    rtt_ms: float
    resources: int
    size: int
    keepalive: KeepAlive
    tls: Tls
    repetition: int
    loads: int

    @property
    def expected_mode(self) -> Mode:
        """What the server's counters must show: reuse only if both sides allow it."""
        if self.client.mode is Mode.POOLED and self.keepalive.enabled:
            return Mode.POOLED
        return Mode.UNPOOLED

    def label(self) -> str:
        tls = "tls" if self.tls.enabled else "plain"
        return (
            f"rtt {self.rtt_ms:g} {self.server} ka {self.keepalive.label} {tls} "
            f"n={self.resources} {self.client} #{self.repetition}"
        )


@dataclass(frozen=True)
class PageLoadConfig:
    servers: tuple[ServerName, ...]
    clients: tuple[Client, ...]
    rtts_ms: tuple[float, ...]
    resources: tuple[int, ...]
    size: int
    keepalive: tuple[KeepAlive, ...]
    tls: tuple[Tls, ...]
    repeat: int
    loads: int = 1
    quick: bool = False
    results_dir: Path = Path("results")
    plot: bool = True

    def __post_init__(self) -> None:
        for name in ("servers", "clients", "rtts_ms", "resources", "keepalive", "tls"):
            if not getattr(self, name):
                raise ConfigError(f"--{name.removesuffix('_ms')} needs at least one value")
        for rtt in self.rtts_ms:
            if not (math.isfinite(rtt) and 0 <= rtt < BACKUP_CONNECT_MS):
                raise ConfigError(
                    f"--rtt must be >= 0 and below {BACKUP_CONNECT_MS:g} ms (Chromium opens "
                    f"backup connections after that), got {rtt:g}"
                )
        for n in self.resources:
            if not 0 <= n <= MAX_PAGE_RESOURCES:
                raise ConfigError(f"--resources must be between 0 and {MAX_PAGE_RESOURCES}")
        if not 0 <= self.size <= MAX_RESOURCE_BYTES:
            raise ConfigError(f"--size must be between 0 and {MAX_RESOURCE_BYTES} bytes")
        if not 1 <= self.repeat <= 100:
            raise ConfigError(f"--repeat must be between 1 and 100, got {self.repeat}")
        if not 1 <= self.loads <= 1000:
            raise ConfigError(f"--loads must be between 1 and 1000, got {self.loads}")
        assert MAX_RTT_MS >= BACKUP_CONNECT_MS

    def batches(self) -> list[Batch]:
        out: list[Batch] = []
        for rtt in self.rtts_ms:
            for server in self.servers:
                for ka in self.keepalive:
                    for tls in self.tls:
                        for rep in range(1, self.repeat + 1):
                            for n in self.resources:
                                for client in self.clients:
                                    out.append(
                                        Batch(
                                            len(out) + 1,
                                            server,
                                            client,
                                            rtt,
                                            n,
                                            self.size,
                                            ka,
                                            tls,
                                            rep,
                                            self.loads,
                                        )  # fmt: skip
                                    )
        return out


def keepalive_settings(
    switches: tuple[str, ...], timeout_s: float, maxes: tuple[int, ...]
) -> tuple[KeepAlive, ...]:
    """`on` is one setting per max (T = `timeout_s`), `off` is T = 0 (the max is moot)."""
    if not math.isfinite(timeout_s) or not 0 < timeout_s <= 3600:
        raise ConfigError(f"--keepalive-timeout must be in (0, 3600] seconds, got {timeout_s:g}")
    if any(m < 0 for m in maxes):
        raise ConfigError("--keepalive-max must be >= 0 (0 = unlimited)")
    settings: list[KeepAlive] = []
    for switch in switches:
        if switch == "on":
            settings += [KeepAlive(timeout_s, m) for m in maxes]
        elif switch == "off":
            settings.append(KeepAlive(0.0, DEFAULT_KEEPALIVE_MAX))
        else:
            raise ConfigError(f"--keepalive takes on and off, got {switch!r}")
    return tuple(dict.fromkeys(settings))


DEFAULT_TIMEOUT_S = DEFAULT_KEEPALIVE_TIMEOUT_S
DEFAULT_MAXES = (DEFAULT_KEEPALIVE_MAX,)
