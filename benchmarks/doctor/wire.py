"""One raw connection: send bytes, frame responses, time the server's close.

Reads wait with a deadline in `recv` itself (the kernel wakes us when bytes, a FIN or a reset
arrive), so a close is timed to within a millisecond or so, far better than the 50 ms the doctor
promises. Over TLS the same holds: Python's ssl handles records that carry no data (a TLS 1.3
session ticket) inside `recv` and keeps waiting.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import ssl
import time
from dataclasses import dataclass

from benchmarks.doctor.headers import Head, MalformedResponse, parse_head
from benchmarks.doctor.target import Target

clock = time.monotonic
READ_TIMEOUT_S = 10.0  # how long a response may take before the probe gives up on it
MAX_HEAD_BYTES = 64 * 1024
USER_AGENT = "keepalive-bench-doctor"


class CloseKind(enum.StrEnum):
    """How a connection ended, as the client saw it."""

    FIN = "fin"  # recv returned b'' (TLS: close_notify or EOF)
    RESET = "reset"  # ECONNRESET or EPIPE: a TCP reset
    OPEN = "open"  # still open when we stopped waiting


class ConnectionEnded(Exception):
    """The server ended the connection while we waited for bytes."""

    def __init__(self, kind: CloseKind, detail: str = "") -> None:
        super().__init__(detail or kind.value)
        self.kind = kind
        self.at = clock()


class ReadTimeout(Exception):
    """No complete response before the deadline; the connection is still open."""


@dataclass(frozen=True)
class Response:
    head: Head
    body_len: int
    finished_at: float  # monotonic time the last byte was read
    close_delimited: bool = False  # body ran to EOF: the connection is over


@dataclass(frozen=True)
class CloseEvent:
    kind: CloseKind
    after_s: float | None  # seconds from `since` to the close; None when still open
    unsolicited: bytes = b""  # bytes the server sent on the idle connection (a 408, say)


def request(
    target: Target,
    method: str = "GET",
    version: str = "1.1",
    connection: str | None = None,
    path: str | None = None,
) -> bytes:
    """One request for the URL's path (or `path`), with a Host header for the URL's host."""
    lines = [f"{method} {path or target.path} HTTP/{version}", f"Host: {target.host_header}"]
    lines.append(f"User-Agent: {USER_AGENT}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Conn:
    """A connection to the target, plain or TLS, with a receive buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.ended: CloseKind | None = None

    @classmethod
    def open(cls, target: Target, timeout_s: float = READ_TIMEOUT_S) -> Conn:
        """Connect (and handshake over TLS); OSError / ssl.SSLError propagate."""
        sock = target.connect_tcp()
        if target.tls:
            try:
                sock.settimeout(timeout_s)
                sock = target.ssl_context().wrap_socket(sock, server_hostname=target.host)
            except BaseException:
                sock.close()
                raise
        return cls(sock)

    def send(self, data: bytes) -> None:
        """Write all of it; a reset or broken pipe becomes ConnectionEnded."""
        try:
            self.sock.settimeout(READ_TIMEOUT_S)
            self.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.ended = CloseKind.RESET
            raise ConnectionEnded(CloseKind.RESET, type(exc).__name__) from exc
        except ssl.SSLError as exc:
            self.ended = CloseKind.RESET
            raise ConnectionEnded(CloseKind.RESET, f"TLS: {exc.reason}") from exc

    def _fill(self, deadline: float) -> None:
        """Append the next bytes to the buffer or raise ConnectionEnded / ReadTimeout."""
        remaining = deadline - clock()
        if remaining <= 0:
            raise ReadTimeout
        try:
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
        except TimeoutError as exc:
            raise ReadTimeout from exc
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.ended = CloseKind.RESET
            raise ConnectionEnded(CloseKind.RESET, type(exc).__name__) from exc
        except ssl.SSLWantReadError as exc:  # a non-data record; keep waiting
            if clock() >= deadline:
                raise ReadTimeout from exc
            return
        except ssl.SSLError as exc:
            self.ended = CloseKind.RESET
            raise ConnectionEnded(CloseKind.RESET, f"TLS: {exc.reason}") from exc
        if not data:
            self.ended = CloseKind.FIN
            raise ConnectionEnded(CloseKind.FIN)
        self.buf += data

    def read_response(self, method: str = "GET", timeout_s: float = READ_TIMEOUT_S) -> Response:
        """The next final response (1xx skipped), framed as RFC 9112 §6.3 says."""
        deadline = clock() + timeout_s
        while True:
            head = self._read_head(deadline)
            if not 100 <= head.status < 200 or head.status == 101:
                break
        if method == "HEAD" or head.status in (101, 204, 304):
            return Response(head, 0, clock())
        encoding = (head.header("Transfer-Encoding") or "").lower()
        if encoding:
            if encoding.split(",")[-1].strip() != "chunked":
                return self._to_eof(head, deadline)
            return Response(head, self._read_chunked(deadline), clock())
        length = head.header("Content-Length")
        if length is None:
            return self._to_eof(head, deadline)
        if not length.isdigit():
            raise MalformedResponse(f"bad Content-Length {length!r}")
        n = int(length)
        while len(self.buf) < n:
            self._fill(deadline)
        self.buf = self.buf[n:]
        return Response(head, n, clock())

    def _read_head(self, deadline: float) -> Head:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                raw, self.buf = self.buf[:end], self.buf[end + 4 :]
                return parse_head(raw)
            if len(self.buf) > MAX_HEAD_BYTES:
                raise MalformedResponse("response head over 64 KiB")
            self._fill(deadline)

    def _read_line(self, deadline: float) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            self._fill(deadline)
        line, self.buf = self.buf[:end], self.buf[end + 2 :]
        return line

    def _read_chunked(self, deadline: float) -> int:
        total = 0
        while True:
            size_text = self._read_line(deadline).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError as exc:
                raise MalformedResponse(f"bad chunk size {size_text[:20]!r}") from exc
            if size == 0:
                while self._read_line(deadline):  # trailers, up to the empty line
                    pass
                return total
            while len(self.buf) < size + 2:
                self._fill(deadline)
            self.buf = self.buf[size + 2 :]
            total += size

    def _to_eof(self, head: Head, deadline: float) -> Response:
        try:
            while True:
                self._fill(deadline)
        except ConnectionEnded:
            pass
        n, self.buf = len(self.buf), b""
        return Response(head, n, clock(), close_delimited=True)

    def wait_close(self, since: float, until: float) -> CloseEvent:
        """Wait (reading) until the server closes or `until`; time the close from `since`."""
        unsolicited = b""
        if self.ended is not None:
            return CloseEvent(self.ended, clock() - since)
        while True:
            try:
                self._fill(until)
            except ConnectionEnded as end:
                return CloseEvent(end.kind, end.at - since, unsolicited + self.buf)
            except ReadTimeout:
                return CloseEvent(CloseKind.OPEN, None, unsolicited + self.buf)
            unsolicited += self.buf
            self.buf = b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
