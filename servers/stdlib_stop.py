"""How the stdlib server stops: which connections wait for a request, which are being served.

One thread per connection, so the stop (in the main thread) cannot simply close sockets: a
connection whose handler is answering a request must be let finish, with `Connection: close`
(as aiohttp and the uvloop server do), and one that waits for its next request must be woken
and ended. `StopBook` is the shared, locked bookkeeping for both.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Waiter(Protocol):
    def end_if_waiting(self) -> None:
        """End the connection now if its handler is blocked waiting for a request."""


class StopBook:
    """Open connections and requests in flight, for a stop that answers before it closes."""

    def __init__(self) -> None:
        self.stopping = False  # set at SIGTERM: responses from now on close
        self._in_flight = 0  # requests parsed and not yet answered (or, at stop, closed)
        self._lock = threading.Condition()
        self._open: set[Waiter] = set()

    def opened(self, conn: Waiter) -> None:
        with self._lock:
            self._open.add(conn)

    def closed(self, conn: Waiter) -> None:
        with self._lock:
            self._open.discard(conn)

    def request_began(self) -> None:
        with self._lock:
            self._in_flight += 1

    def request_ended(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()

    def stop(self, grace_s: float) -> None:
        """Let responses close from now on, end waiting connections, and wait (at most
        `grace_s`) until no request is being handled."""
        self.stopping = True
        with self._lock:
            waiting = list(self._open)
        for conn in waiting:
            conn.end_if_waiting()
        with self._lock:
            self._lock.wait_for(lambda: self._in_flight == 0, grace_s)
