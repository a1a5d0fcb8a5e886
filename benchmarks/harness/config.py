"""The run configuration and its matrix: typed, validated once at the edge, then trusted.

The CLI turns comma-separated flags into a frozen `RunConfig` (a `ConfigError` with a one-line
message otherwise); `expand()` turns it into the ordered list of `Cell`s. Repetitions are the
outer loop and the two modes of one configuration are adjacent, so slow drift of the machine
(thermal, other tenants) spreads over every cell instead of biasing one, and each pooled figure
has its unpooled twin measured seconds apart.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from benchmarks.clients.contract import MAX_CONCURRENCY, MAX_WORKERS, ClientKind, Mode
from servers.options import (
    DEFAULT_KEEPALIVE_MAX,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    REFERENCE_SERVERS,
    ServerName,
)

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)


class ConfigError(ValueError):
    """A configuration that cannot run; shown to the user as one line, exit status 2."""


@dataclass(frozen=True)
class Profile:
    """Defaults of one run size (full `make bench`, or `make bench QUICK=1`)."""

    servers: tuple[ServerName, ...]
    clients: tuple[ClientKind, ...]
    modes: tuple[Mode, ...]
    concurrency: tuple[int, ...]
    duration_s: float
    warmup_s: float
    repeat: int


ALL_SERVERS = REFERENCE_SERVERS  # nginx and node only when --servers names them
BOTH_MODES = (Mode.POOLED, Mode.UNPOOLED)
DEFAULT_CLIENTS = (ClientKind.LOCUST_FASTHTTP, ClientKind.PYPERF_CONCURRENT_RAW)
DEFAULT_CONCURRENCY = 16

# Budget: `make bench` <= 5 min and QUICK <= 60 s (--help shows the estimate, the README the
# time measured on one machine).
FULL = Profile(
    servers=ALL_SERVERS,
    clients=DEFAULT_CLIENTS,
    modes=BOTH_MODES,
    concurrency=(DEFAULT_CONCURRENCY,),
    duration_s=5.0,
    warmup_s=1.0,
    repeat=2,
)
QUICK = Profile(
    servers=ALL_SERVERS,
    clients=DEFAULT_CLIENTS,
    modes=BOTH_MODES,
    concurrency=(DEFAULT_CONCURRENCY,),
    duration_s=1.0,
    warmup_s=0.5,
    repeat=1,
)

# Fixed cost of a cell on top of warm-up + window (server start, identity check, client start,
# teardown): about the same for every client here; only for the estimate before a cell has run.
STARTUP_ESTIMATE_S = 3.0


@dataclass(frozen=True)
class RunConfig:
    """Everything one `python -m benchmarks run` does; immutable once validated."""

    servers: tuple[ServerName, ...]
    clients: tuple[ClientKind, ...]
    modes: tuple[Mode, ...]
    concurrency: tuple[int, ...]
    keepalive_timeouts_s: tuple[float, ...]
    keepalive_maxes: tuple[int, ...]
    duration_s: float
    warmup_s: float
    repeat: int
    tls: bool = False
    quick: bool = False
    results_dir: Path = Path("results")
    client_timeout_s: float | None = None  # None: derived from warm-up + window
    workers: int = 1  # Locust worker processes per client (--processes); pyperf ignores it

    def __post_init__(self) -> None:
        for name in ("servers", "clients", "modes", "concurrency"):
            if not getattr(self, name):
                raise ConfigError(f"--{name} needs at least one value")
        if any(c < 1 for c in self.concurrency):
            raise ConfigError(f"--concurrency must be >= 1, got {_join(self.concurrency)}")
        self._check_client_limits()
        if any(not (math.isfinite(t) and t >= 0) for t in self.keepalive_timeouts_s):
            raise ConfigError(
                "--keepalive-timeout must be a finite number >= 0, "
                f"got {_join(self.keepalive_timeouts_s)}"
            )
        if any(m < 0 for m in self.keepalive_maxes):
            raise ConfigError(f"--keepalive-max must be >= 0, got {_join(self.keepalive_maxes)}")
        if not 0 < self.duration_s <= 3600:
            raise ConfigError(f"--duration must be in (0, 3600] seconds, got {self.duration_s:g}")
        if not 0 <= self.warmup_s <= 600:
            raise ConfigError(f"--warmup must be in [0, 600] seconds, got {self.warmup_s:g}")
        if self.repeat < 1:
            raise ConfigError(f"--repeat must be >= 1, got {self.repeat}")
        timeout = self.client_timeout_s
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise ConfigError(f"--client-timeout must be a finite number > 0, got {timeout:g}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"--workers must be between 1 and {MAX_WORKERS}, got {self.workers}")

    def _check_client_limits(self) -> None:
        """What a client would refuse must fail here, once, not as a failed row per cell."""
        for client in self.clients:
            for conc in self.concurrency:
                if effective_concurrency(client, conc) > MAX_CONCURRENCY:
                    raise ConfigError(
                        f"--concurrency {conc} is above {client}'s maximum of {MAX_CONCURRENCY}"
                    )

    @property
    def timeout_s(self) -> float:
        """How long a client may run before it counts as hung (pyperf calibrates: be generous)."""
        if self.client_timeout_s is not None:
            return self.client_timeout_s
        return 30.0 + 4.0 * (self.warmup_s + self.duration_s)

    def cells(self) -> list[Cell]:
        return expand(self)


@dataclass(frozen=True)
class Cell:
    """One server x client x mode x concurrency x keep-alive setting x repetition."""

    index: int  # 1-based position in the run
    server: ServerName
    client: ClientKind
    mode: Mode
    concurrency: int
    keepalive_timeout_s: float
    keepalive_max: int
    repetition: int

    @property
    def slug(self) -> str:
        """File-name-safe id, also used for the client's JSON and log in the artifacts folder."""
        return (
            f"{self.index:03d}-{self.server}-{self.client}-{self.mode}-c{self.concurrency}"
            f"-kt{self.keepalive_timeout_s:g}-km{self.keepalive_max}-r{self.repetition}"
        )

    def label(self) -> str:
        return (
            f"{self.server} {self.client} {self.mode} c={self.concurrency} "
            f"ka={self.keepalive_timeout_s:g}s/{self.keepalive_max} rep {self.repetition}"
        )


def effective_concurrency(client: ClientKind, concurrency: int) -> int:
    """pyperf-sequential sends one request at a time whatever --concurrency says."""
    return 1 if client is ClientKind.PYPERF_SEQUENTIAL else concurrency


def expand(config: RunConfig) -> list[Cell]:
    """The ordered cells; duplicates (sequential client at several concurrencies) collapse."""
    cells: list[Cell] = []
    for rep in range(1, config.repeat + 1):
        seen: set[tuple[object, ...]] = set()
        for server in config.servers:
            for client in config.clients:
                for conc in config.concurrency:
                    conc = effective_concurrency(client, conc)
                    for kt in config.keepalive_timeouts_s:
                        for km in config.keepalive_maxes:
                            for mode in config.modes:
                                key = (server, client, conc, kt, km, mode)
                                if key in seen:
                                    continue
                                seen.add(key)
                                cells.append(
                                    Cell(len(cells) + 1, server, client, mode, conc, kt, km, rep)
                                )
    return cells


def estimate_cell_s(config: RunConfig) -> float:
    """A priori wall time of any cell, before one has been measured."""
    return config.warmup_s + config.duration_s + STARTUP_ESTIMATE_S


def parse_list(text: str, flag: str, convert: Callable[[str], T]) -> tuple[T, ...]:
    """`a,b,c` -> converted, de-duplicated tuple in given order; ConfigError names the bad item."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ConfigError(f"{flag}: empty value in {text!r} (use a comma-separated list)")
    out: list[T] = []
    for item in items:
        try:
            value = convert(item)
        except ConfigError:
            raise
        except ValueError:
            raise ConfigError(f"{flag}: bad value {item!r}") from None
        if value not in out:
            out.append(value)
    return tuple(out)


def enum_converter(enum_type: type[E], flag: str) -> Callable[[str], E]:
    """Convert a name to an enum member; the error lists every valid name."""
    names = [m.value for m in enum_type]

    def convert(item: str) -> E:
        try:
            return enum_type(item.lower())
        except ValueError:
            raise ConfigError(
                f"{flag}: unknown {item!r} (choose from {', '.join(names)})"
            ) from None

    return convert


def build(
    *,
    quick: bool,
    servers: str | None = None,
    clients: str | None = None,
    modes: str | None = None,
    concurrency: str | None = None,
    keepalive_timeout: str | None = None,
    keepalive_max: str | None = None,
    duration: float | None = None,
    warmup: float | None = None,
    repeat: int | None = None,
    tls: bool = False,
    results_dir: Path = Path("results"),
    client_timeout: float | None = None,
    workers: int = 1,
) -> RunConfig:
    """RunConfig from CLI strings: unset values take the profile's (QUICK or FULL) defaults."""
    profile = QUICK if quick else FULL
    return RunConfig(
        servers=_or(servers, "--servers", enum_converter(ServerName, "--servers"), profile.servers),
        clients=_or(clients, "--clients", enum_converter(ClientKind, "--clients"), profile.clients),
        modes=_or(modes, "--modes", enum_converter(Mode, "--modes"), profile.modes),
        concurrency=_or(concurrency, "--concurrency", int, profile.concurrency),
        keepalive_timeouts_s=_or(
            keepalive_timeout, "--keepalive-timeout", float, (DEFAULT_KEEPALIVE_TIMEOUT_S,)
        ),
        keepalive_maxes=_or(keepalive_max, "--keepalive-max", int, (DEFAULT_KEEPALIVE_MAX,)),
        duration_s=profile.duration_s if duration is None else duration,
        warmup_s=profile.warmup_s if warmup is None else warmup,
        repeat=profile.repeat if repeat is None else repeat,
        tls=tls,
        quick=quick,
        results_dir=results_dir,
        client_timeout_s=client_timeout,
        workers=workers,
    )


def _or(
    text: str | None, flag: str, convert: Callable[[str], T], default: tuple[T, ...]
) -> tuple[T, ...]:
    return default if text is None else parse_list(text, flag, convert)


def _join(values: Iterable[object]) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
