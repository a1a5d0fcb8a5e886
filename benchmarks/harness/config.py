"""The run configuration and its matrix: typed, validated once at the edge, then trusted.

The CLI turns comma-separated flags into a frozen `RunConfig` (a `UsageError` with a one-line
message otherwise): for every dimension of `benchmarks.matrix` the values given (each item
parsed and checked by the dimension itself) or its defaults. `expand()` turns it into the
ordered list of `Cell`s: the product of the dimensions in their order, the innermost one (the
mode) varying fastest. Repetitions are the outer loop and the two modes of one configuration
are adjacent, so slow drift of the machine (thermal, other tenants) spreads over every cell
instead of biasing one, and each pooled figure has its unpooled twin measured seconds apart.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.clients.contract import MAX_CONCURRENCY, MAX_WORKERS, ClientKind, Mode
from benchmarks.common import UsageError, parse_list
from benchmarks.harness.target import TargetCommand, TargetServer, target_tls
from benchmarks.matrix import (
    DIMENSIONS,
    FULL,
    QUICK,
    TARGET_SERVER,
    UNKNOWN,
    CellKey,
    Dimension,
    Profile,
    Reach,
    by_column,
)
from servers.options import ServerName

# Fixed cost of a cell on top of warm-up + window (server start, identity check, client start,
# teardown): about the same for every client here; only for the estimate before a cell has run.
STARTUP_ESTIMATE_S = 3.0

Matrix = Mapping[str, tuple[Any, ...]]  # dimension column -> its values in this run, in order


@dataclass(frozen=True)
class RunConfig:
    """Everything one `python -m benchmarks run` does; immutable once validated."""

    matrix: Matrix  # every dimension's values (build() fills in the defaults)
    duration_s: float
    warmup_s: float
    repeat: int
    quick: bool = False
    results_dir: Path = Path("results")
    client_timeout_s: float | None = None  # None: derived from warm-up + window
    workers: int = 1  # Locust worker processes per client (--processes); pyperf ignores it
    # an existing server instead of ours (`--target`), or a command run behind the delay line
    target: TargetServer | TargetCommand | None = None

    def __post_init__(self) -> None:
        for d in DIMENSIONS:
            if not self.matrix.get(d.column):
                raise UsageError(f"{d.flag} needs at least one value")
        self._check_client_limits()
        self._check_link()
        self._check_command()
        if not 0 < self.duration_s <= 3600:
            raise UsageError(f"--duration must be in (0, 3600] seconds, got {self.duration_s:g}")
        if not 0 <= self.warmup_s <= 600:
            raise UsageError(f"--warmup must be in [0, 600] seconds, got {self.warmup_s:g}")
        if self.repeat < 1:
            raise UsageError(f"--repeat must be >= 1, got {self.repeat}")
        timeout = self.client_timeout_s
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise UsageError(f"--client-timeout must be a finite number > 0, got {timeout:g}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise UsageError(f"--workers must be between 1 and {MAX_WORKERS}, got {self.workers}")

    def values(self, column: str) -> tuple[Any, ...]:
        """The values of one dimension in this run, as given (or its defaults)."""
        return tuple(self.matrix[column])

    def _check_client_limits(self) -> None:
        """What a client would refuse must fail here, once, not as a failed row per cell."""
        for client in self.values("client"):
            for conc in self.values("concurrency"):
                if effective_concurrency(client, conc) > MAX_CONCURRENCY:
                    raise UsageError(
                        f"--concurrency {conc} is above {client}'s maximum of {MAX_CONCURRENCY}"
                    )

    def _check_link(self) -> None:
        """--loss and --bandwidth shape the delay line: refused when no cell has one."""
        if all(rtt is None for rtt in self.values("rtt_ms")):
            for column, flag, off in (
                ("loss_pct", "--loss", 0.0),
                ("bandwidth_mbit", "--bandwidth", 0.0),
            ):
                if any(v != off for v in self.values(column)):
                    raise UsageError(f"{flag} needs --rtt (the delay line), not loopback")

    def _check_command(self) -> None:
        """A command target runs in the delay line's server namespace: every cell needs one."""
        if isinstance(self.target, TargetCommand) and None in self.values("rtt_ms"):
            raise UsageError(
                "--target-command runs the server behind the delay line: give --rtt MS (0 for "
                "the line alone); on loopback start it yourself and use --target URL"
            )

    @property
    def uses_line(self) -> bool:
        """Some cell runs over the delay line (root and /dev/net/tun needed)."""
        return any(rtt is not None for rtt in self.values("rtt_ms"))

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
    """One point of the matrix (its `key`) and one repetition, at `index` in the run.

    `server`, `client` and `mode` are the key's values as the enums the harness works with."""

    index: int  # 1-based position in the run
    key: CellKey
    repetition: int

    @property
    def server(self) -> ServerName:
        """Ours or a wrapped one; a target cell has none (`is_target`)."""
        return ServerName(self.key.server)

    @property
    def is_target(self) -> bool:
        return self.key.server == TARGET_SERVER

    @property
    def client(self) -> ClientKind:
        return ClientKind(self.key.client)

    @property
    def mode(self) -> Mode:
        return Mode(self.key.mode)

    @property
    def slug(self) -> str:
        """File-name-safe id, also used for the client's JSON and log in the artifacts folder."""
        return f"{self.index:03d}-{self.key.slug()}-r{self.repetition}"

    def label(self) -> str:
        return f"{self.key.label()} rep {self.repetition}"

    def options(self, reach: Reach) -> dict[str, Any]:
        """The keywords this cell gives the ServerOptions or the ClientConfig it runs with."""
        return self.key.options(reach)


def effective_concurrency(client: str, concurrency: int) -> int:
    """pyperf-sequential sends one request at a time whatever --concurrency says."""
    return ClientKind(client).connections(concurrency)


def expand(config: RunConfig) -> list[Cell]:
    """The ordered cells; duplicates (sequential client at several concurrencies) collapse."""
    order = [d for d in DIMENSIONS if not d.innermost] + [d for d in DIMENSIONS if d.innermost]
    cells: list[Cell] = []
    for rep in range(1, config.repeat + 1):
        seen: set[CellKey] = set()
        for values in itertools.product(*(config.values(d.column) for d in order)):
            key = CellKey(**{d.column: v for d, v in zip(order, values, strict=True)})
            key = replace(key, concurrency=effective_concurrency(key.client, key.concurrency))
            if key.loopback:  # loss and bandwidth are the delay line's: none on loopback
                key = replace(key, loss_pct=0.0, bandwidth_mbit=0.0)
            if key not in seen:
                seen.add(key)
                cells.append(Cell(len(cells) + 1, key, rep))
    return cells


def estimate_cell_s(config: RunConfig) -> float:
    """A priori wall time of any cell, before one has been measured."""
    return config.warmup_s + config.duration_s + STARTUP_ESTIMATE_S


def parse_values(text: str, dim: Dimension) -> tuple[Any, ...]:
    """`a,b,c` -> the dimension's values, de-duplicated in given order; UsageError names the
    bad item."""
    return parse_list(text, dim.flag, dim.parse)


# What `--target` changes in the matrix: the server is the target, and which one (target_url);
# its keep-alive settings are unknown unless declared (one value each: a target has one
# configuration); TLS is its URL's scheme; every client unless --clients says otherwise.
TARGET_REFUSES = ("server", "tls")
TARGET_DECLARES = ("keepalive_timeout_s", "keepalive_max")


def matrix_of(
    given: Mapping[str, str | bool | None], target: TargetServer | TargetCommand | None = None
) -> dict[str, tuple[Any, ...]]:
    """Every dimension's values from the CLI's strings (keyed by the flag's argparse dest; a
    switch is True/False): the given ones parsed, the others their defaults."""
    matrix: dict[str, tuple[Any, ...]] = {}
    if target is not None:
        matrix.update(_target_matrix(given, target))
    for d in DIMENSIONS:
        if d.column in matrix:
            continue
        text = given.get(d.dest)
        matrix[d.column] = d.default() if text is None else parse_values(str(text), d)
    return matrix


def _target_matrix(
    given: Mapping[str, str | bool | None], target: TargetServer | TargetCommand
) -> dict[str, tuple[Any, ...]]:
    """The dimensions a target sets: the server, which one, its TLS, and the keep-alive
    settings as declared."""
    for column in TARGET_REFUSES:
        d = by_column(column)
        if given.get(d.dest):
            raise UsageError(f"--target measures the server at its URL: {d.flag} does not apply")
    matrix: dict[str, tuple[Any, ...]] = {
        "server": (TARGET_SERVER,), "tls": (target_tls(target),), "target_url": (target.url,),
    }  # fmt: skip
    if given.get(by_column("client").dest) is None:  # a target is measured by every client
        matrix["client"] = tuple(ClientKind)
    for column in TARGET_DECLARES:
        d = by_column(column)
        text = given.get(d.dest)
        values = (UNKNOWN,) if text is None else parse_values(str(text), d)
        if len(values) != 1:
            raise UsageError(f"{d.flag} with --target declares the target's one setting")
        matrix[column] = values
    return matrix


def build(
    *,
    quick: bool,
    duration: float | None = None,
    warmup: float | None = None,
    repeat: int | None = None,
    results_dir: Path = Path("results"),
    client_timeout: float | None = None,
    workers: int = 1,
    target_server: TargetServer | TargetCommand | None = None,
    **dimensions: str | bool | None,
) -> RunConfig:
    """RunConfig from CLI strings: unset values take the profile's (QUICK or FULL) defaults.

    `dimensions` are keyed by each dimension's argparse dest (`servers="uvloop,aiohttp"`,
    `keepalive_max="0"`, `tls="1.2,1.3"`); TypeError for a name that is none of them."""
    unknown = set(dimensions) - {d.dest for d in DIMENSIONS}
    if unknown:
        raise TypeError(f"build() got unknown dimensions {sorted(unknown)}")
    profile: Profile = QUICK if quick else FULL
    return RunConfig(
        matrix=matrix_of(dimensions, target=target_server),
        duration_s=profile.duration_s if duration is None else duration,
        warmup_s=profile.warmup_s if warmup is None else warmup,
        repeat=profile.repeat if repeat is None else repeat,
        quick=quick,
        results_dir=results_dir,
        client_timeout_s=client_timeout,
        workers=workers,
        target=target_server,
    )
