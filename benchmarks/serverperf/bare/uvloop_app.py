"""Bare uvloop + httptools: an asyncio Protocol answering every request with the shared body.

The floor for `servers.uvloop_server` (and the fastest Python we can put next to nginx): one
prebuilt response, httptools for parsing, an idle timer re-armed after each response and
`should_keep_alive()` honoured so that `Connection: close` runs measure real closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import cast

import httptools
import uvloop

from servers.endpoints import HELLO, TEXT
from servers.policy import KeepAlivePolicy


def _response(settings: KeepAlivePolicy, close: bool) -> bytes:
    if close or settings.timeout_s == 0:
        connection = b"Connection: close\r\n"
    else:
        connection = b"Connection: keep-alive\r\nKeep-Alive: timeout=%d\r\n" % int(
            settings.timeout_s
        )
    head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
        TEXT.encode(),
        len(HELLO),
    )
    return head + connection + b"\r\n" + HELLO


class HelloProtocol(asyncio.Protocol):
    """One connection: parse with httptools, answer each complete message at once."""

    def __init__(self, settings: KeepAlivePolicy, keep: bytes, close: bytes) -> None:
        self.settings = settings
        self.keep, self.close = keep, close
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.served = 0
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()

    def on_message_complete(self) -> None:
        assert self.transport is not None
        self.served += 1
        limit = self.settings.max_requests
        persist = (
            self.parser.should_keep_alive()
            and self.settings.timeout_s > 0
            and not (limit and self.served >= limit)
        )
        if persist:
            self.transport.write(self.keep)
            loop = asyncio.get_running_loop()
            self.idle = loop.call_later(self.settings.timeout_s, self.transport.close)
        else:
            self.transport.write(self.close)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()


async def _serve(sock: socket.socket, settings: KeepAlivePolicy, ready: str) -> None:
    keep, close = _response(settings, False), _response(settings, True)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HelloProtocol(settings, keep, close), sock=sock)
    print(ready, flush=True)
    async with server:
        await server.serve_forever()


def serve(sock: socket.socket, settings: KeepAlivePolicy, ready: str) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_serve(sock, settings, ready))
