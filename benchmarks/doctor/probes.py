"""The raw-socket probes: each opens its own connections to the target and measures one thing.

Every figure comes from what happened on the wire (a second response on the same socket, the
moment recv saw the FIN), never from what a header says. Probes are independent, so the command
runs them in parallel threads: the long waits (idle timeout, header deadline) overlap.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from benchmarks.doctor.headers import MalformedResponse, parse_keep_alive
from benchmarks.doctor.target import Target
from benchmarks.doctor.wire import (
    READ_TIMEOUT_S,
    CloseKind,
    Conn,
    ConnectionEnded,
    ReadTimeout,
    Response,
    clock,
    request,
)

DEFAULT_IDLE_CONNECTIONS = 3
CLOSE_WAIT_S = 3.0  # how long we watch for the close after a final response
TRICKLE_INTERVAL_S = 0.25  # one header byte this often
PROGRESS_EVERY_S = 5.0


class Reporter(Protocol):
    """Progress sink: the command prints it on stderr; tests pass `Silent()`."""

    def note(self, text: str) -> None: ...
    def wait(self, key: str, text: str, until: float) -> None: ...
    def done(self, key: str) -> None: ...


class Silent:
    def note(self, text: str) -> None:
        pass

    def wait(self, key: str, text: str, until: float) -> None:
        pass

    def done(self, key: str) -> None:
        pass


def _ended(exc: ConnectionEnded) -> str:
    return f"closed ({exc.kind.value})"


# --- first contact: persistence and advertised headers -------------------------------------


@dataclass(frozen=True)
class Advertised:
    """Headers of the first HTTP/1.1 response, as sent (reported, not trusted)."""

    status: int
    server: str | None
    connection: str | None
    keep_alive: str | None
    timeout_s: float | None
    max: int | None
    http10_connection: str | None = None
    http10_keep_alive: str | None = None


@dataclass(frozen=True)
class Persistence:
    """Whether a second request was answered on the same connection."""

    http11: bool
    http11_detail: str
    http10: bool
    http10_detail: str


def _two_on_one(target: Target, version: str, connection: str | None) -> tuple[bool, str, Response]:
    conn = Conn.open(target)
    try:
        conn.send(request(target, version=version, connection=connection))
        first = conn.read_response()
        if first.close_delimited:
            return False, "body delimited by the close: the connection cannot be reused", first
        try:
            conn.send(request(target, version=version, connection=connection))
            conn.read_response()
        except ConnectionEnded as exc:
            said = "after Connection: close" if first.head.closes else "without saying so"
            return False, f"{_ended(exc)} after the first response, {said}", first
        except ReadTimeout:
            return False, f"no answer to a second request in {READ_TIMEOUT_S:g} s", first
        note = " (though it said close)" if first.head.closes else ""
        return True, f"second request answered on the same connection{note}", first
    finally:
        conn.close()


def first_contact(target: Target) -> tuple[Advertised, Persistence]:
    """Two requests on one HTTP/1.1 connection, then two HTTP/1.0 keep-alive requests.

    Connection errors propagate: the command turns them into its one-line exit 2.
    """
    ok11, why11, first = _two_on_one(target, "1.1", None)
    try:
        ok10, why10, first10 = _two_on_one(target, "1.0", "keep-alive")
        conn10, ka10 = first10.head.header("Connection"), first10.head.header("Keep-Alive")
    except (ConnectionEnded, ReadTimeout, MalformedResponse, OSError) as exc:
        ok10, why10, conn10, ka10 = False, f"HTTP/1.0 request failed: {exc}", None, None
    head = first.head
    hint = parse_keep_alive(head.header("Keep-Alive"))
    advertised = Advertised(
        head.status, head.header("Server"), head.header("Connection"),
        head.header("Keep-Alive"), hint.timeout_s, hint.max, conn10, ka10,
    )  # fmt: skip
    return advertised, Persistence(ok11, why11, ok10, why10)


# --- the idle timeout -----------------------------------------------------------------------


@dataclass(frozen=True)
class IdleSample:
    close: str  # CloseKind value
    after_s: float | None


@dataclass(frozen=True)
class IdleTimeout:
    """Seconds from the end of a response to the server's close, on parallel connections."""

    timeout_s: float | None  # median of the closes; None when none closed within max_idle
    at_least_s: float | None  # max_idle when no connection closed
    samples: list[IdleSample]
    unsolicited: str | None = None  # first line of bytes sent on an idle connection (408?)
    kept_alive: bool = True
    beyond: str | None = None  # a request sent at max_idle when nothing closed: its fate

    @property
    def spread_s(self) -> float | None:
        closed = [s.after_s for s in self.samples if s.after_s is not None]
        return round(max(closed) - min(closed), 4) if len(closed) > 1 else None


def _watch_idle(
    target: Target, max_idle_s: float, probe_beyond: bool
) -> tuple[IdleSample, str, str | None, bool]:
    conn = Conn.open(target)
    try:
        conn.send(request(target))
        resp = conn.read_response()
        if resp.head.closes or resp.close_delimited:
            return IdleSample(CloseKind.FIN.value, None), "", None, False
        event = conn.wait_close(resp.finished_at, resp.finished_at + max_idle_s)
        first_line = event.unsolicited.split(b"\r\n", 1)[0].decode("latin-1") or ""
        beyond = None
        if event.kind is CloseKind.OPEN and probe_beyond:
            beyond = _try_request(conn, target)
        after = None if event.after_s is None else round(event.after_s, 4)
        return IdleSample(event.kind.value, after), first_line, beyond, True
    finally:
        conn.close()


def _try_request(conn: Conn, target: Target) -> str:
    """Send one request on an idle connection: 'answered', 'closed (fin|reset)' or 'no answer'."""
    try:
        conn.send(request(target))
        conn.read_response()
        return "answered"
    except ConnectionEnded as exc:
        return _ended(exc)
    except ReadTimeout:
        return f"no answer in {READ_TIMEOUT_S:g} s"
    except MalformedResponse as exc:
        return f"malformed answer: {exc}"


def measure_idle(
    target: Target,
    max_idle_s: float,
    connections: int = DEFAULT_IDLE_CONNECTIONS,
    reporter: Reporter | None = None,
) -> IdleTimeout:
    """`connections` idle connections at once: one wait of up to max_idle, not one each."""
    reporter = reporter or Silent()
    reporter.wait("idle", f"{connections} idle connections, waiting for the server to close them",
                  clock() + max_idle_s)  # fmt: skip
    try:
        with ThreadPoolExecutor(connections) as pool:
            futures = [
                pool.submit(_watch_idle, target, max_idle_s, i == 0) for i in range(connections)
            ]
            results = [f.result() for f in futures]
    finally:
        reporter.done("idle")
    samples = [r[0] for r in results]
    unsolicited = next((r[1] for r in results if r[1]), None)
    beyond = next((r[2] for r in results if r[2]), None)
    if not any(r[3] for r in results):
        return IdleTimeout(None, None, samples, unsolicited, kept_alive=False)
    closed = [s.after_s for s in samples if s.after_s is not None]
    if not closed:
        return IdleTimeout(None, max_idle_s, samples, unsolicited, beyond=beyond)
    return IdleTimeout(round(statistics.median(closed), 3), None, samples, unsolicited)


@dataclass(frozen=True)
class ActiveCheck:
    """A request sent just under and just over the measured timeout, after silence."""

    under_s: float
    under: str
    over_s: float
    over: str

    @property
    def consistent(self) -> bool:
        return self.under == "answered" and self.over != "answered"


def active_margin_s(timeout_s: float) -> float:
    """How far under and over T the requests go: 10% of T, between 0.1 s and 1 s."""
    return min(1.0, max(0.1, 0.1 * timeout_s))


def _request_after(target: Target, idle_s: float) -> str:
    conn = Conn.open(target)
    try:
        conn.send(request(target))
        resp = conn.read_response()
        time.sleep(max(0.0, resp.finished_at + idle_s - clock()))  # silent: no read, no FIN seen
        return _try_request(conn, target)
    finally:
        conn.close()


def active_check(target: Target, timeout_s: float, reporter: Reporter | None = None) -> ActiveCheck:
    """Catches a server or middlebox that drops idle connections earlier without a FIN."""
    reporter = reporter or Silent()
    margin = active_margin_s(timeout_s)
    under, over = max(0.0, timeout_s - margin), timeout_s + margin
    reporter.wait("active", f"active check: requests after {under:.2f} s and {over:.2f} s idle",
                  clock() + over)  # fmt: skip
    try:
        with ThreadPoolExecutor(2) as pool:
            f_under = pool.submit(_request_after, target, under)
            f_over = pool.submit(_request_after, target, over)
            return ActiveCheck(round(under, 3), f_under.result(), round(over, 3), f_over.result())
    finally:
        reporter.done("active")


# --- requests per connection ----------------------------------------------------------------


@dataclass(frozen=True)
class MaxRequests:
    """Requests one connection carried until the server said close or closed."""

    limit: int | None  # None: all of cap + 1 answered, connection still open
    sent: int
    announced: bool | None  # the last response said `Connection: close` (None when no limit)
    close_after: str  # how the connection ended after the last response
    advertised_max_first: int | None = None  # `max=` on the first response
    close_after_s: float | None = None  # seconds from the last response to the close


def count_max_requests(target: Target, cap: int, reporter: Reporter | None = None) -> MaxRequests:
    """Sequential requests on one connection, up to cap + 1 so a limit of exactly cap shows."""
    reporter = reporter or Silent()
    conn = Conn.open(target)
    first_max = None
    answered = 0
    last_note = clock()
    try:
        for n in range(1, cap + 2):
            if clock() - last_note >= PROGRESS_EVERY_S:
                reporter.note(f"max requests: {answered} answered on one connection so far")
                last_note = clock()
            try:
                conn.send(request(target))
                resp = conn.read_response()
            except ConnectionEnded as exc:
                return MaxRequests(answered, n, False, f"{exc.kind.value} before response {n}",
                                   first_max)  # fmt: skip
            except ReadTimeout:
                return MaxRequests(answered, n, False, f"no answer to request {n}", first_max)
            answered = n
            if n == 1:
                first_max = parse_keep_alive(resp.head.header("Keep-Alive")).max
            if resp.head.closes or resp.close_delimited:
                until = clock() + CLOSE_WAIT_S
                event = conn.wait_close(clock(), until)
                after = (
                    f"{event.kind.value} {event.after_s * 1000:.0f} ms later"
                    if event.after_s is not None
                    else f"left open for {CLOSE_WAIT_S:g} s"
                )
                close_s = None if event.after_s is None else round(event.after_s, 4)
                return MaxRequests(n, n, True, after, first_max, close_s)
        return MaxRequests(None, cap + 1, None, "still open", first_max)
    finally:
        conn.close()


# --- pipelining, closing, header deadline ---------------------------------------------------


@dataclass(frozen=True)
class Pipelining:
    """GET, HEAD, GET written at once: answered in order iff the framing lines up."""

    sent: int
    answered: int
    in_order: bool
    statuses: list[int]
    detail: str


PIPELINE = ("GET", "HEAD", "GET")


def pipelining(target: Target, reference_status: int) -> Pipelining:
    """A HEAD response has no body: out of order, its framing and the statuses go wrong."""
    conn = Conn.open(target)
    statuses: list[int] = []
    try:
        conn.send(b"".join(request(target, method=m) for m in PIPELINE))
        for method in PIPELINE:
            try:
                resp = conn.read_response(method)
            except (ConnectionEnded, ReadTimeout) as exc:
                what = "no answer" if isinstance(exc, ReadTimeout) else _ended(exc)
                return Pipelining(len(PIPELINE), len(statuses), False, statuses,
                                  f"{what} after {len(statuses)} responses")  # fmt: skip
            except MalformedResponse as exc:
                return Pipelining(len(PIPELINE), len(statuses), False, statuses,
                                  f"misframed after {len(statuses)} responses: {exc}")  # fmt: skip
            statuses.append(resp.head.status)
            if resp.head.closes and len(statuses) < len(PIPELINE):
                return Pipelining(len(PIPELINE), len(statuses), True, statuses,
                                  f"said close after {len(statuses)} responses")  # fmt: skip
        extra = conn.buf
        in_order = not extra and all(s == reference_status for s in statuses)
        detail = (
            "all answered in order"
            if in_order
            else f"statuses {statuses}, {len(extra)} stray bytes"
        )
        return Pipelining(len(PIPELINE), len(statuses), in_order, statuses, detail)
    finally:
        conn.close()


@dataclass(frozen=True)
class Closing:
    """A request saying `Connection: close` with more requests behind it in the same write."""

    close: str  # fin / reset / open
    response_read: bool
    detail: str


TRAILING_REQUESTS = 20


def closing_with_input(target: Target) -> Closing:
    """A close with unread input is a reset unless the server lingers (RFC 9112 §9.6)."""
    conn = Conn.open(target)
    try:
        tail = request(target) * TRAILING_REQUESTS
        conn.send(request(target, connection="close") + tail)
        try:
            resp = conn.read_response()
        except ConnectionEnded as exc:
            return Closing(exc.kind.value, False, f"{_ended(exc)} before the response was read")
        except ReadTimeout:
            return Closing(CloseKind.OPEN.value, False, "no answer")
        event = conn.wait_close(resp.finished_at, clock() + CLOSE_WAIT_S)
        if event.unsolicited:
            detail = "answered pipelined requests after Connection: close"
        elif event.kind is CloseKind.FIN:
            detail = "graceful: response read, then FIN"
        elif event.kind is CloseKind.RESET:
            detail = "reset after the response: a slower client may lose it"
        else:
            detail = f"left open {CLOSE_WAIT_S:g} s after Connection: close"
        return Closing(event.kind.value, True, detail)
    finally:
        conn.close()


@dataclass(frozen=True)
class HeaderDeadline:
    """How long a request trickled one byte at a time is tolerated."""

    tolerated_s: float | None  # from the first byte to the close; None when it never closed
    at_least_s: float | None
    close: str
    response: str | None  # status line sent before closing (a 408), if any


def header_deadline(
    target: Target, cap_s: float, interval_s: float = TRICKLE_INTERVAL_S,
    reporter: Reporter | None = None,
) -> HeaderDeadline:  # fmt: skip
    """Slowloris, politely: one byte every `interval_s`, never the final CRLF, up to cap_s."""
    reporter = reporter or Silent()
    conn = Conn.open(target)
    head = request(target)[:-2]  # no final CRLF: the head never ends
    filler = b"X-Doctor-Trickle: " + b"a" * int(cap_s / interval_s + 10)
    data = head + filler
    reporter.wait("trickle", "header deadline: trickling a request one byte at a time",
                  clock() + cap_s)  # fmt: skip
    start = clock()
    try:
        for i in range(len(data)):
            if clock() - start >= cap_s:
                break
            try:
                conn.send(data[i : i + 1])
            except ConnectionEnded as exc:
                return HeaderDeadline(round(exc.at - start, 3), None, exc.kind.value, None)
            event = conn.wait_close(start, clock() + interval_s)
            if event.kind is not CloseKind.OPEN or event.unsolicited:
                line = event.unsolicited.split(b"\r\n", 1)[0].decode("latin-1") or None
                if event.kind is CloseKind.OPEN:  # answered early: wait for its close
                    event = conn.wait_close(start, clock() + CLOSE_WAIT_S)
                after = None if event.after_s is None else round(event.after_s, 3)
                return HeaderDeadline(after, None, event.kind.value, line)
        return HeaderDeadline(None, round(clock() - start, 3), CloseKind.OPEN.value, None)
    finally:
        reporter.done("trickle")
        conn.close()


# --- all of them ----------------------------------------------------------------------------


@dataclass
class Findings:
    """Everything measured about one target."""

    advertised: Advertised
    persistence: Persistence
    idle: IdleTimeout | None = None
    active: ActiveCheck | None = None
    max_requests: MaxRequests | None = None
    pipelining: Pipelining | None = None
    closing: Closing | None = None
    header_deadline: HeaderDeadline | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _guarded(findings: Findings, name: str, probe: Callable[[], object]) -> None:
    """Run one probe; its failure is recorded against its name, the others carry on."""
    try:
        setattr(findings, name, probe())
    except Exception as exc:  # noqa: BLE001 - one probe's failure is a finding, not a crash
        findings.errors[name] = f"{type(exc).__name__}: {exc}"


def run_probes(
    target: Target, findings: Findings, *, max_idle_s: float, max_requests: int,
    max_header_wait_s: float, idle_connections: int = DEFAULT_IDLE_CONNECTIONS,
    reporter: Reporter | None = None,
) -> None:  # fmt: skip
    """The idle wait, the request count, pipelining, closing and the trickle, in parallel."""
    reporter = reporter or Silent()
    ref = findings.advertised.status
    jobs: dict[str, Callable[[], object]] = {
        "idle": lambda: measure_idle(target, max_idle_s, idle_connections, reporter),
        "max_requests": lambda: count_max_requests(target, max_requests, reporter),
        "pipelining": lambda: pipelining(target, ref),
        "closing": lambda: closing_with_input(target),
    }
    if max_header_wait_s > 0:
        jobs["header_deadline"] = lambda: header_deadline(
            target, max_header_wait_s, reporter=reporter
        )
    threads = [
        threading.Thread(target=_guarded, args=(findings, name, job), daemon=True)
        for name, job in jobs.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    measured = findings.idle.timeout_s if findings.idle is not None else None
    if measured is not None:
        _guarded(findings, "active", lambda: active_check(target, measured, reporter))
