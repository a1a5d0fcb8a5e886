"""The request-head half of the uvloop protocol: httptools callbacks up to the end of headers.

`HeadParser` is an object the protocol composes (as uvicorn's httptools_impl composes a
`FlowControl`), kept apart so that each module reads on its own. It owns the httptools parser
and is the object llhttp calls back; what it decides about the connection it tells its owner
through the four methods of `HeadOwner`. Its fields below `parser` live for one request while
it is parsed. llhttp has no size limits, so the request-target (414) and the header section
(431) are counted here; versions go through `framing.parse_version` (505), and
Host/Content-Length/Transfer-Encoding through `framing.body_framing` (400/501) only when a
request has something to check, which keeps the common GET cheap. A body that llhttp will not
frame (an Upgrade or CONNECT request: httptools makes llhttp skip it) is noted in `unframed` for
the protocol to frame itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import httptools

from servers.framing import (
    MAX_HEADER_BYTES,
    MAX_REQUEST_LINE_BYTES,
    TWO_HOSTS,
    BodyFraming,
    BodyKind,
    ProtocolError,
    body_framing,
    check_target,
    parse_version,
)
from servers.policy import client_wants_persistence

HEAD, BODY, IDLE = 1, 2, 0  # parse phases
_TRACKED = frozenset({b"content-length", b"transfer-encoding", b"connection", b"expect"})
HTTP_11 = (1, 1)
_VERSIONS = {"1.1": HTTP_11, "1.0": (1, 0)}
NO_TOKENS: frozenset[str] = frozenset()
CLOSE_TOKENS: frozenset[str] = frozenset({"close"})  # `Connection: close`, as wrk sends it


class StopParsing(Exception):
    """Raised from a parser callback: no further request will be read on this connection."""


class HeadOwner(Protocol):
    """What the head parser needs from its connection (`uvloop_protocol.HttpProtocol`)."""

    def head_started(self) -> None:
        """A request begins: raise StopParsing if the connection reads no more requests."""

    def headers_ended(self) -> None:
        """The header section is complete, before it is checked: the header deadline is met.
        Called only when there is something to check (head_parsed does it again)."""

    def head_parsed(self, last: bool) -> None:
        """The header section is complete and valid (what headers_ended does, then the count);
        `last`: the client asked that no request follow it."""

    def continue_expected(self) -> None:
        """The request expects 100 Continue and a body follows."""

    def on_message_complete(self) -> None:
        """llhttp's end of a request (body included)."""


class HeadParser:
    """Connection-lifetime: the httptools parser and its callbacks up to `on_headers_complete`."""

    __slots__ = (
        "_owner", "_tokens_of", "on_message_complete", "parser",
        "url", "size", "conn", "framing", "hosts", "expect", "version", "tokens", "unframed",
    )  # fmt: skip

    def __init__(
        self, owner: HeadOwner, tokens_of: Callable[[list[bytes]], frozenset[str]]
    ) -> None:
        self._owner = owner
        self._tokens_of = tokens_of  # Connection field values -> tokens (memoised by the server)
        # llhttp calls the owner's end of message directly: no call through this object.
        self.on_message_complete = owner.on_message_complete
        self.parser = httptools.HttpRequestParser(self)  # binds the callbacks: set them first
        # Versions are validated by parse_version (505 for 2.x, 1.2 served as 1.x), not llhttp.
        self.parser.set_dangerous_leniencies(lenient_version=True)
        # Request-lifetime: reset by on_message_begin, set as the head is parsed.
        self.url = b""  # the request-target
        self.size = 0  # bytes of header fields so far (431)
        self.hosts = 0  # Host fields seen
        self.conn: list[bytes] | None = None  # Connection field values
        self.framing: list[tuple[str, str]] | None = None  # Content-Length, Transfer-Encoding
        self.expect = False  # Expect: 100-continue
        self.version = HTTP_11  # set by on_headers_complete, with `tokens`
        self.tokens = NO_TOKENS  # the Connection tokens
        self.unframed: BodyFraming | None = None  # a body llhttp skips; the protocol resets it

    def release(self) -> None:
        """At connection_lost: drop the parser and the owner, whose callbacks point back here
        (reference cycles, otherwise left to the cyclic collector)."""
        del self.parser, self._owner, self.on_message_complete

    def on_message_begin(self) -> None:
        self._owner.head_started()
        self.size = self.hosts = 0
        self.url = b""
        self.conn = self.framing = None
        self.expect = False

    def on_url(self, url: bytes) -> None:
        url = self.url + url if self.url else url
        if len(url) > MAX_REQUEST_LINE_BYTES:
            raise ProtocolError(414, "request-target too long")
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self.size + len(name) + len(value) + 4
        if size > MAX_HEADER_BYTES:
            raise ProtocolError(431, "request header fields too large")
        self.size = size
        key = name.lower()
        if key == b"host":
            self.hosts += 1
            if self.hosts > 1:  # any version, before a 505 (framing.TWO_HOSTS)
                raise ProtocolError(400, TWO_HOSTS)
        elif key in _TRACKED:
            self._track(key, value)

    def _track(self, key: bytes, value: bytes) -> None:
        if key == b"connection":
            self.conn = [*(self.conn or ()), value]
        elif key == b"expect":
            self.expect = value.strip().lower() == b"100-continue"
        else:  # Content-Length, Transfer-Encoding: validated by framing.body_framing
            field = (key.decode(), value.decode("latin-1"))
            self.framing = [*(self.framing or ()), field]

    def on_headers_complete(self) -> None:
        owner, parser = self._owner, self.parser
        raw = parser.get_http_version()
        if (
            raw == "1.1"
            and self.conn is None
            and self.framing is None
            and self.hosts == 1
            and self.url[:1] == b"/"
        ):
            # The common request: nothing to check, persistent unless it is the N-th. One call
            # to the owner per head on this path (the keep-alive hot path).
            self.version, self.tokens = HTTP_11, NO_TOKENS
            owner.head_parsed(False)
            return
        if (
            raw == "1.1"
            and self.conn == [b"close"]
            and self.framing is None
            and self.hosts == 1
            and self.url[:1] == b"/"
        ):
            # The same request with `Connection: close` alone (a benchmark's close mode): what
            # the checks below decide for it, without them.
            self.version, self.tokens = HTTP_11, CLOSE_TOKENS
            owner.head_parsed(True)
            return
        owner.headers_ended()  # before any check can reject the head
        if self.url[:1] != b"/":  # rare: absolute, asterisk or authority form
            check_target(parser.get_method().decode("latin-1"), self.url.decode("latin-1"))
        version = _VERSIONS.get(raw) or parse_version("HTTP/" + raw)
        if self.framing is not None or (self.hosts != 1 and version >= (1, 1)):
            framing = self._check_framing(version)
            if framing.kind is not BodyKind.NONE and parser.should_upgrade():
                # Upgrade or CONNECT: httptools has llhttp skip this body and pause after the
                # head. We switch no protocol, so the body is ours to frame (BodyReader).
                self.unframed = framing
        conn = self.conn
        if conn is None:
            tokens, last = NO_TOKENS, version < (1, 1)
        else:
            tokens = self._tokens_of(conn)
            last = not client_wants_persistence(version, tokens)
        self.version, self.tokens = version, tokens
        owner.head_parsed(last)

    def _check_framing(self, version: tuple[int, int]) -> BodyFraming:
        """Host, Content-Length, Transfer-Encoding (400/501); 100 Continue if a body follows."""
        fields = [("host", "")] * self.hosts + (self.framing or [])
        framing = body_framing(version, fields)
        if self.expect and framing.kind is not BodyKind.NONE and version >= (1, 1):
            self._owner.continue_expected()
        return framing
