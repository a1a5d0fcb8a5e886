"""Connection slots (spec rule 11): `--max-connections N` and `--reclaim-idle`.

A thread- or process-per-connection server has a fixed number of workers (Apache's
MaxRequestWorkers): once they are all taken it stops accepting, the kernel's listen backlog holds
the connections that arrive, and each is accepted when a worker frees up, normally when an idle
keep-alive connection reaches its timeout T. Nothing is refused or reset: "the 101st connection"
waits. `--max-connections N` makes the three reference servers behave so:

- stdlib: at most N connection threads (a bounded pool): the accept thread takes a slot before
  each accept() and blocks while none is free (`KeepAliveHTTPServer.get_request`);
- aiohttp and uvloop: `LimitedAcceptor`, a `servers.accept.LoopAcceptor` that accepts at most
  the free slots' worth and removes its reader while none is free; a close adds it back.

A slot is taken at accept and freed when the connection's close is counted
(`Counters.on_closed`), whichever path closed it (a TLS handshake that failed too).

`--reclaim-idle` is nginx's answer when it runs out of worker connections
(ngx_drain_connections): when every slot is taken and a connection waits, the longest-idle
keep-alive connection (one that has been answered and waits for its next request, none in
flight) is closed at once, with a FIN and no reset, counted as `reclaimed`; the newcomer gets
its slot. A connection that has not sent its first request yet, or is being served, is never
reclaimed. Each time accepting stops because no slot is free counts once in `accept_pauses`.

Without `--max-connections` none of this runs: the servers build a plain `LoopAcceptor` and the
stdlib server's accept path has one `is None` test.
"""

from __future__ import annotations

import asyncio
import heapq
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from servers.accept import AcceptBackoff, Connector, LoopAcceptor
from servers.counters import Counters

# With --reclaim-idle and nothing idle to reclaim (every connection is being served), how often
# the full server looks again for one that has become idle, while a connection waits.
RECLAIM_RETRY_S = 0.05


class Slots:
    """At most `limit` connections open at once: taken at accept, freed at the counted close.

    Thread-safe: the stdlib server takes slots in its accept thread and frees them in connection
    threads; the asyncio servers do both on their loop."""

    def __init__(self, limit: int, counters: Counters) -> None:
        if limit < 1:
            raise ValueError(f"a slot limit must be at least 1, got {limit}")
        self.limit = limit
        self._taken = 0
        self._cond = threading.Condition()
        self._wake: Callable[[], None] | None = None
        counters.on_closed = self.release

    @property
    def taken(self) -> int:
        return self._taken

    def room(self) -> int:
        """Free slots now."""
        return self.limit - self._taken

    def take(self) -> None:
        """A connection was accepted (the caller checked `room`, or waited in `take_within`)."""
        with self._cond:
            self._taken += 1

    def take_within(self, timeout_s: float) -> bool:
        """Take a slot, waiting up to `timeout_s` for one to be freed; False if none was."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._taken < self.limit, timeout_s):
                return False
            self._taken += 1
            return True

    def release(self) -> None:
        """A connection closed (or an accept that took a slot failed): its slot is free."""
        with self._cond:
            self._taken -= 1
            self._cond.notify()
            wake, self._wake = self._wake, None
        if wake is not None:
            wake()

    def wake_on_release(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` (once) at the next release: an event loop's acceptor resumes."""
        with self._cond:
            self._wake = callback


class Reclaimable(Protocol):
    """A connection that `--reclaim-idle` may close (each server's connection object)."""

    def idle_deadline(self) -> float | None:
        """When its idle timer would close it; None unless it is idle between two requests."""

    def reclaim(self) -> None:
        """Close it now (it is idle: FIN, no reset), counted as `reclaimed`."""


def reclaim_longest_idle(connections: Iterable[Reclaimable], count: int) -> int:
    """Close up to `count` idle keep-alive connections, the longest idle first (the earliest
    idle deadline: every connection of a server has the same T); how many were closed."""
    idle = [(at, i, c) for i, c in enumerate(connections) if (at := c.idle_deadline()) is not None]
    chosen = heapq.nsmallest(count, idle)
    for _, _, conn in chosen:
        conn.reclaim()
    return len(chosen)


class LimitedAcceptor(LoopAcceptor):
    """A `LoopAcceptor` that keeps at most `slots.limit` connections open: it accepts no more
    than the free slots, and while none is free it stops reading the listener (the backlog
    holds the newcomers) until a close frees one; with `reclaim` it first closes as many idle
    keep-alive connections as connections wait. The parent's accept loop is unchanged (a
    server without `--max-connections` never builds this class)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: socket.socket,
        backoff: AcceptBackoff,
        on_socket: Callable[[socket.socket], None],
        on_batch_end: Callable[[], None] | None = None,
        *,
        slots: Slots,
        counters: Counters,
        reclaim: Callable[[int], int] | None = None,
    ) -> None:
        def take_slot(sock: socket.socket) -> None:
            slots.take()
            on_socket(sock)

        super().__init__(loop, listener, backoff, take_slot, on_batch_end)
        self._slots = slots
        self._counters = counters
        self._reclaim = reclaim
        self._full = False  # the reader is off because every slot is taken
        self._retry: asyncio.TimerHandle | None = None  # the next look for an idle connection

    def _queued(self) -> int:
        """The parent's batch, but never more than the free slots (at least 1 here)."""
        return min(super()._queued(), self._slots.room())

    def _on_readable(self) -> None:
        if self._slots.room() <= 0:
            self._stop_until_room()
            return
        super()._on_readable()

    def _stop_until_room(self) -> None:
        self._loop.remove_reader(self._listener.fileno())
        if not self._full:
            self._full = True
            self._counters.accept_paused()
        self._slots.wake_on_release(self._room_again)
        if self._reclaim is not None:
            waiting = LoopAcceptor._queued(self)  # as many as wait (at most ACCEPT_BATCH)
            if self._reclaim(waiting) < waiting and self._retry is None:
                # Those being served now become idle later: look again soon.
                self._retry = self._loop.call_later(RECLAIM_RETRY_S, self._look_again)

    def _look_again(self) -> None:
        """Still full: read the listener again; if a connection still waits, `_on_readable`
        finds no room and reclaims what has become idle since."""
        self._retry = None
        if self._full and self._serving and self._resume is None:
            self._loop.add_reader(self._listener.fileno(), self._on_readable)

    def _room_again(self) -> None:
        self._full = False
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._serving and self._resume is None:  # else the back-off's timer adds it back
            self._loop.add_reader(self._listener.fileno(), self._on_readable)

    def close(self) -> None:
        self._slots.wake_on_release(None)
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        super().close()


def loop_acceptor(
    loop: asyncio.AbstractEventLoop,
    listener: socket.socket,
    backoff: AcceptBackoff,
    connector: Connector,
    *,
    slots: Slots | None,
    counters: Counters,
    reclaim: Callable[[int], int] | None,
) -> LoopAcceptor:
    """The acceptor of an asyncio server: `LimitedAcceptor` with slots, else the plain one."""
    on_socket, batch_end = connector.on_socket, connector.batch_end
    if slots is None:
        return LoopAcceptor(loop, listener, backoff, on_socket, batch_end)
    return LimitedAcceptor(
        loop, listener, backoff, on_socket, batch_end, slots=slots, counters=counters,
        reclaim=reclaim,
    )  # fmt: skip
