"""A lazily re-armed deadline: one `call_at` handle per connection, not one per request.

The keep-alive hot path moves the connection's deadline on every response. Cancelling and
creating a timer handle each time costs more than the request's own work in Python, so moving
a deadline later is two attribute stores: the pending timer fires at its old time, sees that
the deadline moved, and re-arms itself once for the real one. Only a deadline earlier than the
pending timer (rare: a linger after a long idle period) replaces the handle.
"""

from __future__ import annotations

import asyncio

# Declared by the concrete class: two mixins with slots of their own cannot be combined.
DEADLINE_SLOTS = ("_loop", "_deadline", "_kind", "_timer", "_timer_at")


class LazyDeadline:
    """Mixin: `_set_deadline(kind, delay)`, `_clear_deadline()`; subclasses define `_expire`
    and list DEADLINE_SLOTS in their `__slots__`."""

    __slots__ = ()

    def _init_deadline(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._deadline: float | None = None  # loop time, or None: nothing to enforce
        self._kind: str | None = None  # what the deadline is for, passed to _expire
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when the pending timer fires

    def _set_deadline(self, kind: str, delay: float) -> None:
        when = self._loop.time() + delay
        self._deadline, self._kind = when, kind
        timer = self._timer
        if timer is not None:
            if self._timer_at <= when:
                return  # fires early, then re-arms for the real deadline
            timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _clear_deadline(self) -> None:
        """Nothing to enforce; a pending timer fires once and does nothing."""
        self._deadline = None

    def _cancel_timer(self) -> None:
        """At connection_lost: drop the handle so no closed connection stays referenced."""
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if self._loop.time() < deadline:
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        self._deadline = None
        self._expire(self._kind)

    def _expire(self, kind: str | None) -> None:
        raise NotImplementedError
