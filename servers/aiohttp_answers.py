"""Per-request decisions for the aiohttp server, computed once and remembered.

Kept apart from `servers.aiohttp_server` (the aiohttp glue) because it is pure bookkeeping:
which reply `route()` gives, which `Connection`/`Keep-Alive` headers `KeepAlivePolicy.decide`
gives, and the caches that keep both off the per-request path.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import hdrs
from multidict import CIMultiDict

from servers.endpoints import Reply, RequestContext, replayable, route
from servers.policy import CLOSE_HEADERS, CloseReason, KeepAlivePolicy, connection_tokens
from servers.runtime import Runtime

SERVER_HEADER = "keepalive-bench/aiohttp"
DECISION_CACHE_SIZE = 4096
TOKEN_CACHE_SIZE = 256
MEMO_ENTRIES = 4096  # remembered answers (see Shared.answer)
MEMO_TARGET_MAX = 256  # longer targets are routed every time
MEMO_BODY_MAX = 4096  # larger bodies are not kept alive by the memo (<= 16 MiB in all)
NO_TOKENS: frozenset[str] = frozenset()

# (method, target, request number or 1 when N is unlimited, version, Connection tokens)
AnswerKey = tuple[str, str, int, tuple[int, int], frozenset[str]]
# (what route() replied, close reason or None to keep the connection, response headers)
Answer = tuple[Reply, CloseReason | None, CIMultiDict[str]]


@functools.lru_cache(maxsize=TOKEN_CACHE_SIZE)
def tokens_of(value: str) -> frozenset[str]:
    """Tokens of one `Connection` value; cached because clients repeat the same few values."""
    return connection_tokens((value,))


class Shared:
    """Server-wide state every connection reads: policy, counters, deadlines, header cache."""

    def __init__(self, runtime: Runtime, loop: asyncio.AbstractEventLoop) -> None:
        self.runtime = runtime
        self.loop = loop
        self.counters = runtime.counters
        self.request_served = runtime.counters.request_served  # bound once: per-request call
        self.policy: KeepAlivePolicy = runtime.policy  # the property builds a new one per call
        self.header_timeout_s = runtime.options.effective_header_timeout_s
        self.log_enabled = runtime.options.log_connections
        self.limited = self.policy.max_requests != 0
        # aiohttp arms its own timer at accept + T (T > 0); an earlier H needs a timer of ours.
        timeout_s = self.policy.timeout_s
        self.own_accept_timer = timeout_s <= 0 or self.header_timeout_s < timeout_s
        self.stopping = False
        # The connections of the running server (aiohttp's `web.Server.connections`), for
        # --reclaim-idle; set by the server when it is built.
        self.connections: Callable[[], Iterable[Any]] = tuple
        self.answers: dict[AnswerKey, Answer] = {}
        self.plan = functools.lru_cache(maxsize=DECISION_CACHE_SIZE)(self._plan)
        self.close_headers = functools.lru_cache(maxsize=16)(self._close_headers)

    def _plan(
        self,
        number: int,
        version: tuple[int, int],
        tokens: frozenset[str],
        handler_close: bool,
        content_type: str,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> tuple[CloseReason | None, CIMultiDict[str]]:
        """Close reason (None = keep) and response headers; callers pass `number` normalised.
        `extra` is the reply's own headers (`Reply.headers`)."""
        decision = self.policy.decide(number, version, tokens, handler_close=handler_close)
        return decision.close_reason, self._headers(decision.headers, content_type, extra)

    def answer(self, key: AnswerKey, ctx: RequestContext) -> Answer:
        """route() and the keep-alive plan for one request, remembered when they can be.

        A reply that does not depend on the connection (everything but /peer, see
        `Reply.per_connection`) is remembered with its plan under `key`, so later requests
        skip the RequestContext, Reply and plan work (about 10% of aiohttp's per-request cost).
        Bounded: long targets and large bodies are not remembered, and the memo is dropped when
        full.
        """
        method, target, number, version, tokens = key
        reply = route(method, target, ctx)
        reason, headers = self.plan(
            number, version, tokens, reply.close, reply.content_type, reply.headers
        )
        answer = (reply, reason, headers)
        if replayable(reply, target, MEMO_TARGET_MAX, MEMO_BODY_MAX):
            if len(self.answers) >= MEMO_ENTRIES:
                self.answers.clear()
            self.answers[key] = answer
        return answer

    def _close_headers(
        self, content_type: str, extra: tuple[tuple[str, str], ...] = ()
    ) -> CIMultiDict[str]:
        """`Connection: close` headers for closes the policy did not decide (errors, EOF)."""
        return self._headers(CLOSE_HEADERS, content_type, extra)

    @staticmethod
    def _headers(
        pairs: tuple[tuple[str, str], ...],
        content_type: str,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict(pairs)
        headers[hdrs.SERVER] = SERVER_HEADER
        headers[hdrs.CONTENT_TYPE] = content_type
        headers.extend(extra)
        return headers
