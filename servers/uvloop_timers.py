"""Lazily re-armed deadlines on a server-wide wheel: no loop timer per connection or request.

The keep-alive hot path moves the connection's deadline on every response, and the close path
sets one at accept (H) and another one for the linger. A loop timer handle per deadline
(`call_at`, then `cancel`: a libuv timer created, started, stopped and closed) cost more than a
short connection's own Python work, so deadlines live in a `DeadlineWheel`: connections are
filed in sets by TICK_S slot, and the loop holds one timer per non-empty slot, for the whole
server. Moving a deadline later is two attribute stores: the connection's slot comes due at
its old time, sees that the deadline moved, and files it once more for the real one. Only a
deadline earlier than the pending slot moves the connection to another set (two set
operations). A slot never fires before its deadline, and at most TICK_S after it (plus loop
latency), which the spec's tolerances (0.5 s on T and H) leave room for.

This departs on purpose from uvicorn's httptools_impl, which arms `loop.call_later` per
connection and cancels it on data: with `Connection: close` that pattern creates and destroys
two libuv timers per request. Measured when the wheel replaced it (commit a76a80a, together
with dropping a redundant TCP_NODELAY call): server CPU per request with `Connection: close`
from 60 to 44 us. The semantics are uvicorn's: armed after a response, stopped by the first byte.
"""

from __future__ import annotations

import asyncio
from typing import Any

TICK_S = 0.05  # wheel resolution: deadlines are enforced up to this late, never early

# Declared by the concrete class: two mixins with slots of their own cannot be combined.
DEADLINE_SLOTS = ("_loop", "_wheel", "_deadline", "_kind", "_timer", "_timer_at")


class DeadlineWheel:
    """Server-lifetime: the connections due in each TICK_S slot, one loop timer per slot."""

    __slots__ = ("_loop", "_slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: dict[int, set[Any]] = {}

    def file(self, conn: Any, when: float) -> tuple[set[Any], float]:
        """File `conn` in the first slot at or after `when`: (its set, the slot's time)."""
        slot = -int(-when // TICK_S)  # ceil: a slot never comes due before `when`
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = set()
            self._loop.call_at(slot * TICK_S, self._due, slot)
        members.add(conn)
        return members, slot * TICK_S

    def _due(self, slot: int) -> None:
        members = self._slots.pop(slot, None)
        if not members:
            return
        for conn in list(members):
            if conn in members:  # not dropped meanwhile (connection_lost, earlier deadline)
                conn._on_timer()


class LazyDeadline:
    """Mixin: `_set_deadline(kind, delay)`, `_clear_deadline()`; subclasses define `_expire`
    and list DEADLINE_SLOTS in their `__slots__`."""

    __slots__ = ()

    def _init_deadline(self, loop: asyncio.AbstractEventLoop, wheel: DeadlineWheel) -> None:
        self._loop = loop
        self._wheel = wheel
        self._deadline: float | None = None  # loop time, or None: nothing to enforce
        self._kind: str | None = None  # what the deadline is for, passed to _expire
        self._timer: set[Any] | None = None  # the wheel slot this connection is filed in
        self._timer_at = 0.0  # when that slot comes due

    def _set_deadline(self, kind: str, delay: float) -> None:
        when = self._loop.time() + delay
        self._deadline, self._kind = when, kind
        if self._timer is None or when < self._timer_at:
            self._refile(when)
        # else: the pending slot comes due early, then re-files for the real deadline

    def _refile(self, when: float) -> None:
        """File the connection for `when`, leaving a slot that would come due too late."""
        if self._timer is not None:
            self._timer.discard(self)
        self._timer, self._timer_at = self._wheel.file(self, when)

    def _clear_deadline(self) -> None:
        """Nothing to enforce; a pending slot comes due once and does nothing."""
        self._deadline = None

    def _cancel_timer(self) -> None:
        """At connection_lost: leave the wheel so no closed connection stays referenced."""
        self._deadline = None
        if self._timer is not None:
            self._timer.discard(self)
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if self._loop.time() < deadline:
            self._timer, self._timer_at = self._wheel.file(self, deadline)
            return
        self._deadline = None
        self._expire(self._kind)

    def _expire(self, kind: str | None) -> None:
        raise NotImplementedError
