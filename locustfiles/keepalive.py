"""Locust users with and without connection reuse, measured into an HdrHistogram.

    python -m locust -f locustfiles/keepalive.py --headless --host http://127.0.0.1:8080 \
        -u 50 -r 50 -t 6s --kab-warmup 1 --kab-output /tmp/locust.json PooledUser

Pooled users keep their HTTP client, so each user holds one connection for the whole run (50
users, about 50 connections). Unpooled users send `Connection: close` and also drop their
client's connection pool after every request, so each request opens a new TCP connection even
if a server ignored the header.

Locust's own statistics round response times below 100 ms to whole milliseconds, so every
request event is also recorded here, in microseconds, into an HdrHistogram. Requests completing
in the first `--kab-warmup` seconds after the test starts are not recorded; `--kab-output`
(harness runs) writes a ClientResult at quit, and without it (the web UI) nothing is written.
`--kab-think-time` pauses each user between requests; raise it in the web UI to leave
connections idle past the server's keep-alive timeout. Like the pyperf clients, the process
exits 0 once the result is written: errors are in the result, not in the exit status.
"""

from __future__ import annotations

import functools
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, NoReturn

import gevent
import gevent.ssl
from locust import FastHttpUser, HttpUser, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

from benchmarks import latency
from benchmarks.clients.contract import (
    LOCUST_USER_CLASSES,
    PAGE_EVENT_TYPE,
    ClientResult,
    LocustSettings,
    Mode,
    add_locust_arguments,
    valid_seconds,
)
from benchmarks.clients.shared import Target, error_kind
from benchmarks.common import UsageError

PROG = "locustfiles/keepalive.py"
REPORT_KEY = "keepalive_bench"  # our part of a worker's report to the master
_CLASS_TO_KIND = {name: (kind, mode) for (kind, mode), name in LOCUST_USER_CLASSES.items()}


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    """Our options, spelled in benchmarks.clients.contract (which also writes them)."""
    add_locust_arguments(parser)


def _options(environment: Environment) -> Any:
    return environment.parsed_options


def _exit(message: str, status: int) -> NoReturn:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    raise SystemExit(status)


def _settings(opts: Any) -> LocustSettings:
    """One line and exit 2 for what cannot run; checked once, before any user starts."""
    try:
        return LocustSettings.from_options(opts)
    except UsageError as exc:
        _exit(str(exc), 2)


def _think_time(user: Any) -> float:
    """Read at every wait, so a value changed in the web UI applies to running users.

    lab.py's /swarm guard refuses a bad value typed into its web UI, but this file's own web
    UI (`locust -f locustfiles/keepalive.py`) has no guard and Locust checks only its own
    fields: a bad pause is 0, never a negative or endless sleep, and stderr says so once per
    value rather than at every wait of every user.
    """
    opts = _options(user.environment)
    value = float(opts.kab_think_time) if opts is not None else 0.0
    seconds = valid_seconds(value)
    if seconds is None:
        _warn_once(f"think time {value:g} s is negative or not finite; using 0 s")
    return seconds or 0.0


@functools.cache
def _warn_once(message: str) -> None:
    """Cached on the text: every user hits the same bad value at every wait."""
    sys.stderr.write(f"{PROG}: warning: {message}\n")


class _Common:
    """What all four user classes share: path, think time and the request itself."""

    wait_time = _think_time
    close_each: bool = False  # True: Connection: close and a fresh connection per request
    # Provided by the locust User class each user class also derives from (annotations only).
    environment: Environment
    client: Any  # HttpSession or FastHttpSession, both with get(path, headers=...)

    def _path(self) -> str:
        opts = _options(self.environment)
        return opts.kab_path if opts is not None else "/"

    def _headers(self) -> dict[str, str]:
        return {"Connection": "close"} if self.close_each else {}

    def _request(self) -> None:
        self.client.get(self._path(), headers=self._headers())
        if self.close_each:
            self._drop_connections()

    def _drop_connections(self) -> None:
        raise NotImplementedError


class _Connects:
    """TCP connections this process opened, counted where both libraries connect: a target
    without our counters is judged by the client's own count (ClientResult.connections_opened),
    and the ones opened inside the measured window are the row's `connections_opened`."""

    opened = 0
    in_window = 0
    recorder: Recorder | None = None  # whose window `in_window` counts (set at init)

    @classmethod
    def wrap(cls, owner: type, name: str) -> None:
        """Count every successful call of `owner.name` (raising calls opened nothing)."""
        original = getattr(owner, name)

        @functools.wraps(original)
        def counted(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            cls.opened += 1
            if cls.recorder is not None and cls.recorder.in_window(time.monotonic()):
                cls.in_window += 1
            return out

        setattr(owner, name, counted)


def _count_connects() -> None:
    """geventhttpclient (FastHttpUser): after_connect runs once a socket connected (TLS
    included); urllib3 (HttpUser): _new_conn returns a connected socket. Imported here, after
    locust (which monkey-patches ssl first: urllib3 imported before it recurses in ssl)."""
    import urllib3.connection
    from geventhttpclient.connectionpool import ConnectionPool

    _Connects.wrap(ConnectionPool, "after_connect")
    _Connects.wrap(urllib3.connection.HTTPConnection, "_new_conn")


_count_connects()


@functools.cache
def _tls_context(ca_path: str) -> gevent.ssl.SSLContext:
    """The client TLS context trusting `ca_path`, built once per process."""
    return gevent.ssl.create_default_context(cafile=ca_path)


@functools.cache
def _unverified_context() -> gevent.ssl.SSLContext:
    """`--kab-insecure`: a context that checks neither the chain nor the name, built once."""
    context = gevent.ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = gevent.ssl.CERT_NONE
    return context


def tls_context_factory(ca_path: str | None) -> Callable[..., gevent.ssl.SSLContext]:
    """FastHttpUser's `ssl_context_factory`: always the one context trusting `ca_path`.

    geventhttpclient calls `factory(cafile=<its default bundle>)` for every new client (one per
    request when unpooled); a factory without that parameter makes it fall back to `factory()`
    plus loading the whole bundle into the result: 50 ms per connection, which held unpooled
    TLS to about 30 req/s. `cafile` is accepted and ignored: the context trusts our CA only.
    """
    context = _tls_context(ca_path) if ca_path else _unverified_context()

    def factory(cafile: str | None = None) -> gevent.ssl.SSLContext:
        return context

    return factory


class _FastBase(_Common, FastHttpUser):
    abstract = True
    insecure = False  # https is verified: with --kab-ca, or the system store

    def __init__(self, environment: Environment) -> None:
        opts = _options(environment)
        if opts is not None and (opts.kab_ca or opts.kab_insecure):
            # insecure: our factory, not Locust's (which lacks `cafile`: the 50 ms path below);
            # and `insecure`, or geventhttpclient turns the check back on in our context
            self.ssl_context_factory = tls_context_factory(opts.kab_ca or None)
            self.insecure = bool(opts.kab_insecure)
        super().__init__(environment)

    def _drop_connections(self) -> None:
        # The server closed it already if it honoured Connection: close; this makes sure.
        self.client.client.clientpool.close()

    @task
    def get(self) -> None:
        self._request()


def _unverified_requests(session: Any) -> None:
    """`--kab-insecure` for HttpUser: no verification, with one prepared context. With
    `verify=False` alone urllib3 builds a context and loads the system store for every new
    connection (hundreds of ms each on a busy machine: an unpooled run measured that)."""
    import ssl

    import requests.adapters  # after locust, as in _count_connects
    import urllib3

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    class Unverified(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = context
            super().init_poolmanager(*args, **kwargs)

    session.verify = False
    session.mount("https://", Unverified())
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


class _RequestsBase(_Common, HttpUser):
    abstract = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        opts = _options(environment)
        if opts is not None and opts.kab_ca:
            self.client.verify = opts.kab_ca
        elif opts is not None and opts.kab_insecure:
            _unverified_requests(self.client)

    def _drop_connections(self) -> None:
        self.client.close()  # empties the adapters' pools; the session stays usable

    @task
    def get(self) -> None:
        self._request()


class PooledUser(_FastBase):
    """FastHttpUser (geventhttpclient) keeping its connection: one per user."""


class UnpooledUser(_FastBase):
    """FastHttpUser opening a new connection for every request."""

    close_each = True


class PooledRequestsUser(_RequestsBase):
    """HttpUser: the requests.Session, and its connection, kept for the user's life."""


class UnpooledRequestsUser(_RequestsBase):
    """HttpUser opening a new connection for every request."""

    close_each = True


class Recorder:
    """Counts every request, records the measured window's ones in microseconds.

    The window opens `warmup_s` after the test starts and closes when it stops or, with
    `duration_s` > 0, exactly `duration_s` later, whichever comes first."""

    def __init__(self, warmup_s: float, duration_s: float = 0.0) -> None:
        self.warmup_s = warmup_s
        self.duration_s = duration_s
        self.total = 0
        self.connections = 0  # absorbed from workers; a local process adds its own _Connects
        self.connections_window = 0  # ... of them inside the window
        self.reset()

    def reset(self) -> None:
        self.hist = latency.new_histogram()
        self.page_hist = latency.new_histogram()
        self.requests = 0
        self.pages = 0
        self.error_kinds: Counter[str] = Counter()
        self.window_start: float | None = None
        self.window_stop: float | None = None

    def start(self) -> None:
        self.reset()
        self.window_start = time.monotonic() + self.warmup_s
        if self.duration_s > 0:
            self.window_stop = self.window_start + self.duration_s

    def stop(self) -> None:
        now = time.monotonic()
        if self.window_stop is None or now < self.window_stop:
            self.window_stop = now

    def in_window(self, now: float) -> bool:
        if self.window_start is None or now < self.window_start:
            return False
        return self.window_stop is None or now <= self.window_stop

    def on_request(
        self, response_time: float, exception: Any, response: Any = None, request_type: str = ""
    ) -> None:
        page = request_type == PAGE_EVENT_TYPE  # a whole page (locustfiles/pageload.py)
        self.total += not page
        if not self.in_window(time.monotonic()):
            return
        if page:  # its requests were recorded one by one; a failed page is counted there too
            if exception is None:
                self.pages += 1
                latency.record_us(self.page_hist, response_time * 1000.0)
            return
        if exception is None:
            self.requests += 1
            latency.record_us(self.hist, response_time * 1000.0)
        else:
            self.error_kinds[_request_error_kind(exception, response)] += 1

    def drain(self) -> dict[str, Any]:
        """A worker's measurements since its last report, for the master (then forgotten here)."""
        report = {
            "histogram": latency.encode(self.hist),
            "page_histogram": latency.encode(self.page_hist),
            "pages": self.pages,
            "requests": self.requests,
            "total": self.total,
            "error_kinds": dict(self.error_kinds),
            "connections": _Connects.opened,
            "connections_window": _Connects.in_window,
        }
        _Connects.opened = _Connects.in_window = 0
        self.hist = latency.new_histogram()
        self.page_hist = latency.new_histogram()
        self.requests = self.total = self.pages = 0
        self.error_kinds = Counter()
        return report

    def absorb(self, report: dict[str, Any]) -> None:
        """The master adds a worker's report: histograms merged, never percentiles averaged."""
        self.hist.add(latency.decode(report["histogram"]))
        if "page_histogram" in report:
            self.page_hist.add(latency.decode(report["page_histogram"]))
        self.pages += int(report.get("pages", 0))
        self.requests += int(report["requests"])
        self.total += int(report["total"])
        self.connections += int(report.get("connections", 0))
        self.connections_window += int(report.get("connections_window", 0))
        self.error_kinds.update(report["error_kinds"])

    @property
    def elapsed_s(self) -> float:
        if self.window_start is None:
            return 0.0
        stop = self.window_stop if self.window_stop is not None else time.monotonic()
        return max(stop - self.window_start, 0.0)

    def result(self, kind: str, mode: Mode) -> ClientResult:
        return ClientResult(
            client=kind,
            mode=mode.value,
            requests=self.requests,
            errors=sum(self.error_kinds.values()),
            elapsed_s=self.elapsed_s,
            requests_total=self.total,
            load_processes=1,
            latency_us=latency.summary_us(self.hist),
            histogram=latency.encode(self.hist),
            error_kinds=dict(self.error_kinds),
            connections_opened=self.connections + _Connects.opened,
            pages=self.pages,
            page_latency_us=latency.summary_us(self.page_hist) if self.pages else {},
            connections_window=self.connections_window + _Connects.in_window,
        )


def _request_error_kind(exception: BaseException, response: Any) -> str:
    """http-NNN for bad statuses, else the errno underneath the library's wrappers."""
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return f"http-{status}"
    seen: set[int] = set()
    todo: list[Any] = [exception]
    while todo:  # requests/urllib3 nest the OSError several levels deep
        exc = todo.pop(0)
        if not isinstance(exc, BaseException) or id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno:
            return error_kind(exc)
        todo += [exc.__cause__, exc.__context__, getattr(exc, "reason", None), *exc.args[:1]]
    return error_kind(exception)


def _run_kind(environment: Environment) -> tuple[str, Mode]:
    """The ClientKind and Mode of the chosen user class; exactly one is needed for a result."""
    pairs = {
        _CLASS_TO_KIND[c.__name__] for c in environment.user_classes if c.__name__ in _CLASS_TO_KIND
    }
    if len(pairs) != 1:
        names = [c.__name__ for c in environment.user_classes]
        _exit(f"--kab-output needs exactly one of {sorted(_CLASS_TO_KIND)}, got {names}", 2)
    kind, mode = pairs.pop()
    return kind.value, mode


def _check_reachable(host: str) -> None:
    """Harness runs fail fast, in one line, instead of recording a run of connect errors."""
    try:
        target = Target.from_url(host, flag="--host")
    except ValueError as exc:
        _exit(str(exc), 2)
    reason = target.check_reachable()
    if reason is not None:
        _exit(reason, 1)


@events.init.add_listener
def _on_init(environment: Environment, **_kwargs: Any) -> None:
    # Locust arms --run-time with gevent.spawn_later soon after init, against the loop's cached
    # clock, last read when gevent's hub started, before the locustfile's imports: on a busy
    # machine seconds ago, and a timer armed on a stale clock fires at once (a run that served
    # nothing). Read the clock again here.
    gevent.get_hub().loop.update_now()
    opts = _options(environment)
    if opts is None:
        return
    settings = _settings(opts)
    recorder = Recorder(settings.warmup_s, settings.duration_s)
    _Connects.recorder = recorder
    # Workers (--processes N, --worker) only measure and report to the master; the master (or a
    # single local process) owns the window and writes the result.
    is_worker = isinstance(environment.runner, WorkerRunner)
    output = settings.output if not is_worker else None
    kind_mode = _run_kind(environment) if output is not None else None
    if output is not None and opts.headless and environment.host:
        _check_reachable(environment.host)

    def on_request(
        response_time: float, exception: Any, response: Any = None, request_type: str = "",
        **_: Any,
    ) -> None:  # fmt: skip
        recorder.on_request(response_time, exception, response, request_type)

    def on_quitting(environment: Environment, **_: Any) -> None:
        recorder.stop()
        if output is not None:
            environment.process_exit_code = 0  # errors go in the result, not the exit status

    def on_quit(**_: Any) -> None:
        """Locust fires `quit` after runner.quit(), which waits for the workers' final reports
        (sent when they get the quit message); `quitting` fires before, too early for them."""
        if output is not None and kind_mode is not None:
            recorder.result(*kind_mode).write(output)

    def on_report_to_master(data: dict[str, Any], **_: Any) -> None:
        data[REPORT_KEY] = recorder.drain()

    def on_worker_report(data: dict[str, Any], **_: Any) -> None:
        if REPORT_KEY in data:
            recorder.absorb(data[REPORT_KEY])

    # With --processes N (or --master/--worker) requests happen in the workers; each ships its
    # histogram delta with Locust's regular reports (and a final one at quit) to the master,
    # which owns the measured window and writes the result.
    environment.events.report_to_master.add_listener(on_report_to_master)
    environment.events.worker_report.add_listener(on_worker_report)
    environment.events.request.add_listener(on_request)
    environment.events.test_start.add_listener(lambda **_: recorder.start())
    environment.events.test_stopping.add_listener(lambda **_: recorder.stop())
    environment.events.quitting.add_listener(on_quitting)
    environment.events.quit.add_listener(on_quit)
