"""Raw-socket HTTP/1.1 client for the conformance suite: bytes out, strictly parsed bytes back.

No HTTP library sits between the tests and the server: requests are written byte for byte and
responses go through a tiny strict parser (status line, `name: value` fields ending in CRLF,
Content-Length or chunked bodies, no body after HEAD, 1xx, 204 or 304). The end of a connection is
classified: `EOF` (the peer closed gracefully, `recv()` returned b''), `RESET` (a TCP reset) or
`OPEN` (nothing happened before the deadline), together with when it happened and any bytes that
arrived first.
"""

from __future__ import annotations

import enum
import re
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

CRLF = b"\r\n"
DEFAULT_TIMEOUT_S = 5.0
_STATUS_LINE = re.compile(rb"^HTTP/(1)\.([01]) (\d{3}) ([\t !-~\x80-\xff]*)$")
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FIELD_VALUE = re.compile(rb"^[\t !-~\x80-\xff]*$")
_CHUNK_SIZE = re.compile(rb"^([0-9A-Fa-f]+)(;.*)?$")
NO_BODY_STATUSES = frozenset({204, 304})
TCP_CLOSE = 7  # tcpi_state after a reset (include/net/tcp_states.h)


def G(path: str, *headers: str, version: str = "1.1", method: str = "GET") -> bytes:  # noqa: N802
    """The spec's `G(x)`: `GET /x HTTP/1.1`, `Host: t`, then any extra header lines."""
    lines = [f"{method} {path} HTTP/{version}"]
    if version != "1.0":
        lines.append("Host: t")
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def post(path: str, body: bytes, *headers: str, version: str = "1.1") -> bytes:
    """A POST with a Content-Length body (headers first, then the body)."""
    head = G(path, f"Content-Length: {len(body)}", *headers, version=version, method="POST")
    return head + body


class ProtocolViolation(AssertionError):
    """The server sent bytes that are not a well-formed HTTP/1.1 response."""


class Closed(AssertionError):
    """The connection ended (EOF or reset) while a response was expected."""

    def __init__(self, kind: End, partial: bytes) -> None:
        super().__init__(f"connection ended ({kind.value}) with {partial[:200]!r} unparsed")
        self.kind = kind
        self.partial = partial


class End(enum.Enum):
    EOF = "eof"  # recv() returned b'': graceful close (FIN, or TLS EOF)
    RESET = "reset"  # ECONNRESET / EPIPE: the peer reset the connection
    OPEN = "open"  # still open when the deadline passed


@dataclass(frozen=True)
class Response:
    version: tuple[int, int]
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    framing: str  # "length", "chunked", "none" (HEAD/1xx/204/304) or "eof" (read until close)
    raw: bytes

    def values(self, name: str) -> list[str]:
        """Every value of field `name` (case-insensitive), in received order."""
        lname = name.lower()
        return [v for n, v in self.headers if n.lower() == lname]

    def header(self, name: str) -> str | None:
        """The single value of `name`, None if absent; more than one is a test failure."""
        found = self.values(name)
        if len(found) > 1:
            raise ProtocolViolation(f"{name} appears {len(found)} times: {found}")
        return found[0] if found else None

    @property
    def connection_tokens(self) -> frozenset[str]:
        return frozenset(
            t.strip().lower() for v in self.values("Connection") for t in v.split(",") if t.strip()
        )

    def __str__(self) -> str:
        return f"<{self.status} {self.headers} body={self.body[:80]!r}>"


@dataclass(frozen=True)
class Ending:
    """How a connection ended: kind, seconds from the reference time, bytes received first."""

    kind: End
    elapsed_s: float
    data: bytes


class RawConnection:
    """One client socket; `with RawConnection.open(host, port) as c: c.send(...); c.response()`."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.ended: End | None = None
        self.ended_at: float | None = None
        self._consumed = bytearray()  # the bytes of the response being parsed

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        *,
        ca_path: Path | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        rcvbuf: int | None = None,
    ) -> RawConnection:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout_s)
            sock.connect((host, port))
            if ca_path is not None:
                ctx = ssl.create_default_context(cafile=str(ca_path))
                sock = ctx.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # -- writing -------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Send, but a connection the server already ended is an answer, not an error."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return False
        return True

    def shutdown_write(self) -> None:
        if isinstance(self.sock, ssl.SSLSocket):
            raise NotImplementedError("half-close is not tested over TLS")
        self.sock.shutdown(socket.SHUT_WR)

    # -- reading -------------------------------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        """Read once into the buffer; False when the connection ended (recorded in `ended`)."""
        if self.ended is not None:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data before the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            self._end(End.RESET)
            return False
        except ssl.SSLError as exc:  # a reset in the middle of a TLS record
            if "EOF" in str(exc) or "RESET" in str(exc).upper():
                self._end(End.RESET)
                return False
            raise
        if not chunk:
            self._end(End.EOF)
            return False
        self.buffer += chunk
        return True

    def _end(self, kind: End) -> None:
        self.ended = kind
        self.ended_at = time.monotonic()

    def _take_line(self, deadline: float, limit: int = 65536) -> bytes:
        while True:
            idx = self.buffer.find(CRLF)
            if idx >= 0:
                line = bytes(self.buffer[:idx])
                self._consumed += self.buffer[: idx + 2]
                del self.buffer[: idx + 2]
                if b"\n" in line or b"\r" in line:
                    raise ProtocolViolation(f"bare CR or LF in line {line[:200]!r}")
                return line
            if len(self.buffer) > limit:
                raise ProtocolViolation(f"line longer than {limit} bytes")
            if not self._fill(deadline):
                raise Closed(self.ended or End.EOF, bytes(self.buffer))

    def _take(self, n: int, deadline: float) -> bytes:
        while len(self.buffer) < n:
            if not self._fill(deadline):
                raise Closed(self.ended or End.EOF, bytes(self.buffer))
        data = bytes(self.buffer[:n])
        self._consumed += data
        del self.buffer[:n]
        return data

    def response(
        self, method: str = "GET", timeout_s: float = DEFAULT_TIMEOUT_S, *, interim: bool = False
    ) -> Response:
        """Read and strictly parse one response to a `method` request.

        1xx responses are returned only with `interim=True`; otherwise receiving one is a failure
        (no test sends a request that may legitimately get one, except BODY-03).
        """
        try:
            return self._response(method, timeout_s, interim)
        except TimeoutError:
            raise AssertionError(
                f"no complete response within {timeout_s:g} s; "
                f"received {bytes(self._consumed + self.buffer)[:300]!r}"
            ) from None

    def _response(self, method: str, timeout_s: float, interim: bool) -> Response:
        deadline = time.monotonic() + timeout_s
        self._consumed = bytearray()
        status_line = self._take_line(deadline)
        match = _STATUS_LINE.match(status_line)
        if match is None:
            raise ProtocolViolation(f"bad status line {status_line[:200]!r}")
        version = (int(match[1]), int(match[2]))
        status = int(match[3])
        headers: list[tuple[str, str]] = []
        while True:
            line = self._take_line(deadline)
            if not line:
                break
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.match(name):
                raise ProtocolViolation(f"bad header line {line[:200]!r}")
            value = value.strip(b" \t")
            if not _FIELD_VALUE.match(value):
                raise ProtocolViolation(f"bad header value {line[:200]!r}")
            headers.append((name.decode("ascii"), value.decode("latin-1")))
        head = Response(version, status, match[4].decode("latin-1"), headers, b"", "none", b"")
        if 100 <= status < 200:
            if not interim:
                raise ProtocolViolation(f"unexpected interim response {status}")
            if head.values("Content-Length") or head.values("Transfer-Encoding"):
                raise ProtocolViolation("1xx response with body framing headers")
            return head
        body, framing = self._body(head, method, deadline)
        raw = bytes(self._consumed)
        return Response(version, status, head.reason, headers, body, framing, raw)

    def _body(self, head: Response, method: str, deadline: float) -> tuple[bytes, str]:
        lengths = head.values("Content-Length")
        codings = head.values("Transfer-Encoding")
        if lengths and codings:
            raise ProtocolViolation("response has both Content-Length and Transfer-Encoding")
        if len(set(lengths)) > 1:
            raise ProtocolViolation(f"conflicting Content-Length {lengths}")
        if lengths and not (lengths[0].isascii() and lengths[0].isdigit()):
            raise ProtocolViolation(f"bad Content-Length {lengths}")
        if method == "HEAD" or head.status in NO_BODY_STATUSES:
            if head.status in NO_BODY_STATUSES and codings:
                raise ProtocolViolation(f"{head.status} response with Transfer-Encoding")
            return b"", "none"
        if codings:
            if [c.strip().lower() for c in ",".join(codings).split(",")] != ["chunked"]:
                raise ProtocolViolation(f"unexpected response transfer coding {codings}")
            return self._chunked(deadline), "chunked"
        if lengths:
            return self._take(int(lengths[0]), deadline), "length"
        # Delimited by close: read to EOF.
        while self._fill(deadline):
            pass
        if self.ended is not End.EOF:
            raise Closed(self.ended or End.RESET, bytes(self.buffer))
        body = bytes(self.buffer)
        self._consumed += body
        self.buffer.clear()
        return body, "eof"

    def _chunked(self, deadline: float) -> bytes:
        body = bytearray()
        while True:
            line = self._take_line(deadline)
            match = _CHUNK_SIZE.match(line)
            if match is None:
                raise ProtocolViolation(f"bad chunk size line {line[:80]!r}")
            size = int(match[1], 16)
            if size == 0:
                while self._take_line(deadline):  # trailer section
                    pass
                return bytes(body)
            body += self._take(size, deadline)
            if self._take(2, deadline) != CRLF:
                raise ProtocolViolation("chunk data not followed by CRLF")

    def responses(
        self, count: int, method: str = "GET", timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> list[Response]:
        out: list[Response] = []
        for _ in range(count):
            try:
                out.append(self.response(method, timeout_s))
            except AssertionError as exc:
                if not out:
                    raise
                got = ", ".join(f"{r.status} {r.body[:60]!r}" for r in out)
                raise AssertionError(
                    f"after {len(out)} of {count} responses ({got}): {exc}"
                ) from None
        return out

    def wait_end(self, timeout_s: float, since: float | None = None) -> Ending:
        """Wait up to `timeout_s` for the connection to end; collect whatever arrives first.

        `elapsed_s` is measured from `since` (a `time.monotonic()` value, default now).
        """
        start = time.monotonic() if since is None else since
        deadline = time.monotonic() + timeout_s
        try:
            while self._fill(deadline):
                pass
        except TimeoutError:
            data = bytes(self.buffer)
            self.buffer.clear()
            return Ending(End.OPEN, time.monotonic() - start, data)
        except OSError as exc:  # socket.timeout is TimeoutError; anything else is a failure
            raise AssertionError(f"unexpected socket error {exc!r}") from exc
        data = bytes(self.buffer)
        self.buffer.clear()
        assert self.ended is not None and self.ended_at is not None
        return Ending(self.ended, self.ended_at - start, data)

    def expect_graceful_close(self, timeout_s: float = 3.0) -> None:
        """Rule 4: no more bytes, then `recv()` returns b'' (FIN), not a reset."""
        ending = self.wait_end(timeout_s)
        assert ending.data == b"", f"unexpected bytes before the close: {ending.data[:200]!r}"
        assert ending.kind is End.EOF, f"expected a graceful close, got {ending.kind.value}"

    def poke_after_close(self, wait_s: float) -> bool:
        """After the server's FIN: send one byte; True once the server answers it with a reset
        (its socket is closed), False when `wait_s` passes without one (it read and discarded
        the byte: it lingers). Reads the kernel's TCP state (Linux TCP_INFO): our side sits in
        CLOSE_WAIT until a reset moves it to CLOSE."""
        if isinstance(self.sock, ssl.SSLSocket):
            raise NotImplementedError("a poke after the close is not tested over TLS")
        self.sock.sendall(b"x")
        deadline = time.monotonic() + wait_s
        while self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != TCP_CLOSE:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def expect_open(self, for_s: float) -> None:
        """Nothing arrives and the connection stays open for `for_s` seconds."""
        ending = self.wait_end(for_s)
        assert ending.kind is End.OPEN, (
            f"connection ended ({ending.kind.value}) after {ending.elapsed_s:.2f} s"
        )
        assert ending.data == b"", f"unsolicited bytes: {ending.data[:200]!r}"


def parse_responses(data: bytes, methods: list[str]) -> list[Response]:
    """Parse a complete byte string of responses (for byte-exact table tests of the parser)."""

    class _Replay(RawConnection):
        def __init__(self, payload: bytes) -> None:
            super().__init__(socket.socket())
            self.sock.close()
            self.buffer = bytearray(payload)

        def _fill(self, deadline: float) -> bool:
            if self.ended is None:
                self._end(End.EOF)
            return False

    replay = _Replay(data)
    out = [replay.response(m) for m in methods]
    if replay.buffer:
        raise ProtocolViolation(f"{len(replay.buffer)} trailing bytes: {bytes(replay.buffer)!r}")
    return out
