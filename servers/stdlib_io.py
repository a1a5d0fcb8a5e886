"""Socket plumbing for the stdlib server: deadline-aware reads, one-send writes, the closes.

http.server reads through `socket.makefile()`, whose timeout restarts on every `recv()`: a client
that trickles one header byte every 0.3 s never times out (slowloris, IDLE-05). `DeadlineSocketIO`
keeps the same buffered-reader shape but sets the socket timeout to the time *remaining* before an
absolute deadline ahead of every `recv()`, so the header deadline H is a deadline, not a per-byte
allowance. Bytes already buffered (pipelined requests) are served without any `recv()`, so an idle
deadline can never fire while the next request is waiting in the buffer.

`discard_body` drains what a handler ignores (spec rule 8), framed by `framing.BodyReader`, so
the next request on a keep-alive connection starts where it should: BODY-01's body that looks
like a request line is never parsed as one.
"""

from __future__ import annotations

import contextlib
import io
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # collections.abc.Buffer from Python 3.12 on; typeshed knows it for 3.11
    from typing_extensions import Buffer

from servers.framing import (
    BodyReader,
    ProtocolError,
    request_line_prefix_error,
    request_line_too_long,
)
from servers.policy import LINGER_S

DRAIN_CHUNK = 64 * 1024


class ClientGone(Exception):
    """EOF in the middle of a request: the client went away, nothing to answer."""


class DeadlineSocketIO(socket.SocketIO):
    """`socket.SocketIO` whose reads stop at an absolute `deadline` (monotonic seconds).

    With `deadline` None the socket's own timeout applies per read (used for bodies, where a
    large upload must not be cut by a fixed deadline, only by silence).
    """

    deadline: float | None = None

    def readinto(self, b: Buffer) -> int | None:
        if self.deadline is None:
            return super().readinto(b)
        # Past the deadline, still take bytes that are already here (timeout 0): a thread that
        # was scheduled late must not time out a client that was on time; it just won't wait.
        # SocketIO keeps its socket in `_sock`, which typeshed does not declare.
        self._sock.settimeout(max(self.deadline - time.monotonic(), 0.0))  # type: ignore[attr-defined]
        try:
            count = super().readinto(b)
        except ssl.SSLWantReadError:
            count = None
        if count is None:  # EWOULDBLOCK at timeout 0
            raise TimeoutError("deadline passed")
        return count


class SendallWriter(io.BufferedIOBase):
    """`wfile` for http.server: every write is one `sendall()`, nothing buffered or split.

    Responses are assembled (headers and body) before the write, so each is one send and Nagle
    never meets a two-part response (rule 10, belt and braces with TCP_NODELAY).
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer) -> int:
        self._sock.sendall(data)
        return len(memoryview(data))


Checker = Callable[[bytes], ProtocolError | None]


def read_line(
    rfile: io.BufferedReader,
    limit: int,
    too_long: Callable[[bytes], ProtocolError],
    cut_short: Checker = lambda line: None,
) -> bytes:
    """A line of at most `limit` bytes, CRLF included; `too_long(start of the line)` beyond.
    At EOF inside a line, the error `cut_short(what came of it)` finds, else ClientGone: llhttp
    (the uvloop and aiohttp servers) answers 400 at the first byte that no line continues
    with, so junk before the client's FIN gets its 400 here too.

    A bare LF is a 400, as llhttp answers it: RFC 9112 §2.2 lets a recipient accept it, but two
    servers of this suite must not disagree on framing.
    """
    line = rfile.readline(limit + 1)
    _check_end(line, limit, too_long, cut_short)
    if not line.endswith(b"\r\n"):
        raise ProtocolError(400, "line ended by a bare LF")
    return line


def read_request_line(rfile: io.BufferedReader, limit: int) -> bytes:
    """The next request line with its line end, after any CR and LF bytes: llhttp skips them
    all before a request (RFC 9112 §2.2 asks to ignore at least one empty line), a lone `\r` or
    `\n` too. Its limit, cut-short and bare-LF rules are read_line's, except that a bare LF is
    returned: llhttp takes it after an HTTP/0.9 line (`GET /x`), so the caller decides."""
    while True:
        raw = rfile.readline(limit + 1)
        if not raw:
            raise ClientGone
        line = raw.lstrip(b"\r\n")
        if line:
            _check_end(line, limit, request_line_too_long, request_line_prefix_error)
            return line


def _check_end(
    line: bytes, limit: int, too_long: Callable[[bytes], ProtocolError], cut_short: Checker
) -> None:
    if len(line) > limit:
        raise too_long(line)
    if not line.endswith(b"\n"):
        error = cut_short(line) if line else None
        raise error or ClientGone()


def discard_exact(rfile: io.BufferedReader, length: int) -> None:
    """Read and drop `length` body bytes (a handler here never needs a body, rule 8)."""
    while length > 0:
        chunk = rfile.read1(min(length, DRAIN_CHUNK))
        if not chunk:
            raise ClientGone
        length -= len(chunk)


def discard_body(rfile: io.BufferedReader, reader: BodyReader) -> None:
    """Read and drop a body as `reader` frames it (Content-Length or chunked, with extensions
    and trailers), leaving the bytes after it (the next pipelined request) in `rfile`."""
    while True:
        data = rfile.peek(DRAIN_CHUNK)  # what is buffered, or one recv() when nothing is
        if not data:
            raise ClientGone
        used = reader.feed(data)
        rfile.read(len(data) if used is None else used)  # buffered: never blocks
        if used is not None:
            return


def graceful_close(sock: socket.socket, linger_s: float = LINGER_S) -> None:
    """Rule 4 (RFC 9112 §9.6): half-close, read and discard until EOF or `linger_s`, then close.

    Closing a socket with unread input sends a TCP reset, which can destroy the last response
    before the client has read it (pipelined requests after a `close`, a 70 KB request line).
    Reads go to the TCP socket directly: on TLS the discarded bytes need no decryption.
    """
    with contextlib.suppress(OSError, ValueError):
        if isinstance(sock, ssl.SSLSocket):
            _send_close_notify(sock)
        socket.socket.shutdown(sock, socket.SHUT_WR)
        deadline = time.monotonic() + linger_s
        while (remaining := deadline - time.monotonic()) > 0:
            socket.socket.settimeout(sock, remaining)
            if not socket.socket.recv(sock, DRAIN_CHUNK):
                break
    sock.close()


def close_at_once(sock: socket.socket) -> None:
    """Rule 4 when the client asked to close and sent nothing more: no half-close, no linger.

    The response is already written (sendall returned), so the FIN follows it; a byte the
    client still sends after that gets a reset, which the client announced it would not do.
    """
    with contextlib.suppress(OSError, ValueError):
        if isinstance(sock, ssl.SSLSocket):
            _send_close_notify(sock)
    sock.close()


def _send_close_notify(sock: ssl.SSLSocket) -> None:
    """Send TLS close_notify without waiting for the peer's (non-blocking unwrap)."""
    sock.settimeout(0)
    with contextlib.suppress(OSError, ValueError):
        sock.unwrap()
