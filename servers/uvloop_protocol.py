"""One HTTP/1.1 connection of the uvloop server: an asyncio.Protocol fed by httptools (llhttp).

State is grouped by lifetime, as in uvicorn's httptools_impl (which composes a `FlowControl`
rather than inheriting one): `uvloop_wire.ServerState` lives as long as the server; the
protocol's fields and the two objects it composes, its `uvloop_parsing.HeadParser` and its
`uvloop_timers.Deadline`, as long as the socket; and the head parser's request fields for one
request while it is parsed. Requests are answered synchronously from `on_message_complete`: no
task or coroutine per request; a delayed reply (/sleep) is a `call_later`, during which later
pipelined requests wait in a bounded queue (reading pauses when it is long, and nothing is
written while the transport asks us to pause writing).

Timers: one lazily re-armed deadline per connection (`uvloop_timers.Deadline`), filed on a
server-wide wheel rather than a loop timer of its own. Kinds: the header deadline H (from
accept or from the first byte of a request to the end of its headers, never restarted by a
trickle), the body stall limit H (restarted by progress), the idle timeout T (from the last
response handed to the transport with nothing pending), the close linger, and a send limit
while the client does not read. Nothing runs while a handler runs (rule 6).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import httptools

from servers.endpoints import Reply, RequestContext
from servers.framing import (
    MAX_HEADER_BYTES,
    MAX_REQUEST_LINE_BYTES,
    BodyReader,
    ProtocolError,
)
from servers.policy import LINGER_S, CloseReason
from servers.uvloop_parsing import (
    BODY,
    CLOSE_TOKENS,
    HEAD,
    HTTP_11,
    IDLE,
    NO_TOKENS,
    HeadParser,
    StopParsing,
)
from servers.uvloop_timers import Deadline, DeadlineKind
from servers.uvloop_wire import CONTINUE_100, COPY_LIMIT, Decided, ServerState

SEND_TIMEOUT_S = 60.0  # a client that reads nothing for this long while we wait to write
PAUSE_QUEUE = 64  # unanswered pipelined requests that pause reading
RESUME_QUEUE = 16  # ... and resume it


class HttpProtocol(asyncio.Protocol):
    """Parses, queues and answers the requests of one connection, then closes it gracefully."""

    __slots__ = (
        "_s", "_memo", "_limit", "_transport", "_parser", "_id", "_half_close",
        "_served", "_parsed", "_queue", "_busy", "_delay", "_write_paused", "_read_paused",
        "_closing", "_input_done", "_dead", "_eof", "_lost", "_reason", "_phase", "_responded",
        "_continue_due", "_raw_head", "_plain", "_numbered", "_count", "_idle_s", "_body", "_held",
        "_feeding", "_surplus", "_close_asked", "_loop", "_deadline", "_head",
    )  # fmt: skip

    def __init__(self, state: ServerState) -> None:
        self._s = state
        self._id = 0  # the connection's id once counted (counted_as, or connection_made)
        self._memo = state.memo.entries  # shortcuts for the hot path
        self._plain = state.plain
        self._numbered = state.numbered
        self._idle_s = state.idle_s
        self._limit = state.request_limit
        self._loop = state.loop
        self._deadline = Deadline(state.loop, state.wheel, self._expire)
        self._head = HeadParser(self, state.tokens)  # the parser's callbacks up to the headers
        self._parser = self._head.parser
        self._transport: Any = None
        self._served = self._parsed = 0  # requests answered / whose headers were parsed
        self._queue: deque[tuple[Any, ...]] = deque()  # parsed, not yet answered
        self._busy = False  # a delayed reply is pending (its timer is _delay)
        self._delay: asyncio.TimerHandle | None = None
        self._write_paused = self._read_paused = False
        self._closing = False  # a close was decided: input is discarded from now on
        self._input_done = False  # no request after the current one will be parsed
        self._dead = False  # the parser stopped (error or last request): input is discarded
        self._eof = self._lost = False
        self._reason: CloseReason | None = None
        self._phase = IDLE
        self._responded = False  # a response was written since the idle deadline was set
        self._continue_due = False  # a 100 Continue waits for earlier responses
        self._raw_head = 0  # bytes received in whole reads during the current header section
        self._body: BodyReader | None = None  # frames a body llhttp skipped (Upgrade, CONNECT)
        self._held: tuple[Any, ...] = ()  # ... and the request it belongs to, answered after it
        self._feeding = False  # inside feed_data: the rest of this read is not parsed yet
        self._surplus = False  # input after the last request was received (rule 4: linger)
        self._close_asked = False  # a close the client asked for waits for the end of the read

    # -- connection lifetime ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        # Rule 10 needs no call here: uvloop sets TCP_NODELAY on every accepted TCP socket
        # (TCPTransport.new -> uv_tcp_nodelay), which saves a getsockname and a setsockopt.
        # asyncio types the argument BaseTransport; a stream server's transport is a Transport.
        self._half_close = transport.can_write_eof()  # type: ignore[attr-defined]
        s = self._s
        if not self._id:  # over TLS, tls_accept counted the connection at accept
            self._id = s.counters.connection_opened()
        self._count = s.counters.request_served
        s.connections.add(self)
        self._deadline.set("header", s.header_s)

    def counted_as(self, connection_id: int) -> None:
        """tls_accept.TLSAccept counted this connection at accept, before its handshake."""
        self._id = connection_id

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return  # once: a TLS connection's end can be replayed (tls_accept) and reported
        self._lost = True
        self._deadline.cancel()
        if self._delay is not None:
            self._delay.cancel()
            self._delay = None
        self._queue.clear()
        self._s.counters.connection_closed(self._reason or CloseReason.CLIENT_CLOSED)
        self._s.connections.discard(self)
        # Break the connection's reference cycles (the parser holds bound methods of the head
        # parser and of this protocol, which hold it), so that reference counting frees it
        # now: left to the cyclic collector, about 15 objects a connection cost a tenth of a
        # close-mode request. Nothing parses after connection_lost.
        self._head.release()
        del self._parser

    def eof_received(self) -> bool | None:
        """Client shut its write side: finish what is pending (ROB-02), then close."""
        if not self._closing and (self._busy or self._queue):
            self._eof = True
            return True
        self._closing = True
        self._reason = self._reason or CloseReason.CLIENT_CLOSED
        return None  # the transport closes itself

    def pause_writing(self) -> None:
        self._write_paused = True
        if not self._closing:
            self._arm_timer()

    def resume_writing(self) -> None:
        self._write_paused = False
        if not self._closing and not self._lost:
            self._responded = True  # the idle period starts once the client reads again
            self._drain_queue()
            self._arm_timer()

    def shutdown(self) -> None:
        """Server stop (counted as shutdown unless decided): idle, close now; with a delayed
        reply in hand, _finish_delayed still sends it, with the shutdown decision."""
        self._reason = self._reason or CloseReason.SHUTDOWN
        if self._busy and not (self._closing or self._lost):
            return
        self._closing = True
        if not self._lost:
            self._transport.close()

    def abort(self) -> None:
        if not self._lost:
            self._transport.abort()

    def idle_deadline(self) -> float | None:
        """`servers.slots.Reclaimable`: the idle deadline while waiting between requests (the
        idle timer runs only then: nothing queued, pending or being written)."""
        deadline = self._deadline
        if deadline.kind != "idle" or self._closing or self._lost:
            return None
        return deadline.at

    def reclaim(self) -> None:
        """--reclaim-idle (rule 11): close this idle connection now, as its idle timer would."""
        self._closing = True
        self._reason = CloseReason.RECLAIMED
        self._transport.close()  # nothing is buffered: a FIN
        self._deadline.set("abort", LINGER_S)

    # -- input --------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closing or self._dead:
            self._surplus = True
            return  # lingering, or the parser stopped: read and discard
        self._feeding = True
        if self._body is not None:
            data = self._frame_body(data)
            if self._closing and data:
                self._surplus = True  # bytes after the framed body: rule 4 lingers for them
            if not data or self._closing or self._dead:
                self._feeding = False
                if not self._end_of_read():
                    self._arm_timer()
                return
        # The same header section still unfinished after a whole read: count that read.
        same_head = self._parsed if self._phase == HEAD else -1
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._after_upgrade(data[exc.args[0] :])
        except httptools.HttpParserError as exc:
            self._parse_error(exc)
        self._feeding = False
        if self._end_of_read():
            return
        if self._phase == HEAD and same_head == self._parsed:
            self._check_raw_head(len(data))
        self._arm_timer()

    def _end_of_read(self) -> bool:
        """After a whole read: a close the client asked for happens now (at once, or lingering
        when more input came). True if the connection is closing."""
        if self._closing:
            if self._close_asked:  # the whole read is parsed: was anything after the request?
                self._close_asked = False
                self._close_or_linger(True)
            return True
        return False

    def _after_upgrade(self, rest: bytes) -> None:
        """No protocol switch: httptools resumed its parser after the head, so its body (framed
        here, as for any request) and then the next requests follow."""
        while rest and not (self._closing or self._dead):
            if self._body is not None:
                rest = self._frame_body(rest)
                continue
            try:
                self._parser.feed_data(rest)
                return
            except httptools.HttpParserUpgrade as exc:
                rest = rest[exc.args[0] :]
            except httptools.HttpParserError as exc:
                self._parse_error(exc)

    def _frame_body(self, data: bytes) -> bytes:
        """Feed the body llhttp skipped; once it is complete, answer its request (in turn) and
        return the bytes after it. A malformed chunked body is answered with its error."""
        body = self._body
        assert body is not None
        try:
            used = body.feed(data)
        except ProtocolError as exc:
            self._body, self._held = None, ()
            self._dead = self._input_done = True
            self._phase = IDLE
            self._enqueue((None, exc.status, exc.detail, None, ""))
            return b""
        if used is None:
            return b""
        held, self._body, self._held = self._held, None, ()
        self._phase = IDLE
        if self._busy or self._queue or self._write_paused:
            self._enqueue(held)
        else:
            self._serve(*held)
        return data[used:]

    def _parse_error(self, exc: httptools.HttpParserError) -> None:
        """Answer a malformed request with its status in turn; stop reading requests."""
        between_requests = self._phase == IDLE
        ended = self._input_done
        self._surplus = True  # bytes the parser would not take: input that rule 4 lingers for
        self._dead = self._input_done = True
        self._phase = IDLE
        if self._closing or (ended and between_requests):
            return  # StopParsing, or llhttp's "data after Connection: close": nothing to say
        cause = exc.__context__
        if isinstance(cause, ProtocolError):
            self._enqueue((None, cause.status, cause.detail, None, ""))
        else:
            self._enqueue((None, 400, str(exc) or type(exc).__name__, None, ""))

    def _check_raw_head(self, received: int) -> None:
        """Backstop for memory: httptools buffers an unfinished header line without a limit."""
        self._raw_head += received
        if self._raw_head > MAX_HEADER_BYTES + MAX_REQUEST_LINE_BYTES:
            self._dead = self._input_done = True
            self._phase = IDLE
            status = 431 if self._head.size else 414
            self._enqueue((None, status, "request header section too large", None, ""))

    # -- parser callbacks (HeadOwner: what the head parser tells its connection) --------------

    def head_started(self) -> None:
        if self._input_done or self._closing:
            raise StopParsing
        self._phase = HEAD
        self._raw_head = 0

    def headers_ended(self) -> None:
        self._phase = BODY
        if self._deadline.kind == "header":
            self._deadline.clear()  # met

    def head_parsed(self, last: bool) -> None:
        # headers_ended's two lines, repeated rather than called: this runs for every request.
        self._phase = BODY
        if self._deadline.kind == "header":
            self._deadline.clear()  # met
        self._parsed += 1
        if last or self._parsed >= self._limit:
            self._input_done = True  # the last request this connection will read

    def continue_expected(self) -> None:
        self._continue_due = True
        self._send_continue()

    def on_message_complete(self) -> None:
        head = self._head
        if head.unframed is not None:  # llhttp skipped the body: hold the request until
            self._body = BodyReader(head.unframed)  # _frame_body has read it
            head.unframed = None
            item = (self._parser.get_method(), head.url, head.version, head.tokens)
            self._held = (*item, head.conn)
            return  # still in the BODY phase: the body stall limit and 100 Continue apply
        self._phase = IDLE
        self._continue_due = False
        method = self._parser.get_method()
        if self._busy or self._queue or self._write_paused:
            self._enqueue((method, head.url, head.version, head.tokens, head.conn))
            return
        plain = self._plain
        if plain is not None and head.version is HTTP_11:
            if head.tokens is NO_TOKENS:
                data = plain.get((method, head.url))
                if data is None and self._numbered is not None:  # N limited: by number
                    responses = self._numbered.get((method, head.url))
                    data = None if responses is None else responses[self._served]
                if data is not None:  # what _serve would send, and the connection stays open
                    self._served += 1
                    self._transport.write(data)
                    self._count()
                    self._responded = True
                    return
            elif head.tokens is CLOSE_TOKENS:
                data = self._s.plain_close.get((method, head.url))
                if data is not None:  # what _serve would send, then the close it asked for
                    self._served += 1
                    self._transport.write(data)
                    self._count()
                    self._responded = True
                    self._begin_close(CloseReason.CLIENT_REQUESTED)
                    return
        self._serve(method, head.url, head.version, head.tokens, head.conn)

    # -- answering ----------------------------------------------------------------------------

    def _enqueue(self, item: tuple[Any, ...]) -> None:
        queue = self._queue
        queue.append(item)
        if len(queue) == 1 and not self._busy and not self._write_paused:
            self._drain_queue()
        elif len(queue) >= PAUSE_QUEUE and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()

    def _drain_queue(self) -> None:
        queue = self._queue
        while queue and not (self._busy or self._write_paused or self._closing):
            self._serve(*queue.popleft())
        if self._read_paused and len(queue) <= RESUME_QUEUE and not self._lost:
            self._read_paused = False
            self._transport.resume_reading()

    def _serve(
        self,
        method: bytes | None,
        target: Any,
        version: Any,
        tokens: frozenset[str],
        conn: list[bytes] | None,
    ) -> None:
        """Answer a parsed request, or (method None) a protocol error: status, detail."""
        if method is None:
            self._transport.write(self._s.encoder.error(target, version))
            self._begin_close(CloseReason.ERROR)
            return
        self._served += 1
        entry = self._memo.get((method, target))
        if entry is None or self._s.log:
            reply, cached = self._route(method.decode("ascii"), target.decode("latin-1"), conn)
        else:
            reply, cached = entry
        if reply.delay_s > 0:
            self._busy = True
            self._deadline.clear()  # rule 6: no timer cuts a running handler
            self._delay = self._loop.call_later(
                reply.delay_s, self._finish_delayed, method, version, tokens, reply, cached
            )
        else:
            data = self._respond(method, version, tokens, reply, cached)
            if self._plain is not None and data is not None and version is HTTP_11 and entry:
                if tokens is NO_TOKENS and not self._closing:
                    self._s.remember_plain(method, target, data, number=self._served)
                elif tokens is CLOSE_TOKENS and self._reason is CloseReason.CLIENT_REQUESTED:
                    self._s.remember_plain(method, target, data, close=True)

    def _route(
        self, method: str, target: str, conn: list[bytes] | None
    ) -> tuple[Reply, dict[bytes, bytes] | None]:
        """The slow path: a RequestContext, route() through the memo, --log-connections."""
        s = self._s
        # The peer address is looked up here, not at accept: most requests never need it.
        peer = self._transport.get_extra_info("peername") or ("", 0)
        ctx = RequestContext(str(peer[0]), int(peer[1]), self._id, self._served)
        reply = s.memo.route(method, target, ctx)
        if s.log:
            connection = b", ".join(conn).decode("latin-1") if conn else ""
            s.runtime.log_request(ctx, method, target, connection)
        entry = s.memo.entries.get((method.encode("ascii"), target.encode("latin-1")))
        return reply, (entry[1] if entry is not None and entry[0] is reply else None)

    def _respond(
        self,
        method: bytes,
        version: tuple[int, int],
        tokens: frozenset[str],
        reply: Reply,
        cached: dict[bytes, bytes] | None,
        decided: Decided | None = None,
    ) -> bytes | None:
        """Write the response; return its bytes when they are cached.

        `decided` overrides the policy (the server's shutdown decision)."""
        s = self._s
        keep, block, reason = decided or s.encoder.decide(
            self._served, version, tokens, reply.close
        )
        data = cached.get(block) if cached is not None else None
        if data is None:
            data = self._encode(method, reply, cached, block)
        self._transport.write(data)
        self._count()
        self._responded = True
        if not keep:
            self._begin_close(reason)
        return data if cached is not None else None

    def _encode(
        self, method: bytes, reply: Reply, cached: dict[bytes, bytes] | None, block: bytes
    ) -> bytes:
        """Response bytes not cached yet; a large body is written here, after its head."""
        enc = self._s.encoder
        head_only = method == b"HEAD"
        if cached is None and len(reply.body) > COPY_LIMIT and not head_only:
            head, body = enc.encode(
                reply.status, reply.content_type, reply.body, block, False, reply.headers
            )
            self._transport.write(head)  # not copied behind its head
            return body
        return self._s.memo.response(reply, cached, block, head_only)

    def _finish_delayed(  # the arguments of _respond
        self, method: bytes, version: Any, tokens: frozenset[str], reply: Reply, cached: Any
    ) -> None:
        self._delay = None
        self._busy = False
        if self._lost or self._closing:
            return
        if self._s.stopping:  # answered, then closed (the close reason is already SHUTDOWN)
            self._respond(method, version, tokens, reply, None, self._s.encoder.shutdown)
            return
        self._respond(method, version, tokens, reply, cached)
        if self._closing:
            return
        self._drain_queue()
        if self._closing:
            return
        if self._eof and not (self._busy or self._queue):
            self._begin_close(CloseReason.CLIENT_CLOSED)
            return
        self._arm_timer()

    def _send_continue(self) -> None:
        """100 Continue, unless earlier responses are still owed (they must come first)."""
        if self._continue_due and not (self._busy or self._queue or self._write_paused):
            self._continue_due = False
            self._transport.write(CONTINUE_100)

    # -- closing ------------------------------------------------------------------------------

    def _begin_close(self, reason: CloseReason | None) -> None:
        """Rule 4: after a close the client asked for, with no input after its request, close
        as soon as the response is written (nginx's `lingering_close auto`); otherwise FIN
        after the last response, read and discard until EOF or the linger."""
        self._closing = True
        self._reason = self._reason or reason or CloseReason.ERROR
        self._queue.clear()
        asked = reason is CloseReason.CLIENT_REQUESTED
        if asked and self._feeding:
            self._close_asked = True  # data_received decides once the whole read is parsed
        else:
            self._close_or_linger(asked)

    def _close_or_linger(self, asked: bool) -> None:
        transport = self._transport
        if asked and not self._surplus:  # the client sends nothing more: no FIN to wait for
            transport.close()  # flushes what is buffered, then closes
            if not self._half_close or transport.get_write_buffer_size():
                self._deadline.set("abort", LINGER_S)  # TLS, or a client that reads nothing
        elif self._half_close and not self._eof:
            transport.write_eof()
            if self._read_paused:
                self._read_paused = False
                transport.resume_reading()
            self._deadline.set("linger", LINGER_S)
        else:  # TLS cannot half-close; or the client already did
            transport.close()
            self._deadline.set("abort", LINGER_S)

    # -- timers -------------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        """After input or a response: pick the deadline that the connection's state calls for."""
        if self._closing:
            return  # the linger (or abort) deadline stays
        deadline = self._deadline
        if self._write_paused:
            if deadline.kind != "send" or deadline.at is None:
                deadline.set("send", SEND_TIMEOUT_S)
        elif self._busy or self._queue:
            deadline.clear()
        elif self._phase == HEAD:
            if deadline.kind != "header" or deadline.at is None:
                deadline.set("header", self._s.header_s)
        elif self._phase == BODY:
            self._send_continue()
            deadline.set("body", self._s.header_s)
        elif self._responded:  # the keep-alive hot path: deadline.set("idle", T), inlined
            self._responded = False
            when = self._loop.time() + self._idle_s
            deadline.at, deadline.kind = when, "idle"
            if deadline.slot is None or when <= deadline.slot_from:
                deadline.refile(when)

    def _expire(self, kind: DeadlineKind) -> None:
        """Silent close (no 408): idle, header or body deadline; abort a client that stalls."""
        if kind in ("linger", "idle", "header", "body"):
            if not self._closing:
                self._closing = True
                idle = kind == "idle"
                self._reason = CloseReason.IDLE_TIMEOUT if idle else CloseReason.HEADER_TIMEOUT
            self._transport.close()  # flushes what is buffered, then closes
            self._deadline.set("abort", LINGER_S)
        else:  # "abort" after a close that could not flush, or "send": the client reads nothing
            self._reason = self._reason or CloseReason.ERROR
            self._closing = True
            self._transport.abort()
