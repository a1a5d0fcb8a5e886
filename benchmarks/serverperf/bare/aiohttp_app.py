"""Bare aiohttp: one route returning the shared body, access log off, default event loop.

This is the floor for `servers.aiohttp_server`: same library, same keep-alive timeout, none of
the reference server's policy code. A keep-alive max (rarely used here) is applied with
`force_close()` on the N-th response of a connection, as the reference server must do.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import weakref

from aiohttp import web

from servers.endpoints import HELLO, TEXT
from servers.policy import KeepAlivePolicy


def make_app(settings: KeepAlivePolicy) -> web.Application:
    served: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()

    async def hello(request: web.Request) -> web.Response:
        response = web.Response(body=HELLO, headers={"Content-Type": TEXT})
        if settings.max_requests and request.transport is not None:
            count = served.get(request.transport, 0) + 1
            served[request.transport] = count
            if count >= settings.max_requests:
                response.force_close()
        return response

    app = web.Application()
    app.router.add_get("/", hello)
    return app


async def _serve(sock: socket.socket, settings: KeepAlivePolicy, ready: str) -> None:
    runner = web.AppRunner(
        make_app(settings), access_log=None, keepalive_timeout=settings.timeout_s
    )
    await runner.setup()
    await web.SockSite(runner, sock).start()
    print(ready, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def serve(sock: socket.socket, settings: KeepAlivePolicy, ready: str) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(sock, settings, ready))
