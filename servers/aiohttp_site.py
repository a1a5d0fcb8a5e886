"""How the aiohttp server meets its socket and its handler: the app's router and the site.

Two gaps in aiohttp's stock wiring that the spec does not allow:

- The router only matches request-targets that start with `/`. `OPTIONS *` (or an
  authority-form target) would get aiohttp's own 404, without our `Connection`/`Keep-Alive`
  headers and uncounted toward N. `EveryTarget` is a resource that matches any target, so every
  request reaches `_handle`, which routes with `servers.endpoints.route` like the other servers.
- `SockSite` cannot pass `ssl_handshake_timeout`, so asyncio's 60 s default would let a client
  that connects and sends nothing hold a TLS connection for a minute (IDLE-04 says H); and a
  handshake that fails never reaches the protocol, so it went uncounted (issue 8 item 8).
  `DeadlineSockSite` accepts plain TCP itself, and its TLS connections begin in
  `servers.tls_accept` (handshake under H, every outcome counted).
- At the descriptor limit asyncio's accept loop (`loop.create_server`) logs a traceback per
  failed accept, up to the backlog per wake-up: thousands of lines a second. The site accepts
  with `servers.accept.LoopAcceptor` instead (one line per episode, a pause, no spin), or with
  `--max-connections` its `servers.slots.LimitedAcceptor`.

Private aiohttp API relied on (checked against aiohttp 3.14): `BaseSite.start` registers the
site with its runner; `SockSite`'s `_runner`, `_sock`, `_ssl_context`, `_backlog` and `_server`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource, ResourceRoute, UrlMappingMatchInfo

from servers.accept import AcceptBackoff, Connector
from servers.counters import Counters
from servers.slots import Slots, loop_acceptor
from servers.tls_accept import CountedProtocol, TLSAccept

if TYPE_CHECKING:  # the return type aiohttp declares for get_info (a private TypedDict)
    from aiohttp.web_urldispatcher import _InfoDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class EveryTarget(AbstractResource):
    """A resource that answers any method on any request-target with one handler.

    Indexed under `/`, the bucket the router visits last for every target, so a plain `/`
    resource registered before it still takes the hot path.
    """

    def __init__(self, handler: Handler) -> None:
        super().__init__(name=None)
        self._route = ResourceRoute("*", handler, self)

    @property
    def canonical(self) -> str:
        return "/"

    async def resolve(self, request: web.Request) -> tuple[UrlMappingMatchInfo, set[str]]:
        # A fresh match info per request: aiohttp stores the app chain on it.
        return UrlMappingMatchInfo({}, self._route), {self._route.method}

    def raw_match(self, path: str) -> bool:
        return True

    def get_info(self) -> _InfoDict:
        return {"path": "*"}

    def url_for(self, **kwargs: str) -> Any:
        raise NotImplementedError("EveryTarget has no URL of its own")

    def add_prefix(self, prefix: str) -> None:
        raise NotImplementedError("EveryTarget cannot be mounted under a prefix")

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[ResourceRoute]:
        return iter((self._route,))


def build_app(handler: Handler) -> web.Application:
    """An aiohttp.web application whose every request goes to `handler`."""
    app = web.Application()
    app.router.add_route("*", "/", handler)  # a plain resource: the benchmarks' hot path
    app.router.register_resource(EveryTarget(handler))
    return app


class DeadlineSockSite(web.SockSite):
    """`SockSite` accepting through `LoopAcceptor` (its `_server`, closed by `BaseSite.stop` as
    the stock asyncio server is); TLS connections start in `servers.tls_accept`: counted at
    accept, the handshake bounded by `handshake_timeout_s`, a failed one counted with its close
    reason."""

    __slots__ = ("_handshake_timeout_s", "_backoff", "_counters", "_tls", "_slots", "_reclaim")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        *,
        ssl_context: ssl.SSLContext | None,
        backlog: int,
        handshake_timeout_s: float,
        backoff: AcceptBackoff,
        counters: Counters,
        slots: Slots | None = None,
        reclaim: Callable[[int], int] | None = None,
    ) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context, backlog=backlog)
        self._handshake_timeout_s = handshake_timeout_s
        self._backoff = backoff
        self._counters = counters
        self._slots = slots
        self._reclaim = reclaim
        self._tls: TLSAccept | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; SockSite.start would also listen
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        if self._ssl_context is not None:
            http = cast(Callable[[], CountedProtocol], server)  # it builds our _Connection
            self._tls = TLSAccept(
                loop, self._ssl_context, self._counters, self._handshake_timeout_s, http
            )
        connect = Connector(loop, server if self._tls is None else self._tls)
        acceptor = loop_acceptor(loop, self._sock, self._backoff, connect, slots=self._slots,
                                 counters=self._counters, reclaim=self._reclaim)  # fmt: skip
        acceptor.start()
        self._server = acceptor

    async def stop(self) -> None:
        if self._tls is not None:
            self._tls.abort_handshakes()
        await super().stop()
