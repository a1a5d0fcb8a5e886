"""The uvloop reference server: a raw asyncio.Protocol on a uvloop loop, parsed by httptools.

No framework. `uvloop_protocol.HttpProtocol` owns a connection (pipelining, timers, graceful
close), with its request-head callbacks in `uvloop_parsing` and its lazy deadline in
`uvloop_timers`; `uvloop_wire` holds the server-lifetime state and the response bytes. This
module runs the loop (from a factory, never a global `uvloop.install()`), serves until SIGTERM
or SIGINT, then closes every open connection (counted as `shutdown` unless a close was already
decided; a request being handled is answered first, with `Connection: close`) and returns.

Spec deviations (docs/keepalive-spec.md): none. httptools exposes everything the spec needs:
versions are checked by `framing.parse_version` (llhttp's own version check is relaxed so that
HTTP/2.0 gets 505 and HTTP/1.2 is served), Host/Content-Length/Transfer-Encoding by
`framing.body_framing`, and the 414/431 limits are counted in `on_url`/`on_header` because
llhttp has none. Notes that are not conformance cases:
- Connections are accepted by `servers.accept.LoopAcceptor` and handed to uvloop with
  `connect_accepted_socket`, not by `create_server`: at the descriptor limit libuv accepts and
  closes every queued connection; ours pause accepting and leave them queued. With
  `--max-connections` it is `servers.slots.LimitedAcceptor` (rule 11).
- `Upgrade` (and CONNECT) requests are answered as ordinary requests; no protocol switch.
- llhttp takes `RTSP/1.0` (and `ICE/1.0` after SOURCE) for `HTTP/1.0` and httptools does not
  say which it read, so such a request is served (README: RTSP-ICE-VERSION; stdlib says 400).
- TLS transports cannot half-close: a closing TLS connection is closed (close_notify) at once.
  The TLS handshake gets its own deadline of H before the header deadline starts; it runs in
  `servers.tls_accept`, which counts every accepted connection, a failed handshake too.
- A stalled request body is cut after H of no progress, counted as `header_timeout`.
- Protocol-error responses are not counted in `requests_served`.
- `route()` results that do not depend on the connection are memoised with their response
  bytes (`uvloop_wire.ReplyMemo`): the endpoints are pure, and the hot path then allocates no
  RequestContext or Reply. `--log-connections` routes every request.
"""

from __future__ import annotations

import asyncio
import functools
import signal

import uvloop

from servers.accept import Connector
from servers.runtime import SHUTDOWN_GRACE_S, Runtime, freeze_startup_heap
from servers.slots import loop_acceptor, reclaim_longest_idle
from servers.tls_accept import TLSAccept
from servers.uvloop_protocol import HttpProtocol
from servers.uvloop_wire import ServerState

DEVIATIONS: dict[str, str] = {}


def serve(runtime: Runtime) -> None:
    """Run until SIGTERM/SIGINT, then close cleanly and return (exit status 0)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve_until_signal(runtime))


async def _serve_until_signal(runtime: Runtime) -> None:
    loop = asyncio.get_running_loop()
    state = ServerState(runtime, loop)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def http() -> HttpProtocol:
        return HttpProtocol(state)

    tls = None
    if runtime.ssl_context is not None:  # handshakes counted, failed ones too, and under H
        tls = TLSAccept(loop, runtime.ssl_context, state.counters, state.header_s, http)
    # Not loop.create_server: at EMFILE libuv accepts and closes every queued connection.
    connect = Connector(loop, http if tls is None else tls)
    reclaim = None
    if runtime.options.reclaim_idle:
        reclaim = functools.partial(reclaim_longest_idle, state.connections)
    backoff = runtime.accept_backoff()
    server = loop_acceptor(
        loop, runtime.listener, backoff, connect, slots=runtime.slots, counters=state.counters,
        reclaim=reclaim,
    )  # fmt: skip
    server.start()
    freeze_startup_heap()
    runtime.announce_ready()
    await stop.wait()
    server.close()
    if tls is not None:
        tls.abort_handshakes()
    await _close_connections(state)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)


async def _close_connections(state: ServerState) -> None:
    """Close idle connections (flushing), let in-flight requests be answered, abort what is
    left after SHUTDOWN_GRACE_S, and let connection_lost count them."""
    state.stopping = True
    for protocol in list(state.connections):
        protocol.shutdown()
    deadline = state.loop.time() + SHUTDOWN_GRACE_S
    while state.connections and state.loop.time() < deadline:
        await asyncio.sleep(0.02)
    for protocol in list(state.connections):
        protocol.abort()
    for _ in range(10):
        if not state.connections:
            break
        await asyncio.sleep(0.01)
