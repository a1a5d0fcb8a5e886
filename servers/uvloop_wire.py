"""Server-lifetime state of the uvloop server: response bytes, memoised decisions and replies.

Kept apart from the protocol so that the hot path there is one `decide()` dictionary lookup and
one `bytes.join`: the status line (with the `Server` header), the `Content-Type` line and the
policy's `Connection`/`Keep-Alive` block are computed once and reused for every response.
Header order: status line, `Server`, `Content-Type`, `Content-Length`, then the policy's headers.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from servers.counters import Counters
from servers.endpoints import STATUSES_WITHOUT_BODY, Reply, RequestContext, replayable, route
from servers.policy import (
    CloseReason,
    KeepAlivePolicy,
    connection_tokens,
    error_decision,
    shutdown_decision,
)
from servers.runtime import Runtime
from servers.uvloop_timers import DeadlineWheel

SERVER_NAME = b"keepalive-bench/uvloop"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
# Responses that never carry a body, hence no Content-Length either (RFC 9110 §6.4.1, §8.6).
# Above this, a body is written after its head rather than copied into one buffer.
COPY_LIMIT = 64 * 1024
# Memo sizes: when one grows past this it is dropped (large N has one key per request number).
MAX_MEMO = 4096
MEMO_ENTRIES = 256  # remembered targets (ReplyMemo)
MEMO_TARGET_BYTES = 256  # longer targets are routed every time
NUMBERED_MAX = 1000  # N up to this: responses remembered by request number (ServerState)
NUMBERED_TARGETS = 16  # ... for this many targets at most (N responses each)
INTERNAL_ERROR = Reply(500, b"internal error\n", close=True)

Decided = tuple[bool, bytes, CloseReason | None]
_CANONICAL_TOKENS = {
    (close, keep): frozenset({"close"} if close else ()) | frozenset({"keep-alive"} if keep else ())
    for close in (False, True)
    for keep in (False, True)
}
TOKENS_MEMO_BYTES = 64  # longer Connection values are parsed every time


def _status_head(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return b"HTTP/1.1 %d %s\r\nServer: %s\r\n" % (status, phrase.encode(), SERVER_NAME)


STATUS_HEADS: dict[int, bytes] = {status: _status_head(status) for status in range(100, 600)}


def header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    """`Name: value` lines plus the blank line that ends the header section."""
    return "".join(f"{name}: {value}\r\n" for name, value in headers).encode("latin-1") + b"\r\n"


class ResponseEncoder:
    """Server-lifetime: turns a reply plus the policy's decision into response bytes."""

    def __init__(self, policy: KeepAlivePolicy) -> None:
        self._policy = policy
        # With N unlimited the decision does not depend on the request number.
        self._count_matters = policy.max_requests != 0
        self._memo: dict[tuple[object, ...], Decided] = {}
        self._content_types: dict[str, bytes] = {}
        error = error_decision()
        self._error_block = header_block(error.headers)
        stop = shutdown_decision()  # the server is stopping: what a delayed reply then carries
        self.shutdown: Decided = (stop.keep_alive, header_block(stop.headers), stop.close_reason)

    def decide(
        self,
        request_number: int,
        version: tuple[int, int],
        tokens: frozenset[str],
        handler_close: bool,
    ) -> Decided:
        """`policy.decide`, memoised: (keep_alive, header block bytes, close reason).

        Only `close` and `keep-alive` among the Connection tokens can change a decision (rule 1),
        so the memo is keyed on those two and never holds a client's arbitrary tokens.
        """
        close, keep = "close" in tokens, "keep-alive" in tokens
        number = request_number if self._count_matters else 0
        key = (number, version, close, keep, handler_close)
        decided = self._memo.get(key)
        if decided is None:
            canonical = _CANONICAL_TOKENS[close, keep]
            decision = self._policy.decide(
                request_number, version, canonical, handler_close=handler_close
            )
            decided = (decision.keep_alive, header_block(decision.headers), decision.close_reason)
            if len(self._memo) >= MAX_MEMO:
                self._memo.clear()
            self._memo[key] = decided
        return decided

    def content_type_line(self, content_type: str) -> bytes:
        line = self._content_types.get(content_type)
        if line is None:
            line = self._content_types[content_type] = b"Content-Type: %s\r\n" % (
                content_type.encode("latin-1")
            )
        return line

    def encode(
        self,
        status: int,
        content_type: str,
        body: bytes,
        block: bytes,
        head_only: bool,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> tuple[bytes, bytes]:
        """(head, body-to-send); the body is b"" for HEAD, 1xx, 204 and 304. `extra` is the
        reply's own headers (`Reply.headers`), after Content-Length."""
        head = STATUS_HEADS.get(status) or _status_head(status)
        if status in STATUSES_WITHOUT_BODY:
            return head + block, b""
        head = b"".join(
            (
                head,
                self.content_type_line(content_type),
                b"Content-Length: %d\r\n" % len(body),
                header_block(extra)[:-2] if extra else b"",
                block,
            )
        )
        return head, (b"" if head_only else body)

    def error(self, status: int, detail: str) -> bytes:
        """A protocol-error response (rule 9): short text body, `Connection: close`."""
        body = f"{status} {detail}\n".encode("latin-1", "replace")
        head, body = self.encode(
            status, "text/plain; charset=utf-8", body, self._error_block, False
        )
        return head + body


class ReplyMemo:
    """`route()` results, and their response bytes, for targets that do not depend on the peer.

    A reply that does not depend on the connection (`Reply.per_connection` false: everything
    but /peer) is remembered the first time its (method, target) is seen, so later requests
    for it skip the RequestContext and Reply allocations and the join; /peer is routed every
    time. Bounded: long targets and large bodies
    are never remembered, and the memo is dropped when it holds MEMO_ENTRIES targets.
    """

    def __init__(self, encoder: ResponseEncoder) -> None:
        self._encoder = encoder
        self.entries: dict[tuple[bytes, bytes], tuple[Reply, dict[bytes, bytes]]] = {}

    def route(self, method: str, target: str, ctx: RequestContext) -> Reply:
        """Route one request; remember the reply when it is the same for any connection."""
        try:
            reply = route(method, target, ctx)
        except Exception:  # a bug in an endpoint must not leave the client waiting
            return INTERNAL_ERROR
        if replayable(reply, target, MEMO_TARGET_BYTES, COPY_LIMIT):
            if len(self.entries) >= MEMO_ENTRIES:
                self.entries.clear()
            key = (method.encode("ascii"), target.encode("latin-1"))
            self.entries[key] = (reply, {})
        return reply

    def response(
        self, reply: Reply, cached: dict[bytes, bytes] | None, block: bytes, head_only: bool
    ) -> bytes:
        """The whole response (body <= COPY_LIMIT), from the per-reply cache when there is one."""
        data = cached.get(block) if cached is not None else None
        if data is None:
            head, body = self._encoder.encode(
                reply.status, reply.content_type, reply.body, block, head_only, reply.headers
            )
            data = head + body
            if cached is not None:
                cached[block] = data
        return data


@dataclass
class ServerState:
    """Server-lifetime state shared by every connection."""

    runtime: Runtime
    loop: asyncio.AbstractEventLoop
    connections: set[Any] = field(default_factory=set)

    def __post_init__(self) -> None:
        options = self.runtime.options
        self.counters: Counters = self.runtime.counters
        self.policy: KeepAlivePolicy = self.runtime.policy
        self.encoder = ResponseEncoder(self.policy)
        self.memo = ReplyMemo(self.encoder)
        self.wheel = DeadlineWheel(self.loop)  # every connection's deadlines
        self.idle_s = options.keepalive_timeout_s
        self.header_s = options.effective_header_timeout_s
        # Requests read per connection: N, 1 when keep-alive is off, else unlimited.
        max_requests = self.policy.max_requests if self.policy.enabled else 1
        self.request_limit = max_requests or float("inf")
        self.log = options.log_connections
        self.stopping = False  # set at SIGTERM, before every connection is told to shut down
        # Whole responses to plain requests (HTTP/1.1, no Connection field) for pure, prompt
        # replies that keep the connection, by (method, target): the keep-alive fast path.
        # Filled only when the decision does not depend on the request number (N unlimited);
        # None with --log-connections (every request is routed and logged).
        fast = not self.log
        self.plain: dict[tuple[bytes, bytes], bytes] | None = {} if fast else None
        self._any_number = self.policy.max_requests == 0
        # With N limited (up to NUMBERED_MAX), the same responses by request number: the k-th
        # carries `max=N-k`, so each target has a list, indexed by k - 1, of the responses seen
        # so far (None for the N-th, which closes and takes the slow path). The recycling case
        # (`--keepalive-max 100`, every `make bench` cell) then costs what N unlimited does.
        numbered = fast and self.policy.enabled and 0 < self.policy.max_requests <= NUMBERED_MAX
        self.numbered: dict[tuple[bytes, bytes], list[bytes | None]] | None = (
            {} if numbered else None
        )
        # ... and to the same requests with `Connection: close` alone, answered then closed
        # (the decision is the same for every request number).
        self.plain_close: dict[tuple[bytes, bytes], bytes] = {}
        self._tokens: dict[tuple[bytes, ...], frozenset[str]] = {}

    def remember_plain(
        self, method: bytes, target: bytes, data: bytes, *, close: bool = False, number: int = 0
    ) -> None:
        """Remember `data`, the response to the `number`-th request on its connection."""
        if self.plain is None:
            return
        if close or self._any_number:
            memo = self.plain_close if close else self.plain
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            memo[method, target] = data
        elif self.numbered is not None and 0 < number < self.policy.max_requests:
            responses = self.numbered.get((method, target))
            if responses is None:
                if len(self.numbered) >= NUMBERED_TARGETS:
                    self.numbered.clear()
                responses = [None] * self.policy.max_requests
                self.numbered[method, target] = responses
            responses[number - 1] = data

    def tokens(self, values: list[bytes]) -> frozenset[str]:
        """`policy.connection_tokens` of the Connection field values, memoised (bounded)."""
        key = tuple(values)
        tokens = self._tokens.get(key)
        if tokens is None:
            tokens = connection_tokens(v.decode("latin-1") for v in values)
            if sum(map(len, values)) <= TOKENS_MEMO_BYTES:
                if len(self._tokens) >= MAX_MEMO:
                    self._tokens.clear()
                self._tokens[key] = tokens
        return tokens
