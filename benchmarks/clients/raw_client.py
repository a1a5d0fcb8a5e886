"""A minimal HTTP/1.1 load client on asyncio Protocols and uvloop, in the spirit of wrk.

A Python client easily becomes the bottleneck, and then it measures itself, not the server. So
the hot path is one callback per response and no future, task or parser object per request:
`data_received` frames the response by Content-Length (or reads to EOF when there is none),
records the latency and, in pooled mode, writes the next request straight away. Responses that
are byte-for-byte the previous one (the usual case: only the Date header changes, once a
second) skip header parsing altogether. Coroutines are only used per *connection*: a slot opens
a connection, hands it requests until the connection closes or the budget is spent.

Pooled: `concurrency` connections, kept across `run()` calls; one the server ends (`Connection:
close` at its keep-alive max, which we then close ourselves, or a reset) is replaced by a new one
on the next request. Unpooled: every request opens a connection, sends `Connection: close` and
waits for the server's EOF, so the server is the side that closes first and holds the TIME_WAIT.
Connect errors (EADDRNOTAVAIL when ephemeral ports run out, ECONNREFUSED) count as errors of
their kind and the slot carries on.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable

from benchmarks.clients.contract import Mode
from benchmarks.clients.pyperf_driver import Batch
from benchmarks.clients.shared import Target, error_kind, socket_phases

BATCH_TIMEOUT_S = 120.0  # a server that stops answering must not hang the benchmark forever
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CONNECTION_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.IGNORECASE)
_TO_EOF = -2  # `need` when the body runs to EOF (no Content-Length)
_NO_HEAD = -1  # `need` while the header section is incomplete
clock = time.perf_counter_ns


class _Conn(asyncio.Protocol):
    """One connection; carries requests one at a time (no pipelining, like wrk)."""

    __slots__ = ("c", "transport", "write", "buf", "need", "t0", "tw", "first", "made",
                 "waiter", "open", "close_after", "status", "head_len", "in_flight")  # fmt: skip

    # Set by connection_made, before create_connection hands the connection out: never unset.
    transport: asyncio.Transport
    write: Callable[[bytes], None]

    def __init__(self, client: RawClient) -> None:
        self.c = client
        self.buf = b""
        self.need = _NO_HEAD
        self.t0 = 0  # the request's start (before the connect, for one on a new connection)
        self.tw = 0  # the start of its write
        self.first = 0  # the arrival of its response's first bytes
        self.made = 0  # when connection_made ran (plain TCP: just after the connect)
        self.waiter: asyncio.Future[bool] | None = None
        self.open = False
        self.close_after = False
        self.status = 0
        self.head_len = 0
        self.in_flight = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio types the argument BaseTransport; a stream connection's is a Transport.
        self.transport = transport  # type: ignore[assignment]
        self.write = self.transport.write  # bound once: one lookup less per request
        self.open = True
        self.made = clock()

    def begin(self, t0: int, tw: int) -> asyncio.Future[bool]:
        """Send one request; the future says True (idle, reusable) or False (closed)."""
        self.waiter = self.c.loop.create_future()
        self.t0, self.tw = t0, tw
        self.in_flight = True
        self.write(self.c.request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        c = self.c
        # Nothing buffered means no head read yet (`need` is _NO_HEAD): a response that is the
        # previous one byte for byte is complete, with its status and framing known, and its
        # first byte arrived now.
        if not self.buf and data == c.last_response:
            now = clock()
            if c.last_reuse:  # the hot path, inlined: a success, kept open, pooled
                c.latencies.append(now - self.t0)
                c.ttfb.append(now - self.tw)
                if c.remaining > 0:
                    c.remaining -= 1
                    self.t0 = self.tw = now
                    self.write(c.request)
                    return
                self.in_flight = False
                waiter, self.waiter = self.waiter, None
                if waiter is not None:
                    waiter.set_result(True)
                return
            self.first = now
            self._complete(c.last_status, c.last_close, now)
            return
        now = clock()
        if self.buf:
            buf = self.buf + data
        else:
            buf = data
            if self.need == _NO_HEAD:
                self.first = now  # the response's first bytes
        self._parse(buf, now)

    def _parse(self, buf: bytes, now: int) -> None:
        if self.need == _NO_HEAD:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not self._head(buf[:end]):
                return
            self.head_len = end + 4
        if self.need == _TO_EOF or len(buf) < self.need:
            self.buf = buf
            return
        if len(buf) == self.need:  # the common case: remember it for the fast path
            self.c.remember(buf, self.status, self.close_after)
        self.buf = buf[self.need :]  # anything beyond is a protocol error; kept, then ignored
        self.need = _NO_HEAD
        self._complete(self.status, self.close_after, now)

    def _head(self, head: bytes) -> bool:
        """Parse what framing needs; False (and the connection aborted) if it cannot frame."""
        try:
            self.status = int(head[9:12])
        except ValueError:
            return self._fail("bad-status-line")
        self.close_after = _CONNECTION_CLOSE.search(head) is not None
        match = _CONTENT_LENGTH.search(head)
        if match is not None:
            self.need = len(head) + 4 + int(match.group(1))
        elif _CHUNKED.search(head) is not None:
            return self._fail("chunked-unsupported")
        else:
            self.need = _TO_EOF
        return True

    def _fail(self, kind: str) -> bool:
        self.c.errors[kind] += 1
        self.in_flight = False
        self.transport.abort()
        return False

    def _complete(self, status: int, close_after: bool, now: int) -> None:
        """A whole response arrived at `now`: count it, then the next request, or the close."""
        c = self.c
        self.in_flight = False
        if status < 400:
            lat = now - self.t0
            c.latencies.append(lat)
            # One read on a reused connection (the usual case): the first byte is the latency.
            c.ttfb.append(lat if self.tw == self.t0 and self.first == now else self.first - self.tw)
        else:
            c.errors[f"http-{status}"] += 1
        if close_after or c.unpooled:
            # Unpooled: one request, and the server closes first when it said `close` (it holds
            # the TIME_WAIT); when it would keep the connection we close. Pooled and the server
            # said `close` (its max): we close after reading, as RFC 9112 section 9.6 requires
            # of a client. Node does not close after maxRequestsPerSocket but waits for that.
            if not (close_after and c.unpooled):
                self.transport.close()
            return  # connection_lost wakes the slot, which opens the next connection
        if c.remaining > 0:
            c.remaining -= 1
            self.t0 = self.tw = now
            self.in_flight = True
            self.write(c.request)
            return
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            waiter.set_result(True)

    def eof_received(self) -> bool | None:
        if self.in_flight and self.need == _TO_EOF:
            self.need = _NO_HEAD
            self.buf = b""
            self._complete(self.status, True, clock())
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.in_flight:
            self.in_flight = False
            self.c.errors[error_kind(exc) if exc else "closed-before-response"] += 1
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(False)


class RawClient:
    """`concurrency` slots over uvloop; `run(loops)` sends exactly `loops` requests."""

    tls_resumed = 0  # never offers a TLS session to resume

    def __init__(self, target: Target, mode: Mode, concurrency: int) -> None:
        import uvloop

        self.loop = uvloop.new_event_loop()
        self.target = target
        self.unpooled = mode is Mode.UNPOOLED
        self.concurrency = concurrency
        self.request = target.request_bytes(mode)
        self.family, self.address = target.resolve()
        self.ssl: ssl.SSLContext | None = target.ssl_context()
        self.timings = socket_phases(self.ssl is not None)
        self.idle: list[_Conn] = []
        self.remaining = 0
        self.latencies: list[int] = []
        self.ttfb: list[int] = []
        self.connects: list[int] = []
        self.tls: list[int] = []
        self.errors: Counter[str] = Counter()
        self.last_response = b"\0"  # never equal to a real response
        self.last_status = 0
        self.last_close = False
        self.last_reuse = False  # last_response is a success that keeps a pooled connection
        self.connections_opened = 0

    def remember(self, response: bytes, status: int, close_after: bool) -> None:
        """A whole response of one read: the next one equal to it skips parsing."""
        self.last_response, self.last_status, self.last_close = response, status, close_after
        self.last_reuse = status < 400 and not close_after and not self.unpooled

    def run(self, loops: int) -> Batch:
        self.remaining = loops
        self.latencies, self.errors = [], Counter()
        self.ttfb, self.connects, self.tls = [], [], []
        t0 = clock()
        self.loop.run_until_complete(self._batch())
        elapsed = (clock() - t0) / 1e9
        return Batch(elapsed, self.latencies, self.errors, connects_ns=self.connects,
                     tls_ns=self.tls, ttfb_ns=self.ttfb)  # fmt: skip

    async def _batch(self) -> None:
        tasks = [self.loop.create_task(self._slot()) for _ in range(self.concurrency)]
        _, pending = await asyncio.wait(tasks, timeout=BATCH_TIMEOUT_S)
        if pending:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)
            self.errors["batch-timeout"] += self.remaining + len(pending)
            self.remaining = 0

    async def _slot(self) -> None:
        conn = self.idle.pop() if self.idle else None
        while self.remaining > 0:
            self.remaining -= 1
            start = write = clock()
            if conn is None or not conn.open:
                conn = await self._open(start)
                if conn is None:
                    continue
                write = clock()
            if await conn.begin(start, write):  # idle: the budget is spent, keep it for next run
                self.idle.append(conn)
                return
            conn = None
        if conn is not None and conn.open:
            self.idle.append(conn)

    async def _open(self, start: int) -> _Conn | None:
        """Connect (and over https shake hands), timing each: plain TCP's connect ends when
        the transport calls connection_made; over https that comes after the handshake, so the
        socket is connected first (sock_connect), then handed to the TLS transport. The plain
        path stays the one create_connection: the split costs about 75 us of CPU a connection."""
        try:
            if self.ssl is None:
                _, conn = await self.loop.create_connection(
                    lambda: _Conn(self), self.address, self.target.port
                )
                self.connects.append(conn.made - start)
            else:
                conn = await self._open_tls(start)
        except (OSError, ssl.SSLError) as exc:
            self.errors[error_kind(exc)] += 1
            return None
        self.connections_opened += 1
        return conn

    async def _open_tls(self, start: int) -> _Conn:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await self.loop.sock_connect(sock, (self.address, self.target.port))
            connected = clock()
            _, conn = await self.loop.create_connection(
                lambda: _Conn(self), sock=sock, ssl=self.ssl, server_hostname=self.target.host
            )
        except BaseException:
            sock.close()
            raise
        self.connects.append(connected - start)
        self.tls.append(clock() - connected)
        return conn

    def close(self) -> None:
        for conn in self.idle:
            conn.transport.close()
        self.idle.clear()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()
