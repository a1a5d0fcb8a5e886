"""Accepting connections when accept() fails: back off, log once, never spin.

At the file-descriptor limit (EMFILE, ENFILE) accept() fails while the listening socket stays
readable, so a loop that retries at once burns a core, and one that logs each failure writes
thousands of lines a second (asyncio's own accept loop does both in Python 3.11: it logs a
traceback per failed accept, up to the backlog per wake-up). What nginx and uvicorn do instead,
and every listener here does (the three servers' and the control listener):

- stop accepting for ACCEPT_BACKOFF_S, then try again; the waiting connections stay queued in
  the kernel's backlog and are served once descriptors free up (libuv's answer, which uvloop
  inherits, is worse: it accepts and closes every queued connection, so the uvloop server
  accepts from its own loop, `LoopAcceptor`, rather than uvloop's `create_server`);
- log one stderr line per episode (failures less than EPISODE_GAP_S apart are one episode),
  not one per failed accept;
- count the episodes (`accept_backoffs` in /counters, for the servers' listeners).

A connection the client aborted before it was accepted (ECONNABORTED), and the network errors
Linux reports from accept() for such a connection, are skipped without a pause: the next one in
the queue may be fine. Every other accept error is treated like EMFILE (a pause, not a spin).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
import ssl as ssl_module
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

ACCEPT_BACKOFF_S = 0.25  # nginx pauses 0.5 s, uvicorn (asyncio) 1 s; shorter serves sooner
EPISODE_GAP_S = 1.0  # failures closer together than this are one episode (one log line)
ACCEPT_BATCH = 128  # connections accepted per wake-up of an event loop, as asyncio does
# struct tcp_info (linux/tcp.h): 8 bytes of u8 fields, then u32 rto, ato, snd_mss, rcv_mss,
# unacked: for a listening socket, unacked is the accept queue's length (sk_ack_backlog).
_TCP_INFO_BYTES = 32
_UNACKED = slice(24, 28)

# accept(2) on Linux: "pending network errors on the new socket" are returned by accept(); the
# connection is gone, the next one is not affected.
_SKIP_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
        "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "EPERM",
    )
    if hasattr(errno, name)
)  # fmt: skip


class AcceptBackoff:
    """What one listener does after a failed accept(): skip it, or pause (one log line per
    episode, and `on_episode` called once per episode, e.g. to count it).

    Thread-safe: the stdlib server and the control listener call it from their accept threads.
    """

    def __init__(
        self,
        label: str,
        *,
        on_episode: Callable[[], None] | None = None,
        delay_s: float = ACCEPT_BACKOFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.delay_s = delay_s
        self.episodes = 0
        self._on_episode = on_episode
        self._clock = clock
        self._last_failure: float | None = None
        self._lock = threading.Lock()

    def must_pause(self, exc: OSError) -> bool:
        """False for a failure that concerns one aborted connection only (retry at once);
        True otherwise, after logging and counting it if it begins an episode."""
        if exc.errno in _SKIP_ERRNOS:
            return False
        now = self._clock()
        with self._lock:
            new_episode = self._last_failure is None or now - self._last_failure > EPISODE_GAP_S
            self._last_failure = now
            if new_episode:
                self.episodes += 1
                episode = self.episodes
        if new_episode:
            if self._on_episode is not None:
                self._on_episode()
            sys.stderr.write(self._log_line(exc, episode) + "\n")
            sys.stderr.flush()
        return True

    def _log_line(self, exc: OSError, episode: int) -> str:
        code = errno.errorcode.get(exc.errno or 0, "unknown error")
        return (
            f"{self.label}: accept() failed: {exc.strerror or exc} ({code}); pausing accepts, "
            f"retried every {self.delay_s:g} s, waiting connections stay queued "
            f"(back-off episode {episode}, one line per episode)"
        )

    def pause_thread(self, exc: OSError) -> None:
        """For a thread that only accepts: sleep through the back-off when one is due."""
        if self.must_pause(exc):
            time.sleep(self.delay_s)


class LoopAcceptor(asyncio.AbstractServer):
    """Accept on a listening socket from an event loop's reader callback, with `AcceptBackoff`.

    asyncio's own accept loop floods the log at EMFILE (see the module docstring) and uvloop's
    (libuv's) closes the queued connections; this one removes its reader for the back-off and
    adds it again after. Each accepted socket is passed to `on_socket`, which hands it to the
    loop (`loop.connect_accepted_socket`). An `asyncio.AbstractServer`, so that code written
    for `loop.create_server`'s result (aiohttp's sites) can close it.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: socket.socket,
        backoff: AcceptBackoff,
        on_socket: Callable[[socket.socket], None],
        on_batch_end: Callable[[], None] | None = None,
    ) -> None:
        self._loop = loop
        self._listener = listener
        self._backoff = backoff
        self._on_socket = on_socket
        self._on_batch_end = on_batch_end  # after each wake-up's accepts (Connector.batch_end)
        self._serving = False
        self._resume: asyncio.TimerHandle | None = None
        self._accept = listener._accept  # type: ignore[attr-defined]
        self._make = _accepted_socket_class(loop, listener)
        self._getsockopt = listener.getsockopt
        tcp = listener.family in (socket.AF_INET, socket.AF_INET6)
        self._tcp_info: int | None = getattr(socket, "TCP_INFO", None) if tcp else None

    def start(self) -> None:
        self._listener.setblocking(False)
        self._serving = True
        self._loop.add_reader(self._listener.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        """Accept what is queued: as many connections as the kernel's accept queue holds.

        Accepting until accept() fails with EAGAIN costs an OSError per wake-up (strerror and
        locale decoding, about 5 us: more than the rest of accepting), and accepting one per
        wake-up stalls a recycling client: with 50 busy connections one loop iteration takes
        hundreds of microseconds, and the k-th connection queued in it waits k iterations
        (the recycle stall of `--keepalive-max`). The queue length is one getsockopt
        (`queued`). `_accept()` is `socket.accept()` without the socket it builds."""
        accept, make, on_socket = self._accept, self._make, self._on_socket
        for _ in range(self._queued()):
            try:
                fd, _ = accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if self._backoff.must_pause(exc):
                    self._pause()
                    break
                continue  # one aborted connection: the next may be fine
            on_socket(make(fd))
        if self._on_batch_end is not None:
            self._on_batch_end()

    def _queued(self) -> int:
        """Connections waiting in the listener's accept queue, at least 1 (the listener is
        readable) and at most ACCEPT_BATCH: Linux reports the accept queue's length in
        `tcpi_unacked` of a listening socket's TCP_INFO. 1 where that is not available."""
        if self._tcp_info is None:
            return 1
        try:
            info = self._getsockopt(socket.IPPROTO_TCP, self._tcp_info, _TCP_INFO_BYTES)
        except OSError:
            return 1
        queued = int.from_bytes(info[_UNACKED], sys.byteorder)
        return ACCEPT_BATCH if queued > ACCEPT_BATCH else queued or 1

    def _pause(self) -> None:
        self._loop.remove_reader(self._listener.fileno())
        self._resume = self._loop.call_later(self._backoff.delay_s, self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume = None
        if self._serving:
            self._loop.add_reader(self._listener.fileno(), self._on_readable)

    # -- asyncio.AbstractServer ----------------------------------------------------------------

    def close(self) -> None:
        """Stop accepting; the listening socket stays open (the runtime owns it)."""
        if self._serving:
            self._serving = False
            self._loop.remove_reader(self._listener.fileno())
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None

    async def start_serving(self) -> None:
        if not self._serving:
            self.start()

    async def serve_forever(self) -> None:
        raise NotImplementedError("started with start(), stopped with close()")

    async def wait_closed(self) -> None:
        return None

    def is_serving(self) -> bool:
        return self._serving

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._listener,)


class AdoptedFd(int):
    """What uvloop's `connect_accepted_socket` needs of an accepted socket, without building
    one: `socket.socket(fileno=...)` costs a getsockname() (CPython checks the descriptor) and
    a `detach()` at close. uvloop reads `family` and `type`, takes `fileno()` into a libuv
    handle that owns and closes it, and calls `close()` when that handle is closed (EBADF
    from an already closed descriptor is what it expects; this one does nothing).

    The descriptor itself, an int: built and asked for `fileno()` without a Python frame
    (`int.__index__` returns it); `close` is the same no-op. `family` and `type` are class
    attributes of the subclass made per listener (`_accepted_socket_class`)."""

    __slots__ = ()
    family: int
    type: int

    fileno = int.__index__
    close = int.__index__


def _accepted_socket_class(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> Callable[[int], Any]:
    """How an accepted descriptor is handed to `loop`: an `AdoptedFd` for uvloop, whose
    transports own the descriptor; for asyncio (whose transports use the socket object) a
    socket class whose `family` and `type` are plain attributes, since the loop reads them
    for every accepted socket and `socket.socket`'s properties convert them to enums."""
    family, kind, proto = listener.family, listener.type, listener.proto
    if type(loop).__module__.startswith("uvloop"):
        return type("ListenerFd", (AdoptedFd,), {"__slots__": (), "family": family, "type": kind})
    attributes = {"__slots__": (), "family": family, "type": kind}
    return functools.partial(
        type("AcceptedSocket", (socket.socket,), attributes), family, kind, proto
    )


class Connector:
    """A `LoopAcceptor.on_socket` that gives each socket to `loop.connect_accepted_socket`
    (which also does the TLS handshake), and its `on_batch_end`.

    The coroutine is stepped by hand rather than wrapped in a Task: it only awaits the loop's
    own future (the transport's waiter, done once `connection_made` has run), and a Task would
    double what accepting in Python adds to uvloop's own accept. Each coroutine's first step
    runs at accept (it builds the protocol and the transport and schedules `connection_made`);
    the last steps of one wake-up's coroutines run together in one loop callback scheduled at
    the end of the batch (`batch_end`), after every `connection_made` the batch scheduled:
    their waiters are done then, so no done-callback, `functools.partial` or loop handle is
    made per connection (a waiter still pending, a TLS handshake's, gets a done-callback).
    A connection that fails there (a failed handshake) ends as under `create_server`: closed
    by the loop, logged nowhere.
    """

    __slots__ = ("on_socket", "_started", "_call_soon")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        *,
        ssl: ssl_module.SSLContext | None = None,
        ssl_handshake_timeout: float | None = None,
    ) -> None:
        connect = loop.connect_accepted_socket
        started: list[tuple[Coroutine[Any, Any, object], Any]] = []  # this batch's
        self._started = started
        self._call_soon = loop.call_soon

        def on_socket(sock: socket.socket) -> None:  # an AdoptedFd on uvloop (LoopAcceptor)
            if ssl is None:  # no keyword arguments: they cost an argument parse per call
                coro = connect(protocol_factory, sock)
            else:
                coro = connect(
                    protocol_factory, sock, ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout
                )
            try:
                awaited = coro.send(None)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # StopIteration is success; a failure has closed the socket
                return
            started.append((coro, awaited))

        self.on_socket = on_socket

    def batch_end(self) -> None:
        """After a wake-up's accepts: finish their coroutines in one loop callback."""
        if self._started:
            self._call_soon(_finish, self._started.copy())
            self._started.clear()


def _finish(batch: list[tuple[Coroutine[Any, Any, object], Any]]) -> None:
    for coro, awaited in batch:
        if awaited.done():
            _drive(coro)
        else:
            awaited.add_done_callback(functools.partial(_drive, coro))


def _drive(coro: Coroutine[Any, Any, object], _: object = None) -> None:
    """Step `coro` once the future it waits on is done, and again whenever the next one is.
    Its result and its exception are dropped (a connection's fate is its protocol's)."""
    try:
        awaited = coro.send(None)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # StopIteration is success; a failure has closed the socket
        return
    awaited.add_done_callback(functools.partial(_drive, coro))
