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
- rejections aiohttp's parser lets through: major version other than 1 (505, on an HTTP/1.1
  status line), a transfer coding other than chunked (501); a line over its limit is 414 or 431
  and a version its llhttp does not know (`HTTP/3.1`) 505 (aiohttp says 400);
- the end of a body that cannot come: after the client's FIN, or when llhttp rejects the body
  in a later read than its head (aiohttp queues a 400 behind the request, which then waits for
  its body until H), the body's reads fail, so the request is answered 400 or closed without
  an answer at once, as on the others; and aiohttp's linger after an error answer (reading the
  unread body for `lingering_time`, 10 s by default) is rule 4's 2 s, ended by the FIN;
- targets not in origin form go to our handler directly: aiohttp's router looks a target up by
  its path, and `GET http://t` has none (it answered its own 404, without our headers);
- CONNECT without a tunnel: llhttp treats every byte after a CONNECT head as tunnel data and
  aiohttp feeds it back to its parser as requests; here the body is framed by Content-Length
  or chunks (`framing.BodyReader`) and the request answered like any other, as on stdlib;
- answers to requests received before a client half-close (aiohttp drops them; ROB-02);
- exact counters: a `web.RequestHandler` subclass sees every connection's start and end and
  records why it ended (first reason wins);
- connection slots (`--max-connections`, rule 11): the site's acceptor stops accepting while
  they are all taken; `--reclaim-idle` closes the connection whose idle deadline
  (`_next_keepalive_close_time`, private) is the earliest among those that wait for a request.

Private aiohttp API relied on (checked against aiohttp 3.14):
- `BaseRunner._make_server` is overridden so that `SockSite` gets our protocol factory (a
  `web.Server` subclass whose `__call__` builds `_Connection`);
- `RequestHandler._process_keepalive` is overridden to record `idle_timeout` and to ignore the
  idle timer once a new request has begun (rule 5: its first byte stops the idle timer);
- `RequestHandler._messages` and `._waiter` are read (never written) in `eof_received`;
- `RequestHandler._handle_request` is wrapped (a plain function returning its coroutine) to
  send CONNECT and targets not in origin form to our handler (CONNECT's reads `._upgraded` and
  takes the body out of `._message_tail`) and to note the request's body before it runs;
  `BaseRequest._cache["version"]` is set for the 505 status line;
- the text of aiohttp's `BadStatusLine` for an unknown version quotes the request line, which
  `_unsupported_major` reads;
- `StreamReader.readany()` re-waits without looking at an exception set meanwhile: a failed
  body is failed a second time on the next loop turn (`_fail_body`).
TLS handshakes run in `servers.tls_accept` (see `servers.aiohttp_site`).
Everything else is public: `keep_alive()`, `close()`, `force_close()`, `handle_error()`,
`peername`, `ssl_context`, `data_received()`, `eof_received()`, `connection_made()`,
`connection_lost()`, `request.protocol`.

Deviations (the same text as DEVIATIONS below; the conformance suite marks these xfail):
- PIPE-02: aiohttp's llhttp parser raises 'Data after Connection: close' when bytes follow a
  request that said close, and RequestHandler.data_received then replaces every request parsed
  from that read with a single 400: the requests before the close are not answered.
- ERR-08[HTTP/1.2]: aiohttp's llhttp parser rejects HTTP/1.2 with 400 instead of serving it
  as 1.1. (ERR-08's third subcase, `HTTP/1` -> 400, conforms.)
- KA-07[decided]: aiohttp never half-closes: every close is transport.close(), so after a close
  the server decided (the N-th response) a byte the client still sends gets a reset instead of
  being read and discarded during a linger (rule 4).

Beyond the spec's cases (tests/test_smuggling.py marks them xfail by name, `AIOHTTP_DEVIATIONS`):
- PIPELINE-AFTER-UPGRADE: requests in the same read after a GET with `Connection: Upgrade` and
  an Upgrade other than websocket are dropped: aiohttp's parser pauses after it and returns no
  tail unless it accepts the upgrade (a later read is parsed normally).
- PIPELINE-BEFORE-ERROR: a malformed request answers with one 400 every request parsed from
  the same read, valid ones before it included (the cause of PIPE-02).
- HEADER-SECTION: aiohttp limits each header field to 8 KiB, not the whole section, so a
  section of several smaller fields over 8 KiB is served where the others answer 431.
In the README's table and `benchmarks/fuzz/deviations.py` (the fuzzer explains cases by them):
- REPEATED-FIELD: aiohttp's parser answers 400 to a second User-Agent, Content-Type,
  Content-Location, Content-Range, ETag, Max-Forwards, Server or Transfer-Encoding field line
  (its C parser's SINGLETON_HEADERS check cannot be turned off); llhttp accepts them.
- VERSION-ORDER: a version its llhttp does not know stops the parser at the request line; we
  answer 505 there, where the others read (and may reject with 400) the header section first;
  for 2.0 and 0.9 our 505 comes after llhttp's last check (Transfer-Encoding), theirs before.
- RTSP-ICE-VERSION (uvloop too): llhttp takes `RTSP/1.0` for `HTTP/1.0` and does not say so.

Not a listed case but worth knowing: aiohttp closes with `transport.close()`, never a half-close
followed by draining input (rule 4), which is what rule 4 asks for when the client itself asked to
close (KA-07[asked] conforms). It passes the plain-TCP cases because aiohttp reads eagerly,
so little is left unread; over TLS a client still writing a large request (a 70 KB request line)
when the 400 is sent can see a reset instead.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import HttpVersion11, hdrs, web
from aiohttp.http_exceptions import BadStatusLine, LineTooLong
from aiohttp.streams import StreamReader
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
from servers.endpoints import TEXT, Reply, RequestContext
from servers.framing import (
    MAX_HEADER_BYTES,
    MAX_REQUEST_LINE_BYTES,
    BodyKind,
    BodyReader,
    ProtocolError,
    body_framing,
    check_target,
)
from servers.policy import LINGER_S, CloseReason, connection_tokens
from servers.runtime import LISTEN_BACKLOG, SHUTDOWN_GRACE_S, Runtime
from servers.slots import reclaim_longest_idle

DEVIATIONS: dict[str, str] = {
    "PIPE-02": (
        "aiohttp's llhttp parser raises 'Data after Connection: close' when bytes follow a "
        "request that said close, and RequestHandler.data_received then replaces every request "
        "parsed from that read with a single 400: the requests before the close are not answered"
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
_BASE_HANDLE_REQUEST = web.RequestHandler._handle_request  # per request: likewise
_QUOTED_VERSION = re.compile(r" HTTP/([0-9])\.[0-9]['\"]\n")
_FRAMING = frozenset({"host", "content-length", "transfer-encoding"})
# aiohttp limits each field (name + value), not the section: one field alone hits 431 where it
# does on uvloop (name + value + 4 bytes of ": " and CRLF over MAX_HEADER_BYTES).
MAX_FIELD_BYTES = MAX_HEADER_BYTES - 4


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
    _body: BodyReader | None = None  # frames a CONNECT body llhttp leaves unframed
    _body_wake: asyncio.Future[None] | None = None  # _read_connect_body waits on it
    _body_error: ProtocolError | None = None
    _body_of: StreamReader | None = None  # the body of the request in flight (or the last)

    # -- connection lifetime ------------------------------------------------------------------

    def counted_as(self, connection_id: int) -> None:
        """tls_accept.TLSAccept counted this connection at accept, before its handshake."""
        self._conn_id = connection_id

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._conn_id:  # over TLS, tls_accept counted the connection at accept
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

    # aiohttp annotates its eof_received `-> None`; asyncio.Protocol's contract is bool | None
    # and True (keep the transport open) is what this override is for.
    def eof_received(self) -> bool | None:  # type: ignore[override]
        """The client closed its sending side.

        aiohttp returns None here, so asyncio closes the transport at once and requests that
        were received but not yet answered are lost (ROB-02). Unless the connection is idle,
        keep the write side open: the response to the last request then closes it. Reads
        aiohttp's private `_messages` (parsed requests not yet dispatched) and `_waiter` (set
        only while its request loop waits for the next request, i.e. when idle).
        """
        if self.ssl_context is not None:  # TLS has no half-close: asyncio ignores True
            self._set_reason(CloseReason.CLIENT_CLOSED)
            return super().eof_received()
        if self._messages or self._waiter is None:  # requests pending, or one in flight
            self._peer_eof = True
            self._end_unfinished_bodies()
            if not self._messages and self._idle:  # answered: close after the write
                self._set_reason(CloseReason.CLIENT_CLOSED)
                self.close()
            return True
        self._set_reason(CloseReason.CLIENT_CLOSED)
        return super().eof_received()

    def _end_unfinished_bodies(self) -> None:
        """After the client's FIN a body still incomplete never will be: fail its reads, so
        that _drain_body closes without an answer (as the other servers do) and aiohttp's
        linger after an error response ends at once instead of after `lingering_time` (issue 8
        item 6). Only the last request parsed can have one: a queued one, or the one in flight
        (`_body_of`)."""
        for payload in (self._body_of, *(p for _, p in self._messages)):
            if payload is not None and not payload.is_eof() and payload.exception() is None:
                self._fail_body(payload, ConnectionResetError("the client closed inside a body"))

    def _fail_body(self, body: StreamReader, exc: Exception) -> None:
        """Make the reads of `body` raise `exc`. Once more on the next loop turn: a chunk end
        in the same read may just have woken a reader, whose readany() then waits again
        without looking at the exception (aiohttp 3.14's readany loop)."""
        body.set_exception(exc)
        self._shared.loop.call_soon(body.set_exception, exc)

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
        if self._body is not None:
            data = self._frame_body(data)
        _BASE_DATA_RECEIVED(self, data)
        body = self._body_of
        if body is not None and self._messages and not body.is_eof():
            # Nothing parses past a body still incomplete but an error: llhttp failed inside
            # it, and aiohttp queued a 400 behind the request, which waits for its body for
            # ever. Fail the body instead: _drain_body answers the 400, as the others do.
            self._fail_body(body, RequestPayloadError("malformed body"))

    def _frame_body(self, data: bytes) -> bytes:
        """Bytes of a CONNECT body go to its BodyReader, not to aiohttp (which would keep them
        as the tail it later parses as requests); what follows the body goes on to aiohttp."""
        body = self._body
        assert body is not None
        try:
            used = body.feed(data)
        except ProtocolError as exc:
            self._body_error, used = exc, len(data)
        if self._body_wake is not None and not self._body_wake.done():
            self._body_wake.set_result(None)
        if used is None:
            return b""
        self._body = None
        return data[used:]

    def _handle_request(
        self, request: web.BaseRequest, start_time: float | None, request_handler: Any
    ) -> Any:
        """Private aiohttp hook (a coroutine function; this returns its coroutine): a CONNECT
        goes to `_handle_connect`, since aiohttp's router answers an authority-form target
        with its own 404. `_upgraded` (aiohttp's) is set only after a CONNECT or an upgrade."""
        self._body_of = request.content  # before the handler runs: a FIN may come first
        if self._upgraded and request.method == hdrs.METH_CONNECT:
            request_handler = _handle_connect
        elif request.raw_path[:1] != "/":
            # Not origin form. aiohttp's router looks a target up by its path, and
            # `http://t` has none: it would answer its own 404 (EveryTarget is never asked).
            request_handler = _handle
        return _BASE_HANDLE_REQUEST(self, request, start_time, request_handler)

    async def _read_connect_body(self, request: web.BaseRequest) -> web.StreamResponse | None:
        """Frame a CONNECT body by its Content-Length or chunks (RFC 9112 §6.3), as stdlib does:
        llhttp treats every byte after a CONNECT head as tunnel data, and aiohttp feeds what its
        handler leaves (`_message_tail`, private) back to the parser as requests. A stall
        longer than H closes, as in _drain_body."""
        fields = [(k.lower(), v) for k, v in request.headers.items() if k.lower() in _FRAMING]
        try:
            framing = body_framing(request.version, fields)
            check_target(request.method, request.raw_path)
        except ProtocolError as exc:
            return self._error_response(exc.status, exc.detail + "\n")
        if framing.kind is BodyKind.NONE:
            return None
        self._body = BodyReader(framing)
        tail, self._message_tail = self._message_tail, b""
        self._message_tail = self._frame_body(tail)
        loop = self._shared.loop
        while self._body is not None and self._body_error is None:
            self._body_wake = loop.create_future()
            try:
                async with asyncio.timeout(self._shared.header_timeout_s):
                    await self._body_wake
            except TimeoutError:
                self._set_reason(CloseReason.HEADER_TIMEOUT)
                self.force_close()
                return web.Response(status=408)  # never written: the transport is closed
            finally:
                self._body_wake = None
        if self._body_error is not None:
            return self._error_response(self._body_error.status, self._body_error.detail + "\n")
        return None

    # -- connection slots (rule 11) -----------------------------------------------------------

    def idle_deadline(self) -> float | None:
        """`servers.slots.Reclaimable`: aiohttp's idle deadline while the connection waits for
        its next request (answered, nothing queued; aiohttp's `_waiter` is set only then)."""
        if not self._idle or self._waiter is None or self._messages or self._reason is not None:
            return None
        return self._next_keepalive_close_time  # aiohttp's: the last response's end + T

    def reclaim(self) -> None:
        """--reclaim-idle: close this idle connection now (no request in flight: a FIN)."""
        self._set_reason(CloseReason.RECLAIMED)
        self.force_close()

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
        """aiohttp's parser errors (always 400) and handler exceptions: close, and say so.
        A line over its limit is 414 (request-target) or 431 (header field), as on the others:
        LineTooLong carries the limit it exceeded, and the two limits differ (see _serve)."""
        self._set_reason(CloseReason.ERROR)
        if status == 400 and isinstance(exc, LineTooLong):
            status = 414 if exc.args[1] == MAX_REQUEST_LINE_BYTES else 431
            message = None
        elif status == 400 and isinstance(exc, BadStatusLine) and _unsupported_major(exc):
            status, message = 505, None
            request._cache["version"] = HttpVersion11  # see _reject
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
        self, reply: Reply, headers: CIMultiDict[str]
    ) -> tuple[CloseReason | None, CIMultiDict[str]]:
        """Closes the policy cannot see: the server is stopping, or the client half-closed and
        this answers the last request it sent (ROB-02; `_messages` is aiohttp's private queue)."""
        shared = self._shared
        if shared.stopping:
            return CloseReason.SHUTDOWN, shared.close_headers(reply.content_type, reply.headers)
        if not self._messages:
            return CloseReason.CLIENT_CLOSED, shared.close_headers(
                reply.content_type, reply.headers
            )
        return None, headers

    def _reject(self, request: web.BaseRequest) -> web.StreamResponse | None:
        """What aiohttp's parser lets through but rule 9 rejects: 505, 501, and chunked in
        HTTP/1.0 (400, as framing.body_framing decides for the other two)."""
        if request.version[0] != 1:
            # aiohttp writes the status line with the request's version: say HTTP/1.1, not
            # `HTTP/2.0 505` or `HTTP/0.9 505` (`version` is a reify: private `_cache`).
            request._cache["version"] = HttpVersion11
            return self._error_response(505, "HTTP version not supported\n")
        coding = request.headers.get(hdrs.TRANSFER_ENCODING)
        if coding is not None and request.version < HttpVersion11:
            return self._error_response(400, "Transfer-Encoding in an HTTP/1.0 request\n")
        if coding is not None and coding.strip(" \t").lower() != "chunked":
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
        except ConnectionError:  # the client's FIN inside the body (_end_unfinished_bodies)
            self._set_reason(CloseReason.CLIENT_CLOSED)
            self.force_close()
            return web.Response(status=400)  # never written: the transport is closed

    def _error_response(self, status: int, text: str) -> web.StreamResponse:
        self._set_reason(CloseReason.ERROR)
        response = web.Response(
            status=status, body=text.encode(), headers=self._shared.close_headers(TEXT)
        )
        response.force_close()
        return response


def _unsupported_major(exc: BadStatusLine) -> bool:
    """aiohttp's llhttp accepts only versions 0.9, 1.0, 1.1 and 2.0, so `HTTP/3.1` is a parser
    error (400), where uvloop and stdlib answer 505 as for 2.0 (RFC 9110 §15.6.6). The error
    text quotes the request line (`Invalid HTTP version:` then `b'GET / HTTP/3.1'`, aiohttp
    3.14): a major version other than 1 is then 505. `HTTP/1.2` stays 400 (ERR-08[HTTP/1.2])."""
    if "Invalid HTTP version" not in exc.message:
        return False
    match = _QUOTED_VERSION.search(exc.message)
    return match is not None and match[1] != "1"


async def _handle_connect(request: web.BaseRequest) -> web.StreamResponse:
    """CONNECT: no tunnel. Its body is framed, then it is answered as any request (a 404)."""
    conn: _Connection = request.protocol  # type: ignore[assignment]  # our protocol factory
    conn._awaiting_header = False
    rejected = await conn._read_connect_body(request)
    # aiohttp types its hook's request BaseRequest; an Application's requests are web.Request.
    return rejected if rejected is not None else await _handle(request)  # type: ignore[arg-type]


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
        reason, headers = conn._late_close(reply, headers)
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
        shared.connections = lambda: self.connections  # --reclaim-idle looks for idle ones

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
        # aiohttp reads a body left unread after an error answer for this long (10 s by
        # default): rule 4's linger limit; the client's FIN ends it sooner.
        lingering_time=LINGER_S,
        max_line_size=MAX_REQUEST_LINE_BYTES,  # the request-target, as uvloop counts it
        max_field_size=MAX_FIELD_BYTES,
        access_log=None,
        logger=_QUIET_LOGGER,
    )
    await runner.setup()
    try:
        reclaim = None
        if runtime.options.reclaim_idle:
            reclaim = lambda count: reclaim_longest_idle(shared.connections(), count)  # noqa: E731
        site = DeadlineSockSite(
            runner,
            runtime.listener,
            ssl_context=runtime.ssl_context,
            backlog=LISTEN_BACKLOG,
            handshake_timeout_s=shared.header_timeout_s,  # slowloris on the TLS handshake
            counters=runtime.counters,
            backoff=runtime.accept_backoff(),
            slots=runtime.slots,
            reclaim=reclaim,
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
