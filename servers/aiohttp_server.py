"""The aiohttp reference server: aiohttp.web out of the box, plus the shared keep-alive policy.

aiohttp supplies the parser, the idle timer (`keepalive_timeout=T`), pipelining and the writer;
this module adds what aiohttp lacks, with as little code on the request path as possible:

- a per-connection request limit N (aiohttp has none): the N-th response is `force_close()`d;
- `Connection`/`Keep-Alive` headers from `KeepAlivePolicy.decide`; the reply and the headers
  are remembered per distinct request (`servers.aiohttp_answers`), so a request allocates no
  policy objects;
- a header deadline H (aiohttp has none): armed at accept and at the first byte of each request,
  checked lazily (aiohttp's own accept timer doubles as the first check when H >= T; ours is
  re-armed only when it fires early) and disarmed when the handler is entered; H also bounds
  each stall while a request body is read (IDLE-06);
- rejections aiohttp's parser lets through: major version other than 1 (505), a transfer coding
  other than chunked (501);
- answers to requests received before a client half-close (aiohttp drops them; ROB-02);
- exact counters: a `web.RequestHandler` subclass sees every connection's start and end and
  records why it ended (first reason wins).

Private aiohttp API relied on (checked against aiohttp 3.14):
- `BaseRunner._make_server` is overridden so that `SockSite` gets our protocol factory (a
  `web.Server` subclass whose `__call__` builds `_Connection`);
- `RequestHandler._process_keepalive` is overridden to record `idle_timeout` and to ignore the
  idle timer once a new request has begun (rule 5: its first byte stops the idle timer);
- `RequestHandler._messages` and `._waiter` are read (never written) in `eof_received`.
Everything else is public: `keep_alive()`, `close()`, `force_close()`, `handle_error()`,
`peername`, `ssl_context`, `data_received()`, `eof_received()`, `connection_made()`,
`connection_lost()`, `request.protocol`.

Deviations (the same text as DEVIATIONS below; the conformance suite marks these xfail):
- PIPE-02: aiohttp's llhttp parser raises 'Data after Connection: close' when bytes follow a
  request that said close, and RequestHandler.data_received then replaces every request parsed
  from that read with a single 400: the requests before the close are not answered.
- ERR-08[HTTP/2.0]: aiohttp's llhttp parser accepts HTTP/2.0; we answer 505, but aiohttp writes
  the status line with the request's version ('HTTP/2.0 505').
- ERR-08[HTTP/1.2]: aiohttp's llhttp parser rejects HTTP/1.2 with 400 instead of serving it
  as 1.1. (ERR-08's third subcase, `HTTP/1` -> 400, conforms.)
- KA-07[decided]: aiohttp never half-closes: every close is transport.close(), so after a close
  the server decided (the N-th response) a byte the client still sends gets a reset instead of
  being read and discarded during a linger (rule 4).

aiohttp's `transport.close()` is what rule 4 asks for when the client itself asked to close
(KA-07[asked] conforms). The other cases pass because aiohttp reads eagerly, so little is left
unread; over TLS a client still writing a large request (a 70 KB request line) when the 400 is
sent can see a reset instead.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestPayloadError
from multidict import CIMultiDict

from servers.aiohttp_answers import (
    NO_TOKENS,
    SERVER_HEADER,
    Answer,
    AnswerKey,
    Shared,
    tokens_of,
)
from servers.aiohttp_site import DeadlineSockSite, build_app
from servers.endpoints import TEXT, RequestContext
from servers.policy import CloseReason, connection_tokens
from servers.runtime import LISTEN_BACKLOG, SHUTDOWN_GRACE_S, Runtime

DEVIATIONS: dict[str, str] = {
    "PIPE-02": (
        "aiohttp's llhttp parser raises 'Data after Connection: close' when bytes follow a "
        "request that said close, and RequestHandler.data_received then replaces every request "
        "parsed from that read with a single 400: the requests before the close are not answered"
    ),
    "ERR-08[HTTP/2.0]": (
        "aiohttp's llhttp parser accepts HTTP/2.0; we answer 505, but aiohttp writes the status "
        "line with the request's version ('HTTP/2.0 505')"
    ),
    "ERR-08[HTTP/1.2]": (
        "aiohttp's llhttp parser rejects HTTP/1.2 with 400 instead of serving it as 1.1"
    ),
    "KA-07[decided]": (
        "aiohttp never half-closes: every close is transport.close(), so after a close the "
        "server decided (the N-th response) a byte the client still sends gets a reset instead "
        "of being read and discarded during a linger (rule 4)"
    ),
}

# aiohttp logs every malformed request with a traceback; stderr belongs to --log-connections.
_QUIET_LOGGER = logging.getLogger("servers.aiohttp_server.quiet")
_QUIET_LOGGER.addHandler(logging.NullHandler())
_QUIET_LOGGER.propagate = False
_BASE_DATA_RECEIVED = web.RequestHandler.data_received  # per chunk: no super() object


class _Connection(web.RequestHandler):
    """One client connection: counts it, enforces N and H, and records why it ended."""

    # Per-connection state lives in the instance __dict__, with these class-level defaults:
    # no __init__ override, so accepting a connection costs one Python frame less.
    _shared: Shared  # set on a per-server subclass by _Server
    _conn_id = 0
    _number = 0  # requests dispatched on this connection
    _reason: CloseReason | None = None
    _idle = False  # a response was sent and no byte of the next request arrived yet
    _awaiting_header = True  # accepted, or a request began: H is running
    _header_deadline = 0.0
    _header_handle: asyncio.TimerHandle | None = None
    _counted = False
    _peer_eof = False  # the client half-closed while requests were pending

    # -- connection lifetime ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._conn_id = self._shared.counters.connection_opened()
        self._counted = True
        shared = self._shared
        self._header_deadline = shared.loop.time() + shared.header_timeout_s
        super().connection_made(transport)  # aiohttp sets TCP_NODELAY here (BaseProtocol)
        # aiohttp has just armed its idle timer for accept + T; when H >= T that timer doubles
        # as the first header check (see _process_keepalive), saving a timer per connection.
        if shared.own_accept_timer:
            self._header_handle = shared.loop.call_at(self._header_deadline, self._on_header_timer)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_handle is not None:
            self._header_handle.cancel()
            self._header_handle = None
        if self._counted:
            self._counted = False
            self._shared.counters.connection_closed(self._reason or self._fallback_reason(exc))
        super().connection_lost(exc)

    def _fallback_reason(self, exc: BaseException | None) -> CloseReason:
        """No decision of ours closed it: the server is stopping, or the client went away."""
        if self._shared.stopping:
            return CloseReason.SHUTDOWN
        if exc is None or isinstance(exc, ConnectionError):
            return CloseReason.CLIENT_CLOSED
        return CloseReason.ERROR

    def _set_reason(self, reason: CloseReason) -> None:
        if self._reason is None:
            self._reason = reason

    def eof_received(self) -> bool | None:
        """The client closed its sending side.

        aiohttp returns None here, so asyncio closes the transport at once and requests that
        were received but not yet answered are lost (ROB-02). Unless the connection is idle,
        keep the write side open: the response to the last request then closes it. Reads
        aiohttp's private `_messages` (parsed requests not yet dispatched) and `_waiter` (set
        only while its request loop waits for the next request, i.e. when idle).
        """
        self._set_reason(CloseReason.CLIENT_CLOSED)
        if self.ssl_context is not None:  # TLS has no half-close: asyncio ignores True
            return super().eof_received()
        if self._messages:
            self._peer_eof = True
            return True
        if self._waiter is None:  # a request is in flight
            self._peer_eof = True
            if self._idle:  # ... and our handler already answered it: close after the write
                self.close()
            return True
        return super().eof_received()

    def data_received(self, data: bytes) -> None:
        if self._idle and data:
            # First byte of the next request: the idle timer stops (see _process_keepalive)
            # and the header deadline starts (a lazy timer: scheduled only when none is pending).
            self._idle = False
            self._awaiting_header = True
            shared = self._shared
            self._header_deadline = shared.loop.time() + shared.header_timeout_s
            if self._header_handle is None:
                self._header_handle = shared.loop.call_at(
                    self._header_deadline, self._on_header_timer
                )
        _BASE_DATA_RECEIVED(self, data)

    # -- timers ---------------------------------------------------------------------------------

    def _process_keepalive(self) -> None:  # private aiohttp hook: its idle timer fired
        if not self._idle:
            # A request has begun (or none yet since accept): H governs, not T. Dropping the
            # handle lets aiohttp re-arm its timer after the next response.
            self.keep_alive(True)
            self._check_header_deadline()
            return
        super()._process_keepalive()
        if self.transport is None:  # aiohttp closed the idle connection
            self._set_reason(CloseReason.IDLE_TIMEOUT)

    def _on_header_timer(self) -> None:
        self._header_handle = None
        self._check_header_deadline()

    def _check_header_deadline(self) -> None:
        """Close silently (no 408, allowed by IDLE-04) once H has passed without a full header."""
        if not self._awaiting_header or self.transport is None:
            return
        loop = self._shared.loop
        if loop.time() < self._header_deadline:  # not yet, or a later request moved it
            if self._header_handle is None:
                self._header_handle = loop.call_at(self._header_deadline, self._on_header_timer)
            return
        self._set_reason(CloseReason.HEADER_TIMEOUT)
        self.force_close()

    # -- requests -------------------------------------------------------------------------------

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's parser errors (always 400) and handler exceptions: close, and say so."""
        self._set_reason(CloseReason.ERROR)
        if status >= 500 and exc is not None:
            sys.stderr.write(f"aiohttp server: {status} for {request.path_qs}: {exc!r}\n")
        response = super().handle_error(request, status, exc, message)
        response.headers[hdrs.CONNECTION] = "close"
        response.headers[hdrs.SERVER] = SERVER_HEADER
        return response

    def _answer(self, key: AnswerKey, number: int, connection: Sequence[str]) -> Answer:
        """The slow path: a RequestContext, route() and the plan, --log-connections."""
        shared = self._shared
        peer = self.peername
        host, port = (peer[0], peer[1]) if isinstance(peer, tuple) else ("", 0)
        ctx = RequestContext(host, port, self._conn_id, number)
        answer = shared.answers.get(key) or shared.answer(key, ctx)
        if shared.log_enabled:
            shared.runtime.log_request(ctx, key[0], key[1], ", ".join(connection))
        return answer

    def _late_close(
        self, content_type: str, headers: CIMultiDict[str]
    ) -> tuple[CloseReason | None, CIMultiDict[str]]:
        """Closes the policy cannot see: the server is stopping, or the client half-closed and
        this answers the last request it sent (ROB-02; `_messages` is aiohttp's private queue)."""
        shared = self._shared
        if shared.stopping:
            return CloseReason.SHUTDOWN, shared.close_headers(content_type)
        if not self._messages:
            return CloseReason.CLIENT_CLOSED, shared.close_headers(content_type)
        return None, headers

    def _reject(self, request: web.BaseRequest) -> web.StreamResponse | None:
        """What aiohttp's parser lets through but rule 9 rejects: 505 and 501."""
        if request.version[0] != 1:
            return self._error_response(505, "HTTP version not supported\n")
        coding = request.headers.get(hdrs.TRANSFER_ENCODING)
        if coding is not None and coding.strip().lower() != "chunked":
            return self._error_response(501, "unsupported transfer coding\n")
        return None

    async def _drain_body(self, request: web.BaseRequest) -> web.StreamResponse | None:
        """Rule 8: read the body in full; a stall longer than H, or a bad body, closes."""
        content = request.content
        limit = self._shared.header_timeout_s
        try:
            while True:
                async with asyncio.timeout(limit):
                    if not await content.readany():
                        return None
        except TimeoutError:
            self._set_reason(CloseReason.HEADER_TIMEOUT)
            self.force_close()
            return web.Response(status=408)  # never written: the transport is closed
        except RequestPayloadError:
            return self._error_response(400, "bad request body\n")

    def _error_response(self, status: int, text: str) -> web.StreamResponse:
        self._set_reason(CloseReason.ERROR)
        response = web.Response(
            status=status, body=text.encode(), headers=self._shared.close_headers(TEXT)
        )
        response.force_close()
        return response


async def _handle(request: web.Request) -> web.StreamResponse:
    """Every request: validate, drain the body, route(), then apply the keep-alive decision.

    One flat coroutine on purpose: this is the per-request path, and each extra coroutine
    layer, method call or allocation costs about 1% against a bare aiohttp app.
    """
    conn: _Connection = request.protocol  # type: ignore[assignment]  # our protocol factory
    conn._awaiting_header = False
    conn._idle = False
    version = request.version
    if request.body_exists or version[0] != 1:
        rejected = conn._reject(request) or await conn._drain_body(request)
        if rejected is not None:
            return rejected
    number = conn._number = conn._number + 1
    shared = conn._shared
    values = request.headers.getall(hdrs.CONNECTION, ())
    if not values:
        tokens = NO_TOKENS
    else:
        tokens = tokens_of(values[0]) if len(values) == 1 else connection_tokens(values)
    key = (request.method, request.raw_path, number if shared.limited else 1, version, tokens)
    answer = shared.answers.get(key)
    if answer is None or shared.log_enabled:
        answer = conn._answer(key, number, values)
    reply, reason, headers = answer
    if reply.delay_s:
        await asyncio.sleep(reply.delay_s)
    if reason is None and (shared.stopping or conn._peer_eof):
        reason, headers = conn._late_close(reply.content_type, headers)
    response = web.Response(status=reply.status, body=reply.body, headers=headers)
    if reason is not None:
        conn._set_reason(reason)
        response.force_close()
    shared.request_served()
    conn._idle = True
    return response


class _Server(web.Server):
    """aiohttp's low-level server, building `_Connection` instead of `RequestHandler`."""

    def __init__(self, stock: web.Server, shared: Shared, handler_kwargs: dict[str, Any]) -> None:
        super().__init__(
            stock.request_handler,
            request_factory=stock.request_factory,
            handler_cancellation=stock.handler_cancellation,
            loop=shared.loop,
            **handler_kwargs,
        )
        self._loop_ = shared.loop
        self._handler_kwargs = handler_kwargs
        self._protocol = type("_Connection", (_Connection,), {"_shared": shared})

    def __call__(self) -> _Connection:
        return self._protocol(self, loop=self._loop_, **self._handler_kwargs)


class _Runner(web.AppRunner):
    """AppRunner whose server is `_Server`; the app's startup and freeze stay aiohttp's own."""

    __slots__ = ("_shared", "_handler_kwargs")

    def __init__(self, app: web.Application, shared: Shared, **handler_kwargs: Any) -> None:
        super().__init__(app, shutdown_timeout=SHUTDOWN_GRACE_S, **handler_kwargs)
        self._shared = shared
        self._handler_kwargs = handler_kwargs

    async def _make_server(self) -> web.Server:  # private aiohttp hook (BaseRunner)
        stock = await super()._make_server()
        return _Server(stock, self._shared, self._handler_kwargs)


async def _serve(runtime: Runtime) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    shared = Shared(runtime, loop)
    runner = _Runner(
        build_app(_handle),
        shared,
        keepalive_timeout=runtime.options.keepalive_timeout_s,
        access_log=None,
        logger=_QUIET_LOGGER,
    )
    await runner.setup()
    try:
        site = DeadlineSockSite(
            runner,
            runtime.listener,
            ssl_context=runtime.ssl_context,
            backlog=LISTEN_BACKLOG,
            handshake_timeout_s=shared.header_timeout_s,  # slowloris on the TLS handshake
        )
        await site.start()
        runtime.announce_ready()
        await stop.wait()
        shared.stopping = True
    finally:
        await runner.cleanup()


def serve(runtime: Runtime) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly (idle connections closed, in-flight
    handlers given SHUTDOWN_GRACE_S) and return."""
    with asyncio.Runner() as runner:
        runner.run(_serve(runtime))
