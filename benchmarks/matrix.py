"""The benchmark matrix: each dimension defined once, as one typed field of `CellKey`.

A dimension is a field of `CellKey` whose metadata (`Dimension`) says everything the rest of
the suite needs: the `python -m benchmarks run` flag (and so the make variable of the same name
in capitals, and what bench-compare and noise forward), how one comma-separated item of it is
parsed and checked, its default values, its CSV column and the column's documentation, its
short name in cell labels, and which component's option it sets (a server's, a client's). The
harness CLI, the cell expansion, the server and client options of a cell, the CSV columns, the
cell key that compare, noise and report group by, and the flags that rounds forward are all
derived from `DIMENSIONS`; `RUN_SETTINGS` are the other flags that every round is run with.

Imported by the analysis, which never imports `servers`: the server names and the servers'
keep-alive defaults are loaded only when a run parses its flags (`_server_names`, `_defaults`).
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from benchmarks.clients.contract import ClientKind, Mode
from benchmarks.common import UsageError

if TYPE_CHECKING:
    from servers.options import ServerName

DIMENSION = "dimension"  # the metadata key of a CellKey field
ALWAYS: Any = type("Always", (), {"__repr__": lambda self: "ALWAYS"})()  # `before`: no default


class Reach(enum.StrEnum):
    """The component whose option a dimension sets."""

    SERVER = "server"  # a field of servers.options.ServerOptions
    CLIENT = "client"  # a field of benchmarks.clients.contract.ClientConfig


@dataclass(frozen=True)
class Flag:
    """A flag of `python -m benchmarks run` that make sets from the variable of the same name
    in capitals, and that bench-compare and noise hand on to every round."""

    flag: str

    @property
    def make_var(self) -> str:
        """`--keepalive-timeout` -> KEEPALIVE_TIMEOUT: the Makefile variable of the flag (the
        Makefile turns it back the same way: its `flag_of`)."""
        return flag_make_var(self.flag)

    @property
    def dest(self) -> str:
        """argparse's attribute name for the flag."""
        return flag_dest(self.flag)


@dataclass(frozen=True)
class Dimension(Flag):
    """One axis of the matrix; `column` and `kind` are its CellKey field's name and type."""

    help: str  # of the flag; `{choices}` is replaced by the names it accepts
    doc: str  # of the CSV column (results/README.md is generated from it)
    parse: Callable[[str], Any]  # one comma-separated item -> value; ValueError/UsageError if bad
    default: Callable[[], tuple[Any, ...]]  # the values when the flag is not given
    reach: Reach | None = None  # which component's option it sets (None: the harness's own)
    option: str = ""  # that option's field name
    label: str = ""  # in cell labels: "c" gives "c=16"; "" shows the value alone (server/...)
    # The component's options one value sets, when it is more than `option`'s value (`--tls 1.2`
    # sets the server's tls and tls_version); None: {option: option_value(value)}.
    options_of: Callable[[Any], dict[str, Any]] | None = None
    # How the CSV's text is read when older files spell values differently (tls: 0 and 1);
    # None: cast as `kind`.
    read: Callable[[str], Any] | None = None
    innermost: bool = False  # varies fastest in the run order (the modes of one configuration)
    choices: Callable[[], tuple[str, ...]] | None = None  # names accepted, for the help text
    # The value of every run measured before this dimension existed, which a CSV without its
    # column then holds (ALWAYS: every results CSV has the column). Set it on a new dimension, so
    # that the committed runs still read: `before=0.0` for an emulated loss that was never there.
    # A cell at that value is labelled as before too: the dimension is left out of its label.
    before: object = ALWAYS
    # The row column this dimension's column follows in the CSV, for a dimension whose column
    # was committed after the row's own ("" : with the other dimensions, in place of the key):
    # committed columns are never reordered.
    after: str = ""
    column: str = ""
    kind: str = "str"  # the field's type: "str", "int", "float" or "float | None"

    def text(self, value: object) -> str:
        """A value as labels, slugs and help show it: `5` rather than `5.0`."""
        return f"{value:g}" if isinstance(value, float) else str(value)

    def shown(self, value: object) -> bool:
        """False at the value every run had before the dimension existed: those cells keep the
        labels and slugs they always had."""
        return self.before is ALWAYS or value != self.before

    def option_value(self, value: object) -> Any:
        """The value as the component's option takes it: parsed again, so a key read from a CSV
        (names as text) gives the enum member."""
        return self.parse(str(value))

    def options(self, value: object) -> dict[str, Any]:
        """The component's options (keywords) this value sets."""
        if self.options_of is not None:
            return self.options_of(self.option_value(value))
        return {self.option: self.option_value(value)}


def flag_dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def flag_make_var(flag: str) -> str:
    return flag_dest(flag).upper()


def dimension(**kwargs: Any) -> dict[str, Dimension]:
    """The metadata of a CellKey field: `field(metadata=dimension(flag=..., ...))`."""
    return {DIMENSION: Dimension(**kwargs)}


# --- parsing one item of a flag ---------------------------------------------------------------


def _server_names() -> type[ServerName]:
    """Imported when a run parses its flags, never by the analysis (which must not import
    `servers`)."""
    from servers.options import ServerName

    return ServerName


def _reference_servers() -> tuple[ServerName, ...]:
    """Ours: the default. nginx and node run only when --servers names them."""
    from servers.options import REFERENCE_SERVERS

    return REFERENCE_SERVERS


def _defaults() -> tuple[float, int]:
    """The servers' own keep-alive defaults (T, N): the matrix's, when none is given."""
    from servers.options import DEFAULT_KEEPALIVE_MAX, DEFAULT_KEEPALIVE_TIMEOUT_S

    return DEFAULT_KEEPALIVE_TIMEOUT_S, DEFAULT_KEEPALIVE_MAX


def one_of(names: Callable[[], type[enum.StrEnum]], flag: str) -> Callable[[str], Any]:
    """An item that names a member of an enum (any case); UsageError lists every name."""

    def parse(item: str) -> Any:
        members = names()
        try:
            return members(item.lower())
        except ValueError:
            choices = ", ".join(m.value for m in members)
            raise UsageError(f"{flag}: unknown {item!r} (choose from {choices})") from None

    return parse


def at_least(kind: Callable[[str], Any], low: float, flag: str, what: str) -> Callable[[str], Any]:
    """A finite number of `kind` >= `low`; `what` completes "--flag must be ..."."""

    def parse(item: str) -> Any:
        value = kind(item)
        if not (math.isfinite(value) and value >= low):
            raise UsageError(f"{flag} must be {what}, got {item}")
        return value

    return parse


NO_TLS = "none"  # --tls none: plain HTTP, how every run before --tls was measured
TLS_VERSIONS = ("1.2", "1.3")  # servers.options.TlsVersion's values (the analysis never imports it)
# Older spellings, read in committed CSVs (0/1 when --tls was a switch: 1 meant the servers'
# default, which both sides negotiated as 1.3) and still accepted on the command line.
TLS_ALIASES = {"0": NO_TLS, "1": "1.3", "off": NO_TLS}


def _tls(item: str) -> str:
    """`none`, `1.2` or `1.3` (or an alias: 0, 1, off): the TLS a cell's server speaks."""
    text = item.strip().lower()
    text = TLS_ALIASES.get(text, text)
    if text != NO_TLS and text not in TLS_VERSIONS:
        choices = ", ".join((NO_TLS, *TLS_VERSIONS))
        raise UsageError(f"--tls: unknown {item!r} (choose from {choices}; 0 and 1 mean none, 1.3)")
    return text


def _tls_options(value: str) -> dict[str, Any]:
    """ServerOptions' tls and tls_version for a --tls value."""
    from servers.options import TlsVersion

    if value == NO_TLS:
        return {"tls": False, "tls_version": None}
    return {"tls": True, "tls_version": TlsVersion(value)}


LOOPBACK = "none"  # --rtt none: no delay line (127.0.0.1), how every run before it was measured


def _rtt(item: str) -> float | None:
    """`none` (loopback: None) or a round trip in ms, 0 included (the line's own overhead)."""
    if item.strip().lower() in (LOOPBACK, str(None).lower()):
        return None
    return _rtt_ms(item)


_rtt_ms = at_least(float, 0, "--rtt", "`none` or a number of ms >= 0")


def _bandwidth(item: str) -> float:
    """`none` or 0 (unlimited: 0.0) or a rate in Mbit/s > 0."""
    if item.strip().lower() == LOOPBACK:
        return 0.0
    return at_least(float, 0, "--bandwidth", "`none` or a number of Mbit/s >= 0")(item)


# --- the dimensions ---------------------------------------------------------------------------

# The server column of rows measured against an existing server (`run --target URL`, the URL in
# the row's target_url); their keep-alive columns hold UNKNOWN unless declared with the flags.
TARGET_SERVER = "target"
UNKNOWN = -1

MAX_SLUG = 120  # a slug names the cell's files: a target's long command is cut, with a hash

DEFAULT_CLIENTS = (ClientKind.LOCUST_FASTHTTP, ClientKind.PYPERF_CONCURRENT_RAW)
DEFAULT_CONCURRENCY = 16


@dataclass(frozen=True, order=True)
class CellKey:
    """The configuration of a cell, one value per dimension, in CSV column order: rows with
    equal keys measure the same thing. Values are as the CSV holds them (names as text, so a
    CSV naming a client this code no longer has still reads)."""

    server: str = field(
        metadata=dimension(
            flag="--servers",
            help="{choices} (default: the three reference servers; nginx and node are Debian's, "
            "run behind the same interface, skipped when not installed)",
            doc="`stdlib`, `aiohttp` or `uvloop` (ours), `nginx` or `node` (wrapped), `target` "
            "(an existing server, `--target URL`: see `target_url`)",
            parse=one_of(_server_names, "--servers"), default=_reference_servers,
            choices=lambda: tuple(_server_names()), reach=Reach.SERVER, option="name",
        )
    )  # fmt: skip
    client: str = field(
        metadata=dimension(
            flag="--clients", help="{choices}",
            doc="client and variant, e.g. `locust-fasthttp`, `pyperf-concurrent-raw`",
            parse=one_of(lambda: ClientKind, "--clients"), default=lambda: DEFAULT_CLIENTS,
            choices=lambda: tuple(ClientKind), reach=Reach.CLIENT, option="kind",
        )
    )  # fmt: skip
    mode: str = field(
        metadata=dimension(
            flag="--modes", help="{choices} (default: both)",
            doc="`pooled` (connections reused) or `unpooled` (new connection per request)",
            parse=one_of(lambda: Mode, "--modes"), default=lambda: tuple(Mode),
            choices=lambda: tuple(Mode), reach=Reach.CLIENT, option="mode", innermost=True,
        )
    )  # fmt: skip
    tls: str = field(
        metadata=dimension(
            flag="--tls",
            help="{choices}: plain HTTP (default) or HTTPS pinned to that TLS version (the "
            "servers' generated certificate); 1 means 1.3, 0 none",
            doc="`none` (plain HTTP), `1.2` or `1.3` (HTTPS, the server pinned to that version); "
            "files from before it read 0 as `none` and 1 (the servers' default) as `1.3`",
            parse=_tls, default=lambda: (NO_TLS,), choices=lambda: (NO_TLS, *TLS_VERSIONS),
            label="tls", before=NO_TLS, reach=Reach.SERVER, option="tls", options_of=_tls_options,
            read=_tls,
        )
    )  # fmt: skip
    concurrency: int = field(
        metadata=dimension(
            flag="--concurrency", help=f"connections per client (default {DEFAULT_CONCURRENCY})",
            doc="simultaneous connections (Locust users, pyperf connections)",
            parse=at_least(int, 1, "--concurrency", ">= 1"),
            default=lambda: (DEFAULT_CONCURRENCY,), label="c",
            reach=Reach.CLIENT, option="concurrency",
        )
    )  # fmt: skip
    keepalive_timeout_s: float = field(
        metadata=dimension(
            flag="--keepalive-timeout", help="server keep-alive timeout(s), seconds (default 5)",
            doc="server's --keepalive-timeout (a target's as declared with the flag; -1: not "
            "known)",
            parse=at_least(float, 0, "--keepalive-timeout", "a finite number >= 0"),
            default=lambda: (_defaults()[0],), label="kt",
            reach=Reach.SERVER, option="keepalive_timeout_s",
        )
    )  # fmt: skip
    keepalive_max: int = field(
        metadata=dimension(
            flag="--keepalive-max",
            help="server requests per connection(s), 0 = unlimited (default 100)",
            doc="server's --keepalive-max (0 = unlimited; a target's as declared, -1: not known)",
            parse=at_least(int, 0, "--keepalive-max", ">= 0"),
            default=lambda: (_defaults()[1],), label="km",
            reach=Reach.SERVER, option="keepalive_max",
        )
    )  # fmt: skip

    rtt_ms: float | None = field(
        default=None,
        metadata=dimension(
            flag="--rtt",
            help="round trip(s) in ms through the delay line (benchmarks.net; root and "
            "/dev/net/tun): `none` is loopback (default), 0 the line's own overhead",
            doc="round trip of the delay line in ms; empty for loopback (no line)",
            parse=_rtt, default=lambda: (None,), label="rtt", before=None,
        )
    )  # fmt: skip
    loss_pct: float = field(
        default=0.0,
        metadata=dimension(
            flag="--loss", help="packet loss per direction on the delay line, percent (default 0)",
            doc="delay line's random loss per packet and direction, %",
            parse=at_least(float, 0, "--loss", "a number of % >= 0"), default=lambda: (0.0,),
            label="loss", before=0.0,
        )
    )  # fmt: skip
    bandwidth_mbit: float = field(
        default=0.0,
        metadata=dimension(
            flag="--bandwidth",
            help="delay line bottleneck(s), Mbit/s (default none: unlimited)",
            doc="delay line's bottleneck rate, Mbit/s (0: unlimited)",
            parse=_bandwidth, default=lambda: (0.0,), label="bw", before=0.0,
        )
    )  # fmt: skip

    target_url: str = field(
        default="",
        metadata=dimension(
            flag="--target",
            help="measure this existing server instead of starting ours (loopback only: "
            "127.0.0.1, ::1, localhost; https with --target-ca or --target-insecure); rows say "
            "server=target and carry the URL in target_url, connections are counted by the "
            "clients and /proc/net/tcp; --keepalive-timeout/--keepalive-max then declare its "
            "settings (unknown otherwise)",
            doc="the existing server measured when `server` is `target`: its URL (`run --target`; "
            "connections then counted by the client, peak open from /proc/net/tcp, server CPU "
            "from `--target-pid`, blank without it), or `command: CMD` for a command the harness "
            "ran in the delay line's server namespace (`run --target-command`; connections and "
            "CPU from that namespace's kernel and the command's pid); empty otherwise. Part of "
            "the cell key: rows of two targets are never one cell",
            parse=str.strip, default=lambda: ("",), label="target", before="", after="note",
        )
    )  # fmt: skip

    @property
    def loopback(self) -> bool:
        """No delay line: the server on 127.0.0.1, as every run before --rtt."""
        return self.rtt_ms is None

    def label(self) -> str:
        """Short, stable, human-readable name used in tables, JSON and plot legends:
        `uvloop/pyperf-concurrent-raw/pooled c=16 kt=5 km=100 tls`."""
        names = "/".join(str(getattr(self, d.column)) for d in DIMENSIONS if not d.label)
        return " ".join(filter(None, [names, self.settings()]))

    def settings(self, only: Iterable[str] | None = None) -> str:
        """The labelled dimensions, `tls=1.3 c=16 kt=5 km=100`, or only those whose column is
        in `only`."""
        wanted = None if only is None else set(only)
        return " ".join(
            "=".join(parts) for d, parts in self._labelled() if wanted is None or d.column in wanted
        )

    def slug(self) -> str:
        """File-name-safe: `uvloop-pyperf-concurrent-raw-pooled[-tls1.3]-c16-kt5-km100` (a
        target's URL with every run of other characters as one `_`)."""
        names = [str(getattr(self, d.column)) for d in DIMENSIONS if not d.label]
        slug = "-".join(names + ["".join(parts) for _, parts in self._labelled()])
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", slug)
        if len(slug) <= MAX_SLUG:
            return slug
        return f"{slug[: MAX_SLUG - 9]}-{hashlib.sha1(slug.encode()).hexdigest()[:8]}"

    def _labelled(self) -> list[tuple[Dimension, tuple[str, ...]]]:
        """(dimension, (label, value text)) of the labelled ones, in field order."""
        return [
            (d, (d.label, d.text(getattr(self, d.column))))
            for d in labelled()
            if d.shown(getattr(self, d.column))
        ]

    def options(self, reach: Reach) -> dict[str, Any]:
        """The options this cell sets on `reach` (ServerOptions or ClientConfig keywords)."""
        options: dict[str, Any] = {}
        for d in DIMENSIONS:
            if d.reach is reach:
                options.update(d.options(getattr(self, d.column)))
        return options


def _dimensions() -> tuple[Dimension, ...]:
    return tuple(
        replace(f.metadata[DIMENSION], column=f.name, kind=str(f.type)) for f in fields(CellKey)
    )


DIMENSIONS: tuple[Dimension, ...] = _dimensions()
DIMENSION_COLUMNS: tuple[str, ...] = tuple(d.column for d in DIMENSIONS)


def labelled() -> list[Dimension]:
    """The dimensions shown as `name=value` in labels, in field order."""
    return [d for d in DIMENSIONS if d.label]


def by_column(column: str) -> Dimension:
    return next(d for d in DIMENSIONS if d.column == column)


def key_of(values: Mapping[str, Any]) -> CellKey:
    """A CellKey from a mapping holding (at least) every dimension column."""
    return CellKey(**{c: values[c] for c in DIMENSION_COLUMNS})


# --- the other flags every round runs with ------------------------------------------------------


@dataclass(frozen=True)
class RunSetting(Flag):
    """A flag that is not a dimension but belongs to what was measured (the window, the
    repetitions, ...). `parse` None: a switch."""

    help: str
    parse: Callable[[str], Any] | None = None


@dataclass(frozen=True)
class Profile:
    """Defaults of one run size (full `make bench`, or `make bench QUICK=1`)."""

    duration_s: float
    warmup_s: float
    repeat: int


FULL = Profile(duration_s=5.0, warmup_s=1.0, repeat=2)
QUICK = Profile(duration_s=1.0, warmup_s=0.5, repeat=1)

RUN_SETTINGS: tuple[RunSetting, ...] = (
    RunSetting("--quick", "short one-repetition run (<= 60 s)"),
    RunSetting("--duration", "measured window, seconds", float),
    RunSetting("--warmup", "client warm-up before the window, seconds", float),
    RunSetting("--repeat", "repetitions of every cell", int),
    RunSetting(
        "--workers",
        "Locust worker processes per client (Locust's --processes; default 1). They share the "
        "client's core when pinned; the pyperf clients ignore it",
        int,
    ),
    RunSetting(
        "--netns",
        "re-run inside a private network namespace (root: unshare --net) so the kernel TCP "
        "counters in the note column are exact",
    ),
)


def forwarded() -> tuple[tuple[str, bool], ...]:
    """(flag, takes a value) of every flag a round is run with: the dimensions', then the run
    settings'. What bench-compare and noise accept and hand on unchanged."""
    dims = tuple((d.flag, True) for d in DIMENSIONS)
    return dims + tuple((s.flag, s.parse is not None) for s in RUN_SETTINGS)
