"""Live connection and request counters, readable from another thread.

The stdlib server updates them from many threads, so there every update takes the lock. The
asyncio servers update them from their loop thread only: with one writer, no update needs the
lock (an int attribute is rebound atomically under the GIL), which saves about a tenth of the
uvloop server's Python work per keep-alive request and two lock round trips per connection.
Snapshots, read by the control listener's thread, still see one consistent state: the
single-writer updates call nothing between their stores (CPython switches threads only at a
call, a backward jump or a function's entry), and `snapshot` reads every field in one
expression before its first call.

Every accepted TCP connection is counted once at accept (over TLS before its handshake, in the
stdlib server's connection thread or in `servers.tls_accept` for the other two) and once when it
ends, under one `servers.policy.CloseReason`: max_reached, idle_timeout, header_timeout (H passed:
a header section, a stalled body, or a TLS handshake), client_requested, client_closed (FIN or
reset between requests, inside one, or inside a handshake), keepalive_disabled, handler, error
(an error status was answered, or a socket error), shutdown, and handshake_failed (TLS: not TLS,
a bad ClientHello, no common version or cipher, an alert from the client), and reclaimed (closed
while idle to make room for a waiting connection: `--reclaim-idle`). The README lists them with
the spec's wording. `on_closed`, when set, is told of every close, after the counts: the
connection slots of `--max-connections` (`servers.slots`) are freed there, whichever path ended
the connection.

Over TLS, each handshake that succeeds counts in `tls_handshakes` and, when the client resumed
an earlier session (a TLS 1.2 session ID or ticket, a TLS 1.3 ticket: `session_reused` once the
handshake is done), in `tls_resumed` too; the harness checks a resuming client's mode with it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from servers.policy import CloseReason


class Counters:
    """Connections accepted, open, peak open, requests served, closes by reason, and accept
    back-off episodes (accept() failing, mostly at the descriptor limit: `servers.accept`) and
    accept pauses (every `--max-connections` slot taken: `servers.slots`)."""

    on_closed: Callable[[], None] | None = None  # servers.slots: a slot is free again

    def __init__(self, *, threaded: bool = True) -> None:
        """`threaded=False` promises that one thread does all updates (an event loop)."""
        self._lock = threading.Lock()
        if not threaded:
            self.request_served = self._request_served_single_writer  # type: ignore[method-assign]
            self.connection_opened = self._opened_single_writer  # type: ignore[method-assign]
            self.connection_closed = self._closed_single_writer  # type: ignore[method-assign]
        self._ids = itertools.count(1)
        self._accepted = 0
        self._open = 0
        self._peak_open = 0
        self._requests = 0
        self._closed = dict.fromkeys(CloseReason, 0)
        self._accept_backoffs = 0
        self._accept_pauses = 0
        self._tls_handshakes = 0
        self._tls_resumed = 0

    def connection_opened(self) -> int:
        """Count an accepted connection and return its id (1, 2, ... in accept order)."""
        with self._lock:
            self._accepted += 1
            self._open += 1
            self._peak_open = max(self._peak_open, self._open)
            return next(self._ids)

    def connection_closed(self, reason: CloseReason) -> None:
        with self._lock:
            self._open -= 1
            self._closed[reason] += 1
        if self.on_closed is not None:
            self.on_closed()

    def _opened_single_writer(self) -> int:
        # No call between the stores (see the module docstring); the id is the count, as
        # next(self._ids) would give (both start at 1 and move together).
        accepted = self._accepted = self._accepted + 1
        now_open = self._open = self._open + 1
        if now_open > self._peak_open:
            self._peak_open = now_open
        return accepted

    def _closed_single_writer(self, reason: CloseReason) -> None:
        self._open -= 1
        self._closed[reason] += 1  # a StrEnum key: str hashing, in C
        if self.on_closed is not None:  # after the stores: snapshots stay consistent
            self.on_closed()

    def request_served(self) -> None:
        with self._lock:
            self._requests += 1

    def _request_served_single_writer(self) -> None:
        self._requests += 1

    def accept_backoff(self) -> None:
        """An episode in which the listener stopped accepting (from any thread; rare)."""
        with self._lock:
            self._accept_backoffs += 1

    def accept_paused(self) -> None:
        """An episode in which every connection slot was taken and accepting stopped."""
        with self._lock:
            self._accept_pauses += 1

    def tls_handshake_done(self, *, resumed: bool) -> None:
        """A TLS handshake that succeeded (from any thread: once per connection)."""
        with self._lock:
            self._tls_handshakes += 1
            self._tls_resumed += resumed

    def snapshot(self) -> dict[str, Any]:
        """A consistent JSON-ready view of every counter."""
        with self._lock:  # one expression, its only call last: no single-writer update between
            accepted, now_open, peak, requests, backoffs, pauses, handshakes, resumed, closed = (
                self._accepted, self._open, self._peak_open, self._requests,
                self._accept_backoffs, self._accept_pauses, self._tls_handshakes,
                self._tls_resumed, self._closed.copy(),
            )  # fmt: skip
        return {
            "connections_accepted": accepted,
            "connections_open": now_open,
            "connections_peak_open": peak,
            "requests_served": requests,
            "closed": {reason.value: n for reason, n in closed.items()},
            "accept_backoffs": backoffs,
            "accept_pauses": pauses,
            "tls_handshakes": handshakes,
            "tls_resumed": resumed,
        }
