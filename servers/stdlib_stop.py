"""How the stdlib server stops: which connections wait for a request, which are being served.

One thread per connection, so the stop (in the main thread) cannot simply close sockets: a
connection whose handler is answering a request must be let finish, with `Connection: close`
(as aiohttp and the uvloop server do), and one that waits for its next request must be woken
and ended. Each handler keeps plain flags (`StopAware`, no lock per request); `StopBook` holds
the open connections, and the stop reads their flags.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time

POLL_S = 0.05  # how often the stop looks again for requests still being answered


class StopAware:
    """The handler's side: what it is doing, as the stopping thread needs to know it."""

    connection: socket.socket
    in_flight = False  # a request is being handled (until its connection closes, at a stop)
    waiting = False  # blocked until a request's first byte
    ended_by_stop = False  # end_if_waiting() shut the socket: close it plainly, owe nothing

    def end_if_waiting(self) -> None:
        """Server stop (another thread): a connection that waits for a request ends now.

        Shutting the socket wakes the blocked read with EOF; nothing is owed to the client.
        The plain socket's shutdown, also under TLS (`SSLSocket.shutdown` would drop its SSL
        object under the reading thread). Under TLS both directions are shut and no
        close_notify follows: after the read side is gone OpenSSL can only answer with an
        alert, so the client sees the same bare EOF as when a process exits."""
        if self.waiting:
            self.ended_by_stop = True
            tls = isinstance(self.connection, ssl.SSLSocket)
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self.connection, socket.SHUT_RDWR if tls else socket.SHUT_RD)


class StopBook:
    """The open connections, for a stop that answers requests in flight before it closes."""

    def __init__(self) -> None:
        self.stopping = False  # set at SIGTERM: responses from now on close
        self._lock = threading.Condition()
        self._open: set[StopAware] = set()

    def opened(self, conn: StopAware) -> None:
        with self._lock:
            self._open.add(conn)

    def snapshot(self) -> list[StopAware]:
        """The open connections now (--reclaim-idle looks for an idle one among them)."""
        with self._lock:
            return list(self._open)

    def closed(self, conn: StopAware) -> None:
        with self._lock:
            self._open.discard(conn)
            self._lock.notify_all()

    def stop(self, grace_s: float) -> None:
        """Let responses close from now on, end waiting connections, and wait (at most
        `grace_s`) until no open connection has a request in flight."""
        self.stopping = True
        with self._lock:
            waiting = list(self._open)
        for conn in waiting:
            conn.end_if_waiting()
        deadline = time.monotonic() + grace_s
        with self._lock:
            # Polled as well as notified: a request answered with keep-alive just before
            # `stopping` was set clears its flag without telling anyone.
            while any(conn.in_flight for conn in self._open):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._lock.wait(min(remaining, POLL_S))
