"""The contract between the harness and every load client: argv in, one JSON file out.

The harness never imports locust (gevent) or the pyperf clients: it builds a `ClientConfig`,
turns it into a command with `command()`, runs it as a subprocess, and reads the `ClientResult`
JSON the client wrote atomically to `output`. The clients read their flags back here too
(`parse_pyperf_args`; `add_locust_arguments` and `LocustSettings` for the locustfile), as
`servers/options.py` does for the servers: each flag is spelled, parsed and validated in this
module only. Stdlib and benchmarks.common only: the locustfile (under gevent) imports it.
"""

from __future__ import annotations

import argparse
import enum
import json
import math
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO_ROOT,
    OneLineParser,
    UsageError,
    seconds_text,
    split_http_url,
    write_atomic,
)

RESULT_FORMAT = 1
LOCUSTFILE = REPO_ROOT / "locustfiles" / "keepalive.py"
PAGE_LOCUSTFILE = REPO_ROOT / "locustfiles" / "pageload.py"  # the page users (issue 11)
# A browser's HTTP/1.1 connections per host: one page user holds this many at once.
PAGE_CONNECTIONS = 6
# The request_type of the page user's whole-page event: Locust charts it beside the requests,
# but it is no HTTP request, so the result counts it apart (ClientResult.pages).
PAGE_EVENT_TYPE = "PAGE"
MAX_CONCURRENCY = 10_000  # connections one client holds at once (file descriptors, ports)
MAX_WORKERS = 64  # Locust worker processes of one client: make bench's and the lab's --workers


class Mode(enum.StrEnum):
    POOLED = "pooled"  # connections reused across requests
    UNPOOLED = "unpooled"  # a new TCP connection per request (Connection: close)


class ClientKind(enum.StrEnum):
    """Client and variant; the value is the CSV's `client` column."""

    LOCUST_FASTHTTP = "locust-fasthttp"  # FastHttpUser: PooledUser / UnpooledUser
    LOCUST_REQUESTS = "locust-requests"  # HttpUser: PooledRequestsUser / UnpooledRequestsUser
    LOCUST_PAGE = "locust-page"  # PageUser / UnpooledPageUser: pages, six requests at a time
    PYPERF_SEQUENTIAL = "pyperf-sequential"  # one request at a time (the seed experiment)
    # The same, and each new connection resumes the previous one's TLS session (no Python HTTP
    # client does: urllib3/requests, aiohttp and geventhttpclient all start every one afresh).
    PYPERF_SEQUENTIAL_RESUME = "pyperf-sequential-resume"
    PYPERF_CONCURRENT_RAW = "pyperf-concurrent-raw"  # asyncio Protocol client on uvloop
    PYPERF_CONCURRENT_AIOHTTP = "pyperf-concurrent-aiohttp"  # aiohttp ClientSession
    PYPERF_OPENLOOP = "pyperf-openloop"  # starts on a schedule (--rate), latency from it

    @property
    def open_loop(self) -> bool:
        """Paced by a schedule, not by responses: the only kind a rate applies to."""
        return self is ClientKind.PYPERF_OPENLOOP

    @property
    def is_locust(self) -> bool:
        return self.value.startswith("locust")

    def rate(self, rate_rps: float) -> float:
        """The rate a cell of this client runs at: none for a closed-loop client, the default
        for an open-loop one when the matrix gives none."""
        if not self.open_loop:
            return 0.0
        return rate_rps or DEFAULT_RATE_RPS

    @property
    def loads_pages(self) -> bool:
        """True for the page user: it needs a server of /page (ours), not any URL."""
        return self is ClientKind.LOCUST_PAGE

    def connections(self, concurrency: int) -> int:
        """Connections this client holds at once: the sequential clients always use one; a
        page user holds six, so the page client's concurrency is a multiple of six (rounded
        up: 1 and 6 are one user, 10 and 12 two)."""
        if self in SEQUENTIAL_CLIENTS:
            return 1
        if self is ClientKind.LOCUST_PAGE:
            return PAGE_CONNECTIONS * math.ceil(concurrency / PAGE_CONNECTIONS)
        return concurrency

    def users(self, concurrency: int) -> int:
        """Locust users for `concurrency` connections: one per connection, a page user per six."""
        return (
            self.connections(concurrency) // PAGE_CONNECTIONS if self.loads_pages else concurrency
        )

    @property
    def resumes_tls(self) -> bool:
        """Offers the previous connection's TLS session on each new connection."""
        return self is ClientKind.PYPERF_SEQUENTIAL_RESUME


SEQUENTIAL_CLIENTS = frozenset({ClientKind.PYPERF_SEQUENTIAL, ClientKind.PYPERF_SEQUENTIAL_RESUME})


class Arrivals(enum.StrEnum):
    CONSTANT = "constant"  # t0 + i / R
    POISSON = "poisson"  # exponential gaps of mean 1 / R


@dataclass(frozen=True)
class ThinkTime:
    """A user's wait between a response and its next request, in seconds."""

    kind: str  # exp, const or uniform
    a: float  # exp: mean; const: the value; uniform: low
    b: float = 0.0  # uniform: high

    @classmethod
    def parse(cls, text: str) -> ThinkTime:
        """`exp:MEAN`, `const:SECONDS` or `uniform:LOW-HIGH`; UsageError (one line) otherwise."""
        kind, _, value = text.partition(":")
        try:
            if kind == "uniform":
                low, high = (float(v) for v in value.split("-", 1))
                think = cls(kind, low, high)
            elif kind in ("exp", "const"):
                think = cls(kind, float(value))
            else:
                raise ValueError(kind)
        except ValueError:
            raise UsageError(
                f"--think must be exp:MEAN, const:SECONDS or uniform:LOW-HIGH, got {text!r}"
            ) from None
        if not all(math.isfinite(v) and v >= 0 for v in (think.a, think.b)) or (
            kind == "uniform" and think.b < think.a
        ):
            raise UsageError(f"--think: seconds must be finite, >= 0 and in order, got {text!r}")
        return think

    @property
    def mean_s(self) -> float:
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a

    def draw(self, rng: random.Random) -> float:
        if self.kind == "exp":
            return rng.expovariate(1 / self.a) if self.a > 0 else 0.0
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return self.a

    def __str__(self) -> str:
        return (
            f"uniform:{self.a:g}-{self.b:g}"
            if self.kind == "uniform"
            else f"{self.kind}:{self.a:g}"
        )


LOCUST_USER_CLASSES = {
    (ClientKind.LOCUST_FASTHTTP, Mode.POOLED): "PooledUser",
    (ClientKind.LOCUST_FASTHTTP, Mode.UNPOOLED): "UnpooledUser",
    (ClientKind.LOCUST_REQUESTS, Mode.POOLED): "PooledRequestsUser",
    (ClientKind.LOCUST_REQUESTS, Mode.UNPOOLED): "UnpooledRequestsUser",
    (ClientKind.LOCUST_PAGE, Mode.POOLED): "PageUser",
    (ClientKind.LOCUST_PAGE, Mode.UNPOOLED): "UnpooledPageUser",
}

PYPERF_MODULES = {
    ClientKind.PYPERF_SEQUENTIAL: "benchmarks.clients.pyperf_sequential",
    ClientKind.PYPERF_SEQUENTIAL_RESUME: "benchmarks.clients.pyperf_sequential_resume",
    ClientKind.PYPERF_CONCURRENT_RAW: "benchmarks.clients.pyperf_concurrent",
    ClientKind.PYPERF_CONCURRENT_AIOHTTP: "benchmarks.clients.pyperf_concurrent",
    ClientKind.PYPERF_OPENLOOP: "benchmarks.clients.pyperf_openloop",
}
DEFAULT_RATE_RPS = 1000.0  # an open-loop cell's rate when the matrix gives none
MAX_RATE_RPS = 1e6


PYPERF_VARIANTS = {  # `--variant` of benchmarks.clients.pyperf_concurrent
    ClientKind.PYPERF_CONCURRENT_RAW: "raw",
    ClientKind.PYPERF_CONCURRENT_AIOHTTP: "aiohttp",
}


@dataclass(frozen=True)
class ClientConfig:
    """One client run against one server, validated on construction (UsageError, one line).

    `command()` spells the client's argv, `parse_pyperf_args` reads a pyperf client's back
    into this type, and `LocustSettings` does both for the locustfile's own flags: every
    client flag is written and read here, and checked once, by the same rules."""

    kind: ClientKind
    url: str
    mode: Mode
    concurrency: int
    duration_s: float  # the measured window (approximate for pyperf, which calibrates)
    output: Path  # where the client writes its ClientResult JSON
    warmup_s: float = 1.0
    path: str = "/"
    ca_path: Path | None = None  # CA to trust for https URLs
    insecure: bool = False  # https without verifying the certificate (a target's own choice)
    workers: int = 1  # Locust worker processes (--processes); the pyperf clients ignore it
    # Open loop only (pyperf-openloop): starts per second, how they are spaced, and per-user
    # think times instead (`concurrency` users, each on its own connection).
    rate_rps: float = 0.0
    arrivals: Arrivals = Arrivals.CONSTANT
    think: ThinkTime | None = None
    seed: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise UsageError(
                f"--concurrency must be between 1 and {MAX_CONCURRENCY}, got {self.concurrency}"
            )
        check_seconds("--duration", self.duration_s, positive=True)
        check_seconds("--warmup", self.warmup_s)
        check_request_path("--path", self.path)
        check_ca("--ca", self.ca_path)
        check_verification("--ca", "--insecure", self.ca_path, self.insecure)
        if not 1 <= self.workers <= MAX_WORKERS:
            raise UsageError(f"--workers must be between 1 and {MAX_WORKERS}, got {self.workers}")
        self._check_open_loop()
        try:
            split_http_url(self.url)
        except UsageError as exc:
            raise UsageError(f"--url: {exc}") from None

    def _check_open_loop(self) -> None:
        if not (math.isfinite(self.rate_rps) and 0 <= self.rate_rps <= MAX_RATE_RPS):
            raise UsageError(f"--rate must be between 0 and {MAX_RATE_RPS:g}, got {self.rate_rps}")
        if not self.kind.open_loop:
            if self.rate_rps or self.think is not None:
                raise UsageError(f"--rate and --think are for pyperf-openloop, not {self.kind}")
            return
        if self.think is None and self.rate_rps <= 0:
            raise UsageError("pyperf-openloop needs --rate > 0 (or --think for per-user load)")
        if self.think is not None and self.mode is not Mode.POOLED:
            raise UsageError("--think (per-user load) keeps each user's connection: pooled only")

    def command(self) -> list[str]:
        """The full argv of the client process."""
        if self.kind.is_locust:
            return self._locust_command()
        return [sys.executable, "-m", PYPERF_MODULES[self.kind], *self.pyperf_args()]

    def pyperf_args(self) -> list[str]:
        """A pyperf client module's flags: what `parse_pyperf_args` reads back."""
        args: list[str] = []
        if self.kind in PYPERF_VARIANTS:
            args += [
                "--variant",
                PYPERF_VARIANTS[self.kind],
                "--concurrency",
                str(self.concurrency),
            ]
        if self.kind.open_loop:
            args += ["--concurrency", str(self.concurrency), "--rate", repr(self.rate_rps),
                     "--arrivals", self.arrivals.value, "--seed", str(self.seed)]  # fmt: skip
            args += ["--think", str(self.think)] if self.think is not None else []
        args += [
            "--url", self.url, "--mode", self.mode.value, "--path", self.path,
            "--duration", seconds_text(self.duration_s), "--warmup", seconds_text(self.warmup_s),
            "--output", str(self.output),
        ]  # fmt: skip
        if self.ca_path is not None:
            args += ["--ca", str(self.ca_path)]
        if self.insecure:
            args.append("--insecure")
        return args

    def _locust_command(self) -> list[str]:
        """Locust's --run-time takes whole seconds, so it is rounded up and the locustfile
        closes the window itself after exactly --kab-duration seconds."""
        user_class = LOCUST_USER_CLASSES[(self.kind, self.mode)]
        total_s = max(math.ceil(self.duration_s + self.warmup_s), 1)
        locustfile = PAGE_LOCUSTFILE if self.kind.loads_pages else LOCUSTFILE
        users = str(self.kind.users(self.concurrency))
        argv = [
            sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
            "--host", self.url, "-u", users, "-r", users,
            "-t", f"{total_s}s", "--stop-timeout", "2", "--only-summary", "--loglevel", "WARNING",
        ]  # fmt: skip
        settings = LocustSettings(
            output=self.output, warmup_s=self.warmup_s, duration_s=self.duration_s,
            path=self.path, ca=self.ca_path, insecure=self.insecure,
        )  # fmt: skip
        argv += settings.to_argv()
        if self.workers > 1:
            argv += ["--processes", str(self.workers)]
        return [*argv, user_class]


def check_seconds(flag: str, value: float, positive: bool = False) -> None:
    """UsageError unless `value` is a number of seconds that can be waited (finite, >= 0; > 0
    with `positive`)."""
    if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise UsageError(
            f"{flag} must be a finite number {'>' if positive else '>='} 0, got {value:g}"
        )


def check_request_path(flag: str, path: str) -> None:
    if not path.startswith("/"):
        raise UsageError(f"{flag} must start with '/', got {path!r}")


def check_ca(flag: str, ca: Path | None) -> None:
    if ca is not None and not ca.is_file():
        raise UsageError(f"{flag}: no such file: {ca}")


def check_verification(ca_flag: str, insecure_flag: str, ca: Path | None, insecure: bool) -> None:
    """A CA to verify with, or no verification: not both (the CA would be silently unused)."""
    if ca is not None and insecure:
        raise UsageError(f"{ca_flag} and {insecure_flag}: give one (verify with the CA, or not)")


def valid_seconds(value: float | str) -> float | None:
    """`value` as a number of seconds that can be waited (finite, >= 0), else None.

    The rule for a think time typed into the lab's web UI, and read by every running user."""
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def pyperf_parser(module: str, description: str = "") -> OneLineParser:
    """The flags `ClientConfig.pyperf_args` writes for `module`, plus the driver's own
    hand-off to its workers (hidden)."""
    parser = OneLineParser(prog=f"python -m {module}", allow_abbrev=False, description=description)
    variants = {v: kind for kind, v in PYPERF_VARIANTS.items() if PYPERF_MODULES[kind] == module}
    if variants:
        parser.add_argument("--variant", required=True, choices=sorted(variants))
        parser.add_argument(
            "--concurrency", type=int, required=True, help="connections in parallel"
        )
    if module == PYPERF_MODULES[ClientKind.PYPERF_OPENLOOP]:
        add_open_loop_arguments(parser)
    parser.add_argument("--url", required=True, help="server base URL, http:// or https://")
    parser.add_argument("--mode", required=True, choices=[m.value for m in Mode])
    parser.add_argument("--path", default="/", help="request path (default %(default)s)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds (approx.)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds first")
    parser.add_argument("--output", type=Path, required=True, help="ClientResult JSON path")
    parser.add_argument("--ca", type=Path, help="CA PEM to verify https servers with")
    parser.add_argument(
        "--insecure", action="store_true", help="https without verifying the certificate"
    )
    parser.add_argument("--parts-dir", type=Path, help=argparse.SUPPRESS)  # main -> workers
    return parser


def add_open_loop_arguments(parser: argparse.ArgumentParser) -> None:
    """pyperf-openloop's own flags (also the thinktime scenario client's)."""
    parser.add_argument(
        "--concurrency", type=int, required=True,
        help="requests in flight at most (rate mode), or users (with --think)",
    )  # fmt: skip
    parser.add_argument("--rate", type=float, default=0.0, help="starts per second (rate mode)")
    parser.add_argument(
        "--arrivals", choices=[a.value for a in Arrivals], default=Arrivals.CONSTANT.value,
        help="constant spacing or Poisson arrivals (default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="of the Poisson and think draws")
    parser.add_argument(
        "--think", type=ThinkTime.parse,
        help="per-user load instead: each user waits exp:MEAN, const:S or uniform:LOW-HIGH "
        "seconds after each response",
    )  # fmt: skip


def parse_pyperf_args(
    module: str, argv: list[str], description: str = ""
) -> tuple[ClientConfig, Path | None, list[str]]:
    """A pyperf client's argv -> (its ClientConfig, the parts directory a worker writes to,
    the arguments left for pyperf). Bad input: one line and exit 2, before anything connects."""
    parser = pyperf_parser(module, description)
    ns, rest = parser.parse_known_args(argv)
    kinds = [k for k, m in PYPERF_MODULES.items() if m == module]
    variant = getattr(ns, "variant", None)
    kind = next((k for k in kinds if PYPERF_VARIANTS.get(k) == variant), kinds[0])
    try:
        config = ClientConfig(
            kind=kind, url=ns.url, mode=Mode(ns.mode), concurrency=getattr(ns, "concurrency", 1),
            duration_s=ns.duration, output=ns.output, warmup_s=ns.warmup, path=ns.path,
            ca_path=ns.ca, insecure=ns.insecure, **_open_loop_options(ns),
        )  # fmt: skip
    except UsageError as exc:
        parser.error(str(exc))
    return config, ns.parts_dir, rest


def _open_loop_options(ns: argparse.Namespace) -> dict[str, Any]:
    if not hasattr(ns, "rate"):
        return {}
    return dict(rate_rps=ns.rate, arrivals=Arrivals(ns.arrivals), think=ns.think, seed=ns.seed)


@dataclass(frozen=True)
class LocustSettings:
    """The locustfile's own flags (`--kab-*`), next to Locust's: written by `to_argv`, added to
    Locust's parser by `add_locust_arguments`, read back and checked by `from_options`."""

    output: Path | None = None  # write a ClientResult here at quit (harness runs)
    warmup_s: float = 0.0  # not recorded
    duration_s: float = 0.0  # recorded after the warm-up; 0: until the test stops
    path: str = "/"
    ca: Path | None = None
    insecure: bool = False  # https without verifying the certificate
    think_time_s: float = 0.0  # each user's pause between requests (the web UI can change it)

    def __post_init__(self) -> None:
        check_seconds("--kab-warmup", self.warmup_s)
        check_seconds("--kab-duration", self.duration_s)
        check_seconds("--kab-think-time", self.think_time_s)
        check_request_path("--kab-path", self.path)
        check_ca("--kab-ca", self.ca)
        check_verification("--kab-ca", "--kab-insecure", self.ca, self.insecure)

    def to_argv(self) -> list[str]:
        """The flags that differ from the defaults (the window's length always, exactly)."""
        argv = ["--kab-output", str(self.output)] if self.output is not None else []
        argv += ["--kab-warmup", seconds_text(self.warmup_s)] if self.warmup_s else []
        argv += ["--kab-duration", repr(self.duration_s)] if self.duration_s else []
        argv += ["--kab-path", self.path] if self.path != "/" else []
        argv += ["--kab-ca", str(self.ca)] if self.ca is not None else []
        argv += ["--kab-insecure"] if self.insecure else []
        argv += ["--kab-think-time", seconds_text(self.think_time_s)] if self.think_time_s else []
        return argv

    @classmethod
    def from_options(cls, opts: Any) -> LocustSettings:
        """From Locust's parsed options; UsageError (one line) for what cannot run."""
        return cls(
            output=Path(opts.kab_output) if opts.kab_output else None,
            warmup_s=float(opts.kab_warmup), duration_s=float(opts.kab_duration),
            path=opts.kab_path, ca=Path(opts.kab_ca) if opts.kab_ca else None,
            insecure=bool(getattr(opts, "kab_insecure", False)),
            think_time_s=float(opts.kab_think_time),
        )  # fmt: skip


def add_locust_arguments(parser: Any) -> None:
    """The `--kab-*` flags on Locust's parser; its web UI shows only those added with
    `include_in_web_ui=True`, a keyword of `parser.add_argument` (not of an argument group's)."""
    parser.add_argument(
        "--kab-output", default="", include_in_web_ui=False,
        help="write a ClientResult JSON here at quit",
    )  # fmt: skip
    parser.add_argument(
        "--kab-warmup", type=float, default=0.0, include_in_web_ui=False,
        help="seconds not recorded",
    )  # fmt: skip
    parser.add_argument(
        "--kab-duration", type=float, default=0.0, include_in_web_ui=False,
        help="seconds recorded after the warm-up (default 0: until the test stops); Locust's "
        "--run-time takes whole seconds, this closes the window exactly",
    )  # fmt: skip
    parser.add_argument("--kab-path", default="/", help="request path (default /)")
    parser.add_argument(
        "--kab-ca", default="", include_in_web_ui=False,
        help="CA PEM that verifies https servers",
    )  # fmt: skip
    parser.add_argument(
        "--kab-insecure", action="store_true", default=False, include_in_web_ui=False,
        help="https without verifying the certificate",
    )  # fmt: skip
    parser.add_argument(
        "--kab-think-time", type=float, default=0.0,
        help="seconds each user waits between requests (default 0: as fast as possible)",
    )  # fmt: skip


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
    # TCP connections the client opened over the same span as requests_total (every process):
    # what a target without our counters is judged by. -1: a result written before it counted.
    connections_opened: int = -1
    # ... of which in the measured window, the span of `requests`. -1: not counted.
    connections_window: int = -1
    # Median per request of each phase the client times apart (benchmarks.clients.shared.Phase:
    # connect, tls, ttfb), microseconds; a phase it cannot tell is absent.
    phases_p50_us: dict[str, float] = field(default_factory=dict)
    # Of those, the ones whose TLS session was resumed (session_reused), over the same span;
    # -1: a client that never offers a session (every one but pyperf-sequential-resume).
    tls_resumed: int = -1
    # An open-loop client's schedule against its starts (benchmarks.clients.openloop): scheduled,
    # started, late, missed, the rates, `rate_held` and the `note` the row shows. Empty otherwise.
    open_loop: dict[str, Any] = field(default_factory=dict)
    # The page client only (PAGE_EVENT_TYPE events): whole pages loaded in the window and their
    # load times (microseconds; p50, p90, p99, p999, max of their own HdrHistogram).
    pages: int = 0
    page_latency_us: dict[str, float] = field(default_factory=dict)
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
