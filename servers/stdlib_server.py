"""http.server done right: ThreadingHTTPServer with keep-alive that follows docs/keepalive-spec.md.

CPython 3.11's http.server gets the skeleton right (a thread per connection, buffered `rfile`,
`send_response`/`send_header`, `handle()` looping on `close_connection`) and keep-alive wrong
(spec "How known servers differ"). This module keeps the skeleton and fixes each gap:

- No `Connection` header and a whole-value `Connection` compare: persistence is decided by
  `KeepAlivePolicy.decide` on the token list, and every response says `keep-alive` (with
  `Keep-Alive: timeout=T, max=R`) or `close`.
- Timeout restarts on every `recv()` (no slowloris protection): reads go through
  `DeadlineSocketIO`, which stops at an absolute deadline; H runs from accept, or from the first
  byte of a later request, to the end of its header section. Between requests the idle timeout
  T runs from the end of the response (plus IDLE_GRACE_S, so that "never before T" holds as the
  client measures it); on expiry the connection is closed silently (no 408). Bytes already
  buffered (pipelined requests) are served without a recv(), so the idle timer never misfires.
- No chunked request bodies, and no limit on the header section as a whole: `parse_request` is
  replaced by one that validates through `servers.framing`, as the uvloop server does, so both
  reject the same requests with the same status (400/414/431/501/505), in llhttp's order (CR
  and LF bytes before a request skipped, a second Host at the next line, the version's 505
  after the header section, a line cut short by EOF 400 when llhttp would already have said
  so: `stdlib_io.read_line`, `framing.request_line_prefix_error`); bodies are drained
  (Content-Length or chunked, with extensions and trailers), so an unread body never
  desynchronises the connection. Expect: 100-continue uses http.server's handle_expect_100.
- Nagle on, and headers and body written separately: TCP_NODELAY on every accepted socket and
  one `sendall()` per response.
- Connections are closed gracefully (half-close, drain, close) so the last response survives
  unread pipelined input, except when the client asked to close and sent nothing after that
  request: then at once, as nginx does (rule 4 as amended); TLS handshakes happen in the
  connection's thread, under the header deadline, never in the accept loop.
- A failed accept() (EMFILE at the descriptor limit) makes socketserver select the
  still-readable listener again at once, a busy loop: the accept thread backs off instead
  (`servers.accept`, one log line and one `accept_backoffs` count per episode).
- `--max-connections N` (rule 11): at most N connection threads, a bounded pool; the accept
  thread waits for a free one before accept(), so the backlog holds the rest; `--reclaim-idle`
  shuts the longest-idle keep-alive connection for a waiting one (`servers.slots`).
- Stopping drops every connection with the process: at SIGTERM a request being handled is
  answered (with `Connection: close`) and connections that wait for a request end at once
  (`servers.stdlib_stop`), as on the other two servers.

DEVIATIONS: none. Every conformance case is met; the dict below is read by the test suite.
"""

from __future__ import annotations

import contextlib
import io
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from servers.endpoints import STATUSES_WITHOUT_BODY, TEXT, Reply, RequestContext, route
from servers.framing import (
    HTTP_09,
    MAX_HEADER_BYTES,
    MAX_REQUEST_LINE_BYTES,
    TWO_HOSTS,
    BodyFraming,
    BodyKind,
    BodyReader,
    FramingFields,
    ProtocolError,
    body_framing,
    check_version,
    field_line_prefix_error,
    parse_field_line,
    parse_request_line,
)
from servers.policy import (
    CloseReason,
    KeepAlivePolicy,
    connection_tokens,
    error_decision,
    handshake_close_reason,
    shutdown_decision,
)
from servers.runtime import SHUTDOWN_GRACE_S, Runtime, set_nodelay
from servers.slots import RECLAIM_RETRY_S, Slots, reclaim_longest_idle
from servers.stdlib_io import (
    ClientGone,
    DeadlineSocketIO,
    SendallWriter,
    close_at_once,
    discard_body,
    graceful_close,
    read_line,
    read_request_line,
)
from servers.stdlib_stop import StopAware, StopBook

DEVIATIONS: dict[str, str] = {}

RBUFSIZE = 64 * 1024  # rfile buffer: several pipelined requests per recv()
WRITE_TIMEOUT_S = 60.0  # a client that stops reading a response does not hold a thread forever
# Rule 5 says never close before T. The client starts its clock when it has *read* the response,
# a little after our sendall() returned (later still on a loaded machine), so the server waits
# this much longer to make "not before T" hold from the client's side too.
IDLE_GRACE_S = 0.05
SLOT_POLL_S = RECLAIM_RETRY_S  # a waiting accept thread looks again for a stop, an idle one
_LINE_END = b"\r\n"
_FRAMING_FIELDS = frozenset((b"content-length", b"transfer-encoding"))


class KeepAliveHandler(StopAware, BaseHTTPRequestHandler):
    """One connection: requests are read, answered and drained one at a time (so pipelining
    is in order and bounded by the read buffer), until the policy or the client ends it."""

    protocol_version = "HTTP/1.1"
    server_version = "keepalive-bench/stdlib"
    # http.server omits the status line for "HTTP/0.9"; a garbage request line must still get a
    # real "HTTP/1.1 400" (ERR-01), so errors before the version is parsed use this one.
    default_request_version = "HTTP/1.1"
    server: KeepAliveHTTPServer
    rfile: io.BufferedReader  # built in setup(): `peek` and `read1` need a buffered reader
    reclaimed = False  # --reclaim-idle closed it while idle (rule 11)

    # -- connection lifetime ---------------------------------------------------------------

    def setup(self) -> None:
        """Count the connection, finish TLS here (this thread), build rfile/wfile."""
        self.accepted_at = time.monotonic()
        self.runtime = self.server.runtime
        self.policy = self.server.policy
        self.header_timeout_s = self.runtime.options.effective_header_timeout_s
        self.connection_id = self.runtime.counters.connection_opened()
        self.close_reason = CloseReason.ERROR
        self.requests_on_connection = 0
        self.response_done_at = self.accepted_at
        self.connection = self.request
        self.tls_ok = self._start_tls()
        self.reader = DeadlineSocketIO(self.connection, "rb")
        self.rfile = io.BufferedReader(self.reader, RBUFSIZE)
        self.wfile = SendallWriter(self.connection)
        self.server.book.opened(self)

    def _start_tls(self) -> bool:
        """TLS handshake under the header deadline, so a silent client costs one thread, not
        the accept loop."""
        context = self.runtime.ssl_context
        if context is None:
            return True
        try:
            self.connection = context.wrap_socket(
                self.request, server_side=True, do_handshake_on_connect=False
            )
            deadline = self.accepted_at + self.header_timeout_s
            self.connection.settimeout(max(deadline - time.monotonic(), 0.001))
            self.connection.do_handshake()
        except OSError as exc:  # ssl.SSLError included: not TLS, bad version, unknown CA...
            self.close_reason = handshake_close_reason(exc)
            return False
        self.runtime.counters.tls_handshake_done(resumed=bool(self.connection.session_reused))
        return True

    def handle(self) -> None:
        if self.tls_ok:
            super().handle()  # handle_one_request() until close_connection

    def finish(self) -> None:
        """The close rule 4 calls for, and the close counter, whatever ended the connection."""
        try:
            asked = self.close_reason is CloseReason.CLIENT_REQUESTED
            at_once = asked and not self._input_waiting()
            self.rfile.close()
            if self.ended_by_stop or self.reclaimed:
                self.connection.close()  # nothing owed; a TLS close_notify cannot be sent now
            elif at_once:
                close_at_once(self.connection)  # rule 4: the client said it sends no more
            else:
                graceful_close(self.connection)
        finally:
            self.runtime.counters.connection_closed(self.close_reason)
            self.server.book.closed(self)

    def _input_waiting(self) -> bool:
        """Bytes after the last request, buffered here or in the kernel (read without waiting:
        a deadline in the past makes the next recv() non-blocking)."""
        self.reader.deadline = 0.0
        try:
            return bool(self.rfile.peek(1))
        except (OSError, ValueError):  # TimeoutError: nothing there; or the socket is gone
            return False

    # -- connection slots (rule 11) --------------------------------------------------------

    def idle_deadline(self) -> float | None:
        """`servers.slots.Reclaimable`: the idle deadline while this connection, answered at
        least once, waits for its next request's first byte (read from the accept thread)."""
        if not self.waiting or self.requests_on_connection == 0 or self.reclaimed:
            return None
        return self.response_done_at + self.policy.timeout_s

    def reclaim(self) -> None:
        """--reclaim-idle, from the accept thread: FIN now (the write side shut; nothing is
        owed) and wake the blocked read with EOF; `finish` closes and frees the slot."""
        self.reclaimed = True
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.connection, socket.SHUT_RDWR)

    # -- one request -----------------------------------------------------------------------

    def handle_one_request(self) -> None:
        """Wait for a request, parse it, drain its body, answer it; map failures to a close
        reason. Replaces http.server's, which trusts its per-recv timeout and never counts."""
        self.close_connection = True
        # A stale HEAD must not suppress the body of an error response. None, as http.server's
        # own parse_request sets it, though typeshed declares `command: str`.
        self.command = None  # type: ignore[assignment]
        self.requestline = ""
        self._headers_buffer: list[bytes] = []
        self._timeout_reason = CloseReason.HEADER_TIMEOUT
        try:
            if not self._wait_for_request():
                return
            framing = self.parse_request()
            self.in_flight = True  # until answered, or at a stop until the connection closes
            self._read_body(framing)
            self._answer(self._route())
            self.in_flight = self.close_connection
        except ProtocolError as exc:
            self.send_error(exc.status, explain=exc.detail)
        except TimeoutError:
            self.close_reason = self._timeout_reason
        except (ClientGone, ConnectionError):
            self.close_reason = CloseReason.CLIENT_CLOSED
        except OSError:  # TLS errors, write timeouts after a partial send...
            self.close_reason = CloseReason.ERROR

    def _wait_for_request(self) -> bool:
        """The idle phase: T after a response (H from accept for the first request) until a
        first byte; then H runs from that byte. Buffered bytes answer `peek` without a recv()."""
        first = self.requests_on_connection == 0
        if first:
            self.reader.deadline = self.accepted_at + self.header_timeout_s
        else:
            self.reader.deadline = self.response_done_at + self.policy.timeout_s + IDLE_GRACE_S
            self._timeout_reason = CloseReason.IDLE_TIMEOUT
        self.waiting = True
        try:
            if not self.rfile.peek(1):
                stopping = self.server.book.stopping  # end_if_waiting() shut our read side
                self.close_reason = CloseReason.SHUTDOWN if stopping else CloseReason.CLIENT_CLOSED
                if self.reclaimed:
                    self.close_reason = CloseReason.RECLAIMED
                return False
        finally:
            self.waiting = False
        if self.reclaimed:  # a request that came as it was reclaimed: the idle-timeout race
            self.close_reason = CloseReason.RECLAIMED
            return False
        if not first:
            self.reader.deadline = time.monotonic() + self.header_timeout_s
        self._timeout_reason = CloseReason.HEADER_TIMEOUT
        return True

    # http.server's returns bool; ours raises to reject, and only handle_one_request calls it.
    def parse_request(self) -> BodyFraming:  # type: ignore[override]
        """Request line and header section under the header deadline, validated by
        `servers.framing` in llhttp's order (the version's 505 after the header section).
        Sets http.server's attributes (command, path, request_version, headers) and returns
        how the body is delimited; raises ProtocolError to reject."""
        self.raw_requestline = read_request_line(self.rfile, MAX_REQUEST_LINE_BYTES + 2)
        bare_lf = not self.raw_requestline.endswith(_LINE_END)
        line = self.raw_requestline[: -1 if bare_lf else -2]
        self.requestline = line.decode("latin-1")
        self.command, self.path, self.version = parse_request_line(line)
        if bare_lf and self.version != HTTP_09:  # llhttp takes a bare LF after `GET /x` only
            raise ProtocolError(400, "request line ended by a bare LF")
        self.request_version = f"HTTP/{self.version[0]}.{self.version[1]}"
        fields = self._read_header_fields()
        check_version(self.version)
        self.headers = self.MessageClass()
        for name, value in fields:
            self.headers[name] = value
        lowered = [(name.lower(), value) for name, value in fields]
        self.connection_values = [v for n, v in lowered if n == "connection"]
        self.tokens = connection_tokens(self.connection_values)
        return body_framing(self.version, lowered)

    def _read_header_fields(self) -> list[tuple[str, str]]:
        """(name, value) pairs in received order; 431 once the section exceeds its limit; a
        second Host field is a 400 before anything else (as aiohttp's parser decides)."""
        too_large = ProtocolError(431, "header section too large")
        fields: list[tuple[str, str]] = []
        framing = FramingFields()  # llhttp's checks as it reads: Content-Length, TE

        def cut_short(prefix: bytes) -> ProtocolError | None:
            return field_line_prefix_error(prefix) or framing.prefix_error(prefix)

        total = hosts = 0
        while True:
            limit = MAX_HEADER_BYTES - total
            line = read_line(self.rfile, limit, lambda _: too_large, cut_short)
            total += len(line)
            if line == _LINE_END:
                return fields
            name, value = parse_field_line(line[:-2])  # also rejects obs-fold and `\r\r\n`
            key = name.lower()
            if key == b"host":
                hosts += 1
                if hosts > 1:
                    self._reject_at_next_line(ProtocolError(400, TWO_HOSTS))
            elif key in _FRAMING_FIELDS:
                raw = line[:-2].partition(b":")[2]
                empty = framing.check(name, raw)
                if empty is not None:
                    self._reject_at_next_line(empty)
                value = raw.lstrip(b" \t")  # a trailing HTAB is part of a coding (llhttp)
            fields.append((name.decode("ascii"), value.decode("latin-1")))

    def _reject_at_next_line(self, error: ProtocolError) -> None:
        """Raise `error` (a second Host, an empty Content-Length) once the next line starts,
        when llhttp reports it (to aiohttp's and uvloop's parsers a field is done only at the
        next one's first byte, or at the end of the section: a lone CR is not enough); at EOF
        before that, nothing is answered."""
        first = self.rfile.peek(1)[:1]
        if first == b"\r":
            self.rfile.read(1)
            first = self.rfile.peek(1)[:1]
        if not first:
            raise ClientGone
        raise error

    def _read_body(self, framing: BodyFraming) -> None:
        """Drain the body (rule 8), after `100 Continue` if the client waits for it. Silence
        for H between reads ends the connection; a long upload that keeps moving is never cut
        by a fixed deadline."""
        if framing.kind == BodyKind.NONE:
            return
        self.reader.deadline = None
        self.connection.settimeout(self.header_timeout_s)
        self._timeout_reason = CloseReason.IDLE_TIMEOUT  # the client went quiet mid-request
        expect = self.headers.get("Expect", "").strip().lower()
        if expect == "100-continue" and self.version >= (1, 1):
            self.handle_expect_100()  # http.server's own: "HTTP/1.1 100 Continue"
        discard_body(self.rfile, BodyReader(framing))

    # -- answering -------------------------------------------------------------------------

    def _route(self) -> tuple[RequestContext, Reply]:
        """Ask the shared endpoints; a delay is slept in this connection's thread (rule 6:
        nothing is reading, so no timer can cut it)."""
        self.requests_on_connection += 1
        host, port = self.client_address[:2]
        ctx = RequestContext(host, port, self.connection_id, self.requests_on_connection)
        reply = route(self.command, self.path, ctx)
        # Logged at dispatch, as the other servers do: before a delayed reply, not after it.
        self.runtime.log_request(ctx, self.command, self.path, ", ".join(self.connection_values))
        if reply.delay_s:
            time.sleep(reply.delay_s)
        return ctx, reply

    def _answer(self, routed: tuple[RequestContext, Reply]) -> None:
        ctx, reply = routed
        if self.server.book.stopping:
            decision = shutdown_decision()
        else:
            decision = self.policy.decide(
                ctx.request_number, self.version, self.tokens, handler_close=reply.close
            )
        self.send_response(reply.status)
        body = reply.body
        if reply.status in STATUSES_WITHOUT_BODY:
            body = b""
        else:
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in reply.headers:
                self.send_header(name, value)
        for name, value in decision.headers:
            self.send_header(name, value)  # also sets close_connection, as in http.server
        self._end_headers_with_body(b"" if self.command == "HEAD" else body)
        self.response_done_at = time.monotonic()
        self.close_connection = not decision.keep_alive
        if decision.close_reason is not None:
            self.close_reason = decision.close_reason
        self.runtime.counters.request_served()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's send_error, but a short text body, `Connection: close` from the
        policy, and one write. The connection then closes gracefully (rule 9)."""
        phrase = message or self.responses.get(code, ("", ""))[0]
        body = f"{code} {phrase}: {explain or phrase}\n".encode("latin-1", "replace")
        self._headers_buffer = []
        self.request_version = self.default_request_version  # a status line even for HTTP/0.9
        self.send_response(code, message)
        self.send_header("Content-Type", TEXT)
        self.send_header("Content-Length", str(len(body)))
        for name, value in error_decision().headers:
            self.send_header(name, value)
        self.close_connection = True
        self.close_reason = CloseReason.ERROR
        with contextlib.suppress(OSError):  # the client is gone: nothing more to tell it
            self._end_headers_with_body(b"" if self.command == "HEAD" else body)

    def _end_headers_with_body(self, body: bytes) -> None:
        """end_headers(), with the body in the same buffer: one sendall() per response."""
        self.reader.deadline = None
        self.connection.settimeout(WRITE_TIMEOUT_S)
        self._timeout_reason = CloseReason.ERROR
        self._headers_buffer.append(b"\r\n")
        if body:
            self._headers_buffer.append(body)
        self.flush_headers()

    # -- http.server defaults that do not fit ----------------------------------------------

    def version_string(self) -> str:
        return self.server_version  # no " Python/3.11" suffix

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silent, and skips formatting a line per response: stderr belongs to
        --log-connections (Runtime.log_request, called in _answer)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        """Silent (log_error too): stderr belongs to --log-connections."""


class KeepAliveHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer on the runtime's already-bound listener."""

    daemon_threads = True  # a connection in keep-alive never delays shutdown

    def __init__(self, runtime: Runtime) -> None:
        address = runtime.listener.getsockname()
        super().__init__(address[:2], KeepAliveHandler, bind_and_activate=False)
        self.socket.close()  # the unbound socket TCPServer made; adopt the runtime's instead
        self.socket = runtime.listener
        self.server_address = address
        self.server_name, self.server_port = str(address[0]), int(address[1])
        self.runtime = runtime
        self.policy: KeepAlivePolicy = runtime.policy
        self.book = StopBook()
        self.backoff = runtime.accept_backoff()
        self.slots = runtime.slots
        self.stopping = False  # set before serve_forever is told to stop: a slot wait ends

    def get_request(self) -> tuple[Any, Any]:
        """accept() plus TCP_NODELAY (rule 10); TLS is left to the connection's thread.
        A failed accept (EMFILE...) pauses this thread, which only accepts, instead of letting
        serve_forever select the still-readable listener again at once (`servers.accept`).
        With --max-connections a slot is taken first (`_take_slot`: the pool is bounded)."""
        if self.slots is not None:
            self._take_slot(self.slots)
        try:
            sock, address = self.socket.accept()
        except OSError as exc:
            if self.slots is not None:
                self.slots.release()  # taken for a connection that was not accepted
            self.backoff.pause_thread(exc)
            raise  # socketserver ignores it and selects again
        set_nodelay(sock)
        return sock, address

    def _take_slot(self, slots: Slots) -> None:
        """Rule 11: wait (not accepting: the backlog holds the newcomers) until a connection
        thread is free. With --reclaim-idle, close the longest-idle keep-alive connection for
        it, one at a time. OSError when the server stops meanwhile (socketserver ignores it)."""
        if slots.take_within(0):
            return
        self.runtime.counters.accept_paused()
        reclaim = self.runtime.options.reclaim_idle
        while True:
            if reclaim:
                open_now = cast(list[KeepAliveHandler], self.book.snapshot())
                if not any(conn.reclaimed for conn in open_now):
                    reclaim_longest_idle(open_now, 1)
            if slots.take_within(SLOT_POLL_S):
                return
            if self.stopping:
                raise ConnectionAbortedError("the server is stopping")

    def shutdown(self) -> None:
        self.stopping = True
        super().shutdown()

    def shutdown_request(self, request: Any) -> None:
        """The handler has already closed gracefully; skip TCPServer's abrupt shutdown."""
        self.close_request(request)


def serve(runtime: Runtime) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting, let requests being handled be
    answered (with `Connection: close`, up to SHUTDOWN_GRACE_S) and return (exit status 0).
    Idle keep-alive connections end with the process: their threads are daemons."""
    server = KeepAliveHTTPServer(runtime)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    accept_loop = threading.Thread(target=server.serve_forever, name="accept", daemon=True)
    accept_loop.start()
    runtime.announce_ready()
    while not stop.wait(1.0):
        pass
    server.shutdown()  # stop accepting; waits for serve_forever to return
    server.book.stop(SHUTDOWN_GRACE_S)
    server.server_close()
