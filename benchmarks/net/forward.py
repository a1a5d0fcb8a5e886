"""A TCP forwarder between two network namespaces that never crosses the relay.

A socket stays in the namespace it was created in, whatever thread uses it later, so one
process can listen in one namespace and connect in another: `Forwarder` accepts on a listener
made in namespace A (or the root namespace) and, for each connection, connects from namespace
B to a fixed target, then copies bytes both ways until both sides are done. The lab uses it to
reach Locust's web UI (bound to 127.0.0.1 inside a client namespace) from the host's
127.0.0.1, and to give Locust the server's control listener without a round trip: neither is
load, so neither belongs on the line.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

from benchmarks.net import netns

BUFFER = 64 * 1024
CONNECT_TIMEOUT_S = 5.0


def listen(address: tuple[str, int], namespace: str | None = None) -> socket.socket:
    """A listening TCP socket on `address` in `namespace` (None: this thread's own)."""
    with netns.inside(namespace) if namespace else contextlib.nullcontext():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


def connector(
    address: tuple[str, int], namespace: str | None = None
) -> Callable[[], socket.socket]:
    """A function that opens a new connection to `address` from `namespace`."""

    def connect() -> socket.socket:
        with netns.inside(namespace) if namespace else contextlib.nullcontext():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.connect(address)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        return sock

    return connect


class Forwarder:
    """Accept on `listener`, connect with `connect`, copy both ways; `close` ends it all."""

    def __init__(self, listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
        self.listener = listener
        self.connect = connect
        self._open: set[_Pair] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name="forward", daemon=True)

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def __enter__(self) -> Forwarder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = self.connect()
            except OSError:
                client.close()  # the target is not there (yet): the caller sees a reset
                continue
            pair = _Pair(client, upstream)
            with self._lock:
                if self._closed:
                    pair.close()
                    return
                self._open.add(pair)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        """src -> dst until src's EOF, which is passed on as a half-close."""
        try:
            while data := src.recv(BUFFER):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pair.abort()
        if pair.done():
            with self._lock:
                self._open.discard(pair)
            pair.close()

    def close(self) -> None:
        """Stop accepting and cut every open connection (their pumps then close them)."""
        with self._lock:
            self._closed = True
            pairs = list(self._open)
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for pair in pairs:
            pair.abort()
        if self._thread.is_alive():
            self._thread.join(2.0)


class _Pair:
    """A forwarded connection: both sockets, closed once both directions are done."""

    def __init__(self, a: socket.socket, b: socket.socket) -> None:
        self.socks = (a, b)
        self._pending = 2
        self._lock = threading.Lock()

    def done(self) -> bool:
        """One direction finished; True for the second, which closes the pair."""
        with self._lock:
            self._pending -= 1
            return self._pending == 0

    def abort(self) -> None:
        """Both directions stop now: each pump's recv() returns."""
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
