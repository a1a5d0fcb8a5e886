"""Open-loop load: requests start at intended times, and latency is timed from those times.

A closed-loop client at fixed concurrency sends the next request only when a response came back,
so a stalled server is sampled less (coordinated omission), and a think time cannot be modelled.
Here, as in wrk2 and k6's arrival-rate executors, the schedule comes first:

- rate mode: starts at a constant rate (`t0 + i / R`) or Poisson arrivals (exponential gaps of
  mean 1/R, from a seeded `random.Random`); at most `concurrency` requests in flight (pooled: one
  per connection, connections opened as needed and kept; unpooled: a new connection each). A
  start that finds every slot busy waits for the next free one, in order, and its latency still
  counts from its intended time;
- user mode: `users` users, each on its own connection, wait a think time drawn from a
  distribution (`exp:MEAN`, `const:S`, `uniform:LOW-HIGH`) after each response, then start the
  next request. A connection the server closed meanwhile is noticed (its FIN) and replaced; a
  request that meets the close in flight is sent again once on a new connection (`races`).

Every start is booked in a `StartLedger`: late (more than `LATE_NS` after its intended time) and
missed (sent after the schedule's own end: the rate was not held), and the started rate is
checked against the scheduled one (`rate_check`, within `RATE_TOLERANCE`). The schedule runs on
absolute deadlines (`loop.call_at`), so delays do not add up; on stdlib asyncio, whose timers never
fire early (uvloop's may, by up to 1 ms). No pyperf here: the pure parts are unit-tested with a
fake clock, `pyperf_openloop` runs the client under pyperf and the scenarios run it directly.
"""

from __future__ import annotations

import asyncio
import random
import re
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmarks.clients.contract import Arrivals, Mode, ThinkTime
from benchmarks.clients.shared import Target, error_kind

LATE_NS = 1_000_000  # a start more than 1 ms after its intended time is late
RATE_TOLERANCE = 0.01  # the started rate within 1% of the scheduled one
CLIENT_BOUND_PCT = 85.0  # the harness's client-bound line (benchmarks.harness.validity)
REQUEST_TIMEOUT_S = 30.0
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CONNECTION_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)
Clock = Callable[[], int]


def intended_times(
    start_ns: int, rate_rps: float, count: int, arrivals: Arrivals, rng: random.Random
) -> list[int]:
    """The intended start of each of `count` requests, the first at `start_ns`. Constant
    arrivals are computed from the start (never by adding rounded gaps, which would drift)."""
    if arrivals is Arrivals.CONSTANT:
        return [start_ns + round(i * 1e9 / rate_rps) for i in range(count)]
    times, t = [], 0.0
    for _ in range(count):
        times.append(start_ns + round(t * 1e9))
        t += rng.expovariate(rate_rps)
    return times


def latency_from_intended(intended_ns: int, done_ns: int) -> int:
    """What a user waited: from when the request should have started, not when it was sent."""
    return done_ns - intended_ns


class Pacer:
    """Hands out the intended times that are due by `now`, in order: the schedule's cursor."""

    def __init__(self, times: Sequence[int]) -> None:
        self.times = times
        self.next = 0

    def due(self, now_ns: int) -> list[int]:
        start = self.next
        while self.next < len(self.times) and self.times[self.next] <= now_ns:
            self.next += 1
        return list(self.times[start : self.next])

    def deadline(self) -> int | None:
        """The next intended time, None when all were handed out."""
        return self.times[self.next] if self.next < len(self.times) else None


@dataclass
class StartLedger:
    """Every start against its intended time: late ones, missed ones (sent after `end_ns`, the
    schedule's own end), and how late."""

    end_ns: int = 0  # rate mode: the last intended start plus one mean gap; 0: no end
    late_ns: int = LATE_NS
    started: int = 0
    late: int = 0
    missed: int = 0
    lateness_max_ns: int = 0
    lateness_sum_ns: int = 0

    def start(self, intended_ns: int, actual_ns: int) -> None:
        lateness = max(actual_ns - intended_ns, 0)
        self.started += 1
        self.lateness_sum_ns += lateness
        self.lateness_max_ns = max(self.lateness_max_ns, lateness)
        if lateness > self.late_ns:
            self.late += 1
        if self.end_ns and actual_ns > self.end_ns:
            self.missed += 1

    def counts(self) -> Counter[str]:
        """What a Batch carries and tallies add up (sums and counts only; the max apart)."""
        return Counter(
            started=self.started, late=self.late, missed=self.missed,
            lateness_sum_us=self.lateness_sum_ns // 1000,
        )  # fmt: skip


@dataclass(frozen=True)
class RateCheck:
    """Did the client start requests at the rate it was asked for?"""

    asked_rps: float
    scheduled_rps: float  # the schedule's own rate (Poisson: the drawn arrivals over the window)
    achieved_rps: float  # starts sent by the schedule's end, over the same window
    late: int
    missed: int
    held: bool
    waited_for_slot: int = 0  # starts that found every slot busy: the server (or C) limits it
    client_cpu_pct: float | None = None  # the client process's CPU over its batches, % of a core

    def note(self) -> str:
        what = (
            f"open loop: asked {self.asked_rps:g}/s, scheduled {self.scheduled_rps:,.1f}/s, "
            f"started {self.achieved_rps:,.1f}/s on time ({self.missed} missed, {self.late} late "
            f"> {LATE_NS / 1e6:g} ms)"
        )
        if self.client_cpu_pct is not None:
            what += f", client CPU {self.client_cpu_pct:.0f}% of a core"
        if self.held:
            return f"{what}: rate held within {RATE_TOLERANCE:.0%}"
        if self.client_cpu_pct is not None and self.client_cpu_pct >= CLIENT_BOUND_PCT:
            why = "the client's core is saturated: the rate is beyond what this client can start"
        elif self.waited_for_slot:
            why = (f"{self.waited_for_slot} starts waited for a free slot: the server's answers "
                   "(or --concurrency) limit it")  # fmt: skip
        else:
            why = "no start waited for a slot: the client's own loop fell behind (its core)"
        return f"{what}: COULD NOT HOLD the rate, {why}"


def rate_check(
    asked_rps: float,
    scheduled: int,
    started: int,
    missed: int,
    late: int,
    window_s: float,
    waited_for_slot: int = 0,
    client_cpu_pct: float | None = None,
) -> RateCheck:
    """`scheduled` starts were due in `window_s` (summed over batches), `started` were made
    (a failed connect makes none), `missed` of them after the schedule's end. Held when the
    rate of starts on time is within RATE_TOLERANCE of the scheduled rate."""
    scheduled_rps = scheduled / window_s if window_s > 0 else 0.0
    achieved_rps = (started - missed) / window_s if window_s > 0 else 0.0
    held = scheduled > 0 and achieved_rps >= (1 - RATE_TOLERANCE) * scheduled_rps
    return RateCheck(
        asked_rps, scheduled_rps, achieved_rps, late, missed, held, waited_for_slot, client_cpu_pct
    )


# -- the connection ---------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time; framing by Content-Length."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
        self.loop = loop
        self.clock = clock
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.buf = b""
        self.need = -1
        self.waiter: asyncio.Future[tuple[int, int, bool]] | None = None
        self.requests = 0  # answered on this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.open = True

    def send(self, request: bytes) -> asyncio.Future[tuple[int, int, bool]]:
        """Write one request; the future gives (status, done_ns, server said close)."""
        assert self.transport is not None
        self.waiter = self.loop.create_future()
        self.buf, self.need = b"", -1
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            match = _CONTENT_LENGTH.search(head)
            self.need = end + 4 + (int(match.group(1)) if match else 0)
            self.close_after = _CONNECTION_CLOSE.search(head) is not None
            try:
                self.status = int(head[9:12])
            except ValueError:
                self.status = 0
        if len(self.buf) >= self.need and self.waiter is not None and not self.waiter.done():
            self.requests += 1
            self.waiter.set_result((self.status, self.clock(), self.close_after))
            self.waiter = None

    def eof_received(self) -> bool | None:
        self.open = False
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("closed before the response"))
        self.waiter = None

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()


class _Failed(Exception):
    """A request failed; the kind is its error label."""


# -- the client -------------------------------------------------------------------------------


@dataclass
class UserStats:
    """User mode's gap counts: a gap is the wait between two requests of one user."""

    gaps: int = 0
    reused: int = 0  # gaps after which the request went out on the same connection
    races: int = 0  # requests that met the server's close in flight and were sent again
    think_sum_s: float = 0.0  # the think times drawn, summed (to check the distribution)
    requests: int = 0
    firsts: int = 0  # answered requests that followed no gap: a user's first, or after an error

    def counts(self) -> Counter[str]:
        return Counter(
            gaps=self.gaps, reused=self.reused, races=self.races, firsts=self.firsts,
            think_sum_ms=round(self.think_sum_s * 1000),
        )  # fmt: skip


@dataclass
class BatchResult:
    elapsed_s: float
    window_s: float  # the schedule's own span (rate mode), or the user run's length
    latencies_ns: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)  # the ledger's, then the users'
    lateness_max_ns: int = 0


class OpenLoopClient:
    """Rate mode (`rate_rps` > 0) or user mode (`think` given, `concurrency` users)."""

    def __init__(
        self,
        target: Target,
        mode: Mode,
        concurrency: int,
        rate_rps: float = 0.0,
        arrivals: Arrivals = Arrivals.CONSTANT,
        think: ThinkTime | None = None,
        seed: int = 1,
        clock: Clock = time.monotonic_ns,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.target = target
        self.pooled = mode is Mode.POOLED
        self.concurrency = concurrency
        self.rate_rps = rate_rps
        self.arrivals = arrivals
        self.think = think
        self.rng = random.Random(seed)
        self.clock = clock  # time.monotonic_ns: the clock of loop.time() and call_at
        self.request = target.request_bytes(mode)
        _, self.address = target.resolve()
        self.ssl: ssl.SSLContext | None = target.ssl_context()
        self.idle: list[_Conn] = []
        self.connections_opened = 0
        self.user_conns: list[_Conn | None] = [None] * concurrency

    @property
    def paced_seconds_per_loop(self) -> float:
        """What one request costs in wall time at the asked pace (pyperf's loop sizing)."""
        if self.think is not None:
            return (self.think.mean_s + 0.001) / self.concurrency
        return 1.0 / self.rate_rps

    # -- connections --

    async def _open(self) -> _Conn:
        try:
            _, conn = await self.loop.create_connection(
                lambda: _Conn(self.loop, self.clock), self.address, self.target.port,
                ssl=self.ssl, server_hostname=self.target.host if self.ssl else None,
            )  # fmt: skip
        except (OSError, ssl.SSLError) as exc:
            raise _Failed(error_kind(exc)) from None
        self.connections_opened += 1
        return conn

    async def _exchange(self, conn: _Conn) -> tuple[int, int, bool]:
        return await self._await_reply(conn, conn.send(self.request))

    async def _await_reply(
        self, conn: _Conn, reply: asyncio.Future[tuple[int, int, bool]]
    ) -> tuple[int, int, bool]:
        try:
            return await asyncio.wait_for(reply, REQUEST_TIMEOUT_S)
        except TimeoutError:
            conn.close()
            raise _Failed("timeout") from None
        except (OSError, ssl.SSLError) as exc:
            raise _Failed(error_kind(exc)) from None

    # -- rate mode --

    def run(self, loops: int) -> BatchResult:
        """Exactly `loops` requests: on the schedule (rate mode) or by the users (user mode)."""
        if self.think is not None:
            return self.run_users(budget=loops)
        return self.loop.run_until_complete(self._rate_batch(loops))

    async def _rate_batch(self, loops: int) -> BatchResult:
        start = self.clock() + 1_000_000  # 1 ms ahead: the first start is not late by setup
        times = intended_times(start, self.rate_rps, loops, self.arrivals, self.rng)
        mean_gap = round(1e9 / self.rate_rps)
        ledger = StartLedger(end_ns=times[-1] + mean_gap)
        out = BatchResult(0.0, (times[-1] + mean_gap - start) / 1e9)
        pacer, queue = Pacer(times), deque[int]()
        in_flight = 0
        finished = self.loop.create_future()
        remaining = loops

        def settle() -> None:
            nonlocal remaining, in_flight
            in_flight -= 1
            remaining -= 1
            if remaining == 0 and not finished.done():
                finished.set_result(None)
            dispatch(waiting=True)

        waited = 0  # starts that found all `concurrency` slots busy and waited for one

        async def fresh(intended: int) -> None:
            try:
                conn = await self._open()
            except _Failed as exc:
                out.errors[str(exc)] += 1
                settle()
                return
            ledger.start(intended, self.clock())
            await finish(intended, conn, conn.send(self.request))

        async def finish(
            intended: int, conn: _Conn, reply: asyncio.Future[tuple[int, int, bool]]
        ) -> None:
            try:
                status, done, close = await self._await_reply(conn, reply)
            except _Failed as exc:
                out.errors[str(exc)] += 1
                conn.close()
                settle()
                return
            if status >= 400:
                out.errors[f"http-{status}"] += 1
            else:
                out.latencies_ns.append(latency_from_intended(intended, done))
            if self.pooled and not close and conn.open:
                self.idle.append(conn)
            else:
                conn.close()
            settle()

        def dispatch(waiting: bool = False) -> None:
            nonlocal in_flight, waited
            while queue and in_flight < self.concurrency:
                intended = queue.popleft()
                in_flight += 1
                waited += waiting
                conn = self._idle_conn()
                if conn is None:
                    self.loop.create_task(fresh(intended))
                    continue
                # the common case: written now, from this callback, with no task in between
                ledger.start(intended, self.clock())
                self.loop.create_task(finish(intended, conn, conn.send(self.request)))

        def tick() -> None:
            queue.extend(pacer.due(self.clock()))
            dispatch()
            deadline = pacer.deadline()
            if deadline is not None:
                self.loop.call_at(deadline / 1e9, tick)

        t0, cpu0 = self.clock(), time.process_time()
        self.loop.call_at(times[0] / 1e9, tick)
        await finished
        out.elapsed_s = (self.clock() - t0) / 1e9
        out.counts["cpu_us"] = round((time.process_time() - cpu0) * 1e6)
        out.counts["elapsed_us"] = round(out.elapsed_s * 1e6)
        out.counts.update(ledger.counts())
        out.counts["scheduled"] = loops
        out.counts["waited_for_slot"] = waited
        out.lateness_max_ns = ledger.lateness_max_ns
        return out

    def _idle_conn(self) -> _Conn | None:
        """The most recently used idle connection still open (pooled), else None."""
        while self.pooled and self.idle:
            conn = self.idle.pop()
            if conn.open:
                return conn
        return None

    # -- user mode --

    def run_users(self, budget: int | None = None, duration_s: float | None = None) -> BatchResult:
        """The users until `budget` requests were started or `duration_s` passed."""
        return self.loop.run_until_complete(self._users(budget, duration_s))

    async def _users(self, budget: int | None, duration_s: float | None) -> BatchResult:
        assert self.think is not None
        think = self.think
        start = self.clock()
        until = start + round(duration_s * 1e9) if duration_s is not None else None
        out = BatchResult(0.0, 0.0)
        ledger, stats = StartLedger(), UserStats()
        left = [budget if budget is not None else -1]

        def take() -> bool:
            if left[0] == 0:
                return False
            left[0] -= 1
            return True

        async def user(u: int) -> None:
            # The first start after one think time too, so the users' starts are spread out. A
            # gap is drawn only to be realized: the run ends between a response and the next
            # draw (at `until`, or when the budget is spent), never in the middle of a wait, so
            # the long gaps are not cut off at the end (which would bias reuse upwards).
            if not take():
                return
            intended = start + round(think.draw(self.rng) * 1e9)
            first = True
            if until is not None and intended > until:
                return
            while True:
                await _sleep_until(self.loop, intended)
                ledger.start(intended, self.clock())
                conn = self.user_conns[u]
                reused = conn is not None and conn.open
                try:
                    status, done, close, raced, conn = await self._user_request(conn, reused)
                except _Failed as exc:
                    out.errors[str(exc)] += 1
                    self.user_conns[u] = None
                    done, first, raced = self.clock(), True, False
                else:
                    if first:
                        stats.firsts += 1
                    else:
                        stats.gaps += 1
                        stats.reused += int(reused and not raced)
                    stats.races += int(raced)
                    first = False
                    stats.requests += 1
                    if status >= 400:
                        out.errors[f"http-{status}"] += 1
                    else:
                        out.latencies_ns.append(latency_from_intended(intended, done))
                    if close:
                        conn.close()
                    self.user_conns[u] = conn if conn.open else None
                if (until is not None and done > until) or not take():
                    return
                wait = think.draw(self.rng)
                stats.think_sum_s += wait
                intended = done + round(wait * 1e9)

        await asyncio.gather(*(user(u) for u in range(self.concurrency)))
        end = self.clock()
        out.elapsed_s = out.window_s = (end - start) / 1e9
        out.counts = ledger.counts()
        out.counts.update(stats.counts())  # update, not +: a count of 0 is kept
        out.counts["scheduled"] = ledger.started
        out.counts["users_requests"] = stats.requests
        out.lateness_max_ns = ledger.lateness_max_ns
        return out

    async def _user_request(
        self, conn: _Conn | None, reused: bool
    ) -> tuple[int, int, bool, bool, _Conn]:
        """One request on the user's connection if it is still open; a request that meets the
        server's close in flight (no response, the connection gone) goes once more on a new one."""
        if reused:
            assert conn is not None
            try:
                status, done, close = await self._exchange(conn)
                return status, done, close, False, conn
            except _Failed:
                if conn.open or conn.requests == 0:
                    raise
            conn.close()
            fresh = await self._open()
            status, done, close = await self._exchange(fresh)
            return status, done, close, True, fresh
        if conn is not None:
            conn.close()
        fresh = await self._open()
        status, done, close = await self._exchange(fresh)
        return status, done, close, False, fresh

    def close(self) -> None:
        for conn in [*self.idle, *(c for c in self.user_conns if c is not None)]:
            conn.close()
        self.idle.clear()
        self.user_conns = [None] * self.concurrency
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline_ns: int) -> None:
    """Sleep to an absolute monotonic deadline (loop.time() is time.monotonic())."""
    delay = deadline_ns / 1e9 - loop.time()
    if delay > 0:
        future = loop.create_future()
        loop.call_at(deadline_ns / 1e9, _wake, future)
        await future


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
