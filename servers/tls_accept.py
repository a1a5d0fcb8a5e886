"""The TLS handshake of the asyncio servers (uvloop, aiohttp), counted whatever becomes of it.

`loop.create_server(ssl=...)` hands the HTTP protocol its connection only once the handshake
has succeeded; a handshake that fails (junk, a bad ClientHello, a client that closes or says
nothing) ends without a trace, so those connections were never counted (issue 8, item 8). Here
the listener is plain TCP, and every accepted connection starts in a `TLSAcceptor`: it counts
the connection, runs the handshake with `loop.start_tls` under the deadline H, then hands the
TLS transport to the HTTP protocol, or counts the failure with the close reason
`policy.handshake_close_reason` gives, as the stdlib server does in its connection thread.
`start_tls` is each loop's own TLS implementation (uvloop's in C), the one `create_server`
would use.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from servers.counters import Counters
from servers.policy import CloseReason, handshake_close_reason

# The loop's own handshake timeout stays as a backstop only: ours (H) fires first and is counted
# as header_timeout, where the loops' raises ConnectionAbortedError, which reads like a client's.
BACKSTOP_S = 5.0


class CountedProtocol(Protocol):
    """An HTTP protocol that can be told that its connection is counted already."""

    def counted_as(self, connection_id: int) -> None: ...

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> bool | None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...


@dataclass
class TLSAccept:
    """Server-lifetime: the protocol factory of a TLS listener (`create_server(tls_accept)`)."""

    loop: asyncio.AbstractEventLoop
    context: ssl.SSLContext
    counters: Counters
    handshake_s: float  # H: the handshake's deadline from accept
    http_protocol: Callable[[], CountedProtocol]
    handshakes: set[TLSAcceptor] = field(default_factory=set)

    def __call__(self) -> TLSAcceptor:
        return TLSAcceptor(self)

    def abort_handshakes(self) -> None:
        """At a stop: the handshakes still running end now (counted as `shutdown`)."""
        for acceptor in list(self.handshakes):
            acceptor.abort()


class TLSAcceptor(asyncio.Protocol):
    """An accepted TCP connection until its handshake ends: the protocol of the transport until
    start_tls switches it, then the keeper of the handshake's task and deadline.

    The loops start reading right after `connection_made` (uvloop calls `_start_reading()`
    after it), and start_tls only runs a loop turn later, so a ClientHello that was waiting at
    accept arrives here first. It is kept and handed to the SSL protocol in the turn that
    start_tls's own first callbacks run in (its protocol's connection_made, then
    resume_reading): those are queued when start_tls's task first runs, and `_replay_early`,
    queued twice over from here, comes right after them, before the loop reads again.
    """

    def __init__(self, spec: TLSAccept) -> None:
        self._spec = spec
        self._early = bytearray()
        self._early_eof = False
        self._timed_out = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        spec = self._spec
        loop = spec.loop
        self._transport: Any = transport
        self._connection_id = spec.counters.connection_opened()
        self._handover = _Handover()
        self._task: asyncio.Task[asyncio.Transport | None] = loop.create_task(
            loop.start_tls(
                transport,  # type: ignore[arg-type]  # a TCP transport: asyncio.Transport
                self._handover,
                spec.context,
                server_side=True,
                ssl_handshake_timeout=spec.handshake_s + BACKSTOP_S,
            )
        )
        loop.call_soon(loop.call_soon, self._replay_early)
        self._deadline = loop.call_later(spec.handshake_s, self._expire)
        self._task.add_done_callback(self._done)
        spec.handshakes.add(self)

    def data_received(self, data: bytes) -> None:
        self._early += data

    def eof_received(self) -> bool:
        self._early_eof = True
        return True  # kept open: the SSL protocol is told, and fails the handshake

    def _replay_early(self) -> None:
        ssl_protocol = self._transport.get_protocol()
        if ssl_protocol is self or self._transport.is_closing():
            return
        data = memoryview(self._early)
        while data:
            buffer = ssl_protocol.get_buffer(len(data))
            size = min(len(buffer), len(data))
            buffer[:size] = data[:size]
            ssl_protocol.buffer_updated(size)
            data = data[size:]
        self._early = bytearray()
        if self._early_eof:
            ssl_protocol.eof_received()

    def _expire(self) -> None:
        self._timed_out = True
        self._task.cancel()

    def abort(self) -> None:
        self._task.cancel()

    def _done(self, task: asyncio.Task[asyncio.Transport | None]) -> None:
        spec = self._spec
        spec.handshakes.discard(self)
        self._deadline.cancel()
        if task.cancelled() or task.exception() is not None:
            _drop(self._transport)
            if task.cancelled():
                reason = CloseReason.HEADER_TIMEOUT if self._timed_out else CloseReason.SHUTDOWN
            else:
                reason = handshake_close_reason(task.exception())  # type: ignore[arg-type]
            spec.counters.connection_closed(reason)
            return
        tls = task.result()
        assert tls is not None  # start_tls returns None only for a closed loop
        spec.counters.tls_handshake_done(
            resumed=bool(tls.get_extra_info("ssl_object").session_reused)
        )
        protocol = spec.http_protocol()
        protocol.counted_as(self._connection_id)
        self._handover.hand_to(protocol, tls)


def _drop(transport: Any) -> None:
    """start_tls closed its side; make sure the socket goes too, without a linger."""
    with contextlib.suppress(Exception):
        if not transport.is_closing():
            transport.abort()


class _Handover(asyncio.Protocol):
    """The TLS transport's protocol from the end of the handshake until the HTTP protocol has
    it: start_tls delivers data that came with the client's Finished (the first request, often)
    before the coroutine that awaits it resumes. Kept, and passed on in order."""

    def __init__(self) -> None:
        self._events: list[tuple[str, Any]] = []

    def data_received(self, data: bytes) -> None:
        self._events.append(("data", data))

    def eof_received(self) -> bool:
        self._events.append(("eof", None))
        return True  # the HTTP protocol decides, in hand_to

    def connection_lost(self, exc: Exception | None) -> None:
        self._events.append(("lost", exc))

    def hand_to(self, protocol: CountedProtocol, tls: asyncio.BaseTransport) -> None:
        tls.set_protocol(protocol)  # type: ignore[arg-type]
        protocol.connection_made(tls)
        for kind, arg in self._events:
            if kind == "data":
                protocol.data_received(arg)
            elif kind == "eof":
                if not protocol.eof_received():
                    tls.close()
            else:
                protocol.connection_lost(arg)
        self._events.clear()
