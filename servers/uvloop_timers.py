"""Lazily re-armed deadlines on a server-wide wheel: no loop timer per connection or request.

The keep-alive hot path moves the connection's deadline on every response, and the close path
sets one at accept (H) and another one for the linger. A loop timer handle per deadline
(`call_at`, then `cancel`: a libuv timer created, started, stopped and closed) cost more than a
short connection's own Python work, so deadlines live in a `DeadlineWheel`: each
connection's `Deadline` (an object the protocol composes) is filed in a set by TICK_S slot, and
the loop holds one timer per non-empty slot, for the whole server. Moving a deadline later is
two attribute stores: its slot comes due at the old time, sees that the deadline moved, and
files it once more for the real one. Only a deadline that an earlier slot would serve moves it
to another set (two set operations); one moved within its slot's tick stays. A deadline more
than FAR_S away goes to a coarse slot first (one loop timer per COARSE_S, which re-files what
is still pending). A deadline is never enforced early, and at most TICK_S after it (plus loop
latency), which the spec's tolerances (0.5 s on T and H) leave room for.

This departs on purpose from uvicorn's httptools_impl, which arms `loop.call_later` per
connection and cancels it on data: with `Connection: close` that pattern creates and destroys
two libuv timers per request. Measured when the wheel replaced it (commit a76a80a, together
with dropping a redundant TCP_NODELAY call): server CPU per request with `Connection: close`
from 60 to 44 us. The semantics are uvicorn's: armed after a response, stopped by the first byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

TICK_S = 0.05  # wheel resolution: deadlines are enforced up to this late, never early
# A deadline further away than FAR_S is first filed in a coarse slot, every COARSE_TICKS ticks
# (COARSE_S), that comes due at least COARSE_S early and re-files it in a TICK_S slot: the
# deadlines of one COARSE_S (a close-mode connection's header deadline, H from accept) share one
# loop timer instead of one per TICK_S, and most are dropped before it fires.
COARSE_TICKS = 10
COARSE_S = COARSE_TICKS * TICK_S
FAR_S = 2 * COARSE_S  # a coarse slot re-files into a fine one: less than FAR_S is left then

# What a connection's deadline is for (the protocol's `_expire` acts on it).
DeadlineKind = Literal["header", "body", "idle", "linger", "abort", "send"]


def _closed(kind: DeadlineKind) -> None:
    """A cancelled deadline's callback: its connection is gone."""


class DeadlineWheel:
    """Server-lifetime: the deadlines due in each TICK_S slot (or to be re-filed, in a coarse
    slot), one loop timer per slot."""

    __slots__ = ("_loop", "_slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: dict[int, set[Deadline]] = {}

    def file(self, deadline: Deadline, when: float) -> tuple[set[Deadline], float]:
        """File `deadline` in the first slot at or after `when`, or (`when` more than FAR_S
        away) in a coarse slot at least COARSE_S before it: (its set, the time after which a
        deadline needs no earlier slot: one tick before a fine slot's, a coarse slot's own)."""
        if when - self._loop.time() > FAR_S:
            slot = int((when - COARSE_S) // COARSE_S) * COARSE_TICKS  # comes due early
            earliest = slot * TICK_S
        else:
            slot = -int(-when // TICK_S)  # ceil: a fine slot never comes due before `when`
            earliest = (slot - 1) * TICK_S
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = set()
            self._loop.call_at(slot * TICK_S, self._due, slot)
        members.add(deadline)
        return members, earliest

    def _due(self, slot: int) -> None:
        members = self._slots.pop(slot, None)
        if not members:
            return
        for deadline in list(members):
            if deadline in members:  # not dropped meanwhile (connection_lost, earlier deadline)
                deadline.due()


class Deadline:
    """Connection-lifetime: the connection's one deadline, lazily re-armed on the wheel.

    Composed by the protocol, which passes its `_expire` as `expire`. `at` and `kind` are the
    deadline itself; `slot` and `slot_from` say where it is filed (a deadline after
    `slot_from` needs no earlier slot than this one). The protocol's keep-alive hot
    path reads and writes these four directly (see `HttpProtocol._arm_timer`): `set`, inlined.
    """

    __slots__ = ("_loop", "_wheel", "_expire", "at", "kind", "slot", "slot_from")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        wheel: DeadlineWheel,
        expire: Callable[[DeadlineKind], None],
    ) -> None:
        self._loop = loop
        self._wheel = wheel
        self._expire = expire
        self.at: float | None = None  # loop time, or None: nothing to enforce
        self.kind: DeadlineKind = "header"  # what `at` is for; meaningless while `at` is None
        self.slot: set[Deadline] | None = None  # the wheel slot this deadline is filed in
        self.slot_from = 0.0  # a deadline after this needs no earlier slot (DeadlineWheel.file)

    def set(self, kind: DeadlineKind, delay: float) -> None:
        when = self._loop.time() + delay
        self.at, self.kind = when, kind
        slot = self.slot
        # Re-filed only for an earlier slot: a deadline moved within its slot's tick (a
        # connection's first requests, all before its header deadline's tick ends) stays.
        if slot is None or when <= self.slot_from:  # `refile`, inlined: once per connection
            if slot is not None:
                slot.discard(self)
            self.slot, self.slot_from = self._wheel.file(self, when)
        # else: the pending slot comes due early, then re-files for the real deadline

    def refile(self, when: float) -> None:
        """File the deadline for `when`, leaving a slot that would come due too late."""
        if self.slot is not None:
            self.slot.discard(self)
        self.slot, self.slot_from = self._wheel.file(self, when)

    def clear(self) -> None:
        """Nothing to enforce; a pending slot comes due once and does nothing."""
        self.at = None

    def cancel(self) -> None:
        """At connection_lost: leave the wheel so no closed connection stays referenced, and
        drop the protocol's callback (a reference cycle: protocol, deadline, bound method)."""
        self.at = None
        self._expire = _closed
        if self.slot is not None:
            self.slot.discard(self)
            self.slot = None

    def due(self) -> None:
        """Its slot came due (called by the wheel): expire, or re-file for a later deadline."""
        self.slot = None
        at = self.at
        if at is None:
            return
        if self._loop.time() < at:
            self.slot, self.slot_from = self._wheel.file(self, at)
            return
        self.at = None
        self._expire(self.kind)
