"""The request-head half of the uvloop protocol: httptools callbacks up to the end of headers.

A mixin of `uvloop_protocol.HttpProtocol`, kept apart so that each module reads on its own. The
`_r_*` fields live for one request while it is parsed. llhttp has no size limits, so the
request-target (414) and the header section (431) are counted here; versions go through
`framing.parse_version` (505), and Host/Content-Length/Transfer-Encoding through
`framing.body_framing` (400/501) only when a request has something to check, which keeps the
common GET cheap. A body that llhttp will not frame (an Upgrade or CONNECT request: httptools
makes llhttp skip it) is noted in `_r_unframed` for the protocol to frame itself. The host
class provides `_s` (ServerState), `_parser`, `_phase`, `_parsed`, `_limit`, `_input_done`,
`_closing`, `_kind`, `_continue_due`, `_clear_deadline()` and `_send_continue()`.
"""

from __future__ import annotations

from typing import Any

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


class StopParsing(Exception):
    """Raised from a parser callback: no further request will be read on this connection."""


# Declared by the concrete class (see uvloop_timers.DEADLINE_SLOTS).
HEAD_SLOTS = (
    "_r_url", "_r_size", "_r_conn", "_r_framing", "_r_hosts", "_r_expect", "_r_version",
    "_r_tokens", "_r_unframed",
)  # fmt: skip


class RequestHead:
    """Mixin: parser callbacks from `on_message_begin` to `on_headers_complete`."""

    __slots__ = ()
    _s: Any
    _parser: Any

    def on_message_begin(self) -> None:
        if self._input_done or self._closing:
            raise StopParsing
        self._phase = HEAD
        self._raw_head = self._r_size = self._r_hosts = 0
        self._r_url = b""
        self._r_conn = self._r_framing = None
        self._r_expect = False

    def on_url(self, url: bytes) -> None:
        url = self._r_url + url if self._r_url else url
        if len(url) > MAX_REQUEST_LINE_BYTES:
            raise ProtocolError(414, "request-target too long")
        self._r_url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self._r_size + len(name) + len(value) + 4
        if size > MAX_HEADER_BYTES:
            raise ProtocolError(431, "request header fields too large")
        self._r_size = size
        key = name.lower()
        if key == b"host":
            self._r_hosts += 1
            if self._r_hosts > 1:  # any version, before a 505 (framing.TWO_HOSTS)
                raise ProtocolError(400, TWO_HOSTS)
        elif key in _TRACKED:
            self._track(key, value)

    def _track(self, key: bytes, value: bytes) -> None:
        if key == b"connection":
            self._r_conn = [*(self._r_conn or ()), value]
        elif key == b"expect":
            self._r_expect = value.strip().lower() == b"100-continue"
        else:  # Content-Length, Transfer-Encoding: validated by framing.body_framing
            field = (key.decode(), value.decode("latin-1"))
            self._r_framing = [*(self._r_framing or ()), field]

    def on_headers_complete(self) -> None:
        self._phase = BODY
        if self._kind == "header":
            self._clear_deadline()  # met
        if self._r_url[:1] != b"/":  # rare: absolute, asterisk or authority form
            check_target(self._parser.get_method().decode("latin-1"), self._r_url.decode("latin-1"))
        raw = self._parser.get_http_version()
        if raw == "1.1" and self._r_conn is None and self._r_framing is None and self._r_hosts == 1:
            # The common request: nothing to check, persistent unless it is the N-th.
            self._r_version, self._r_tokens = HTTP_11, NO_TOKENS
            self._parsed += 1
            if self._parsed >= self._limit:
                self._input_done = True
            return
        version = _VERSIONS.get(raw) or parse_version("HTTP/" + raw)
        if self._r_framing is not None or (self._r_hosts != 1 and version >= (1, 1)):
            framing = self._check_framing(version)
            if framing.kind is not BodyKind.NONE and self._parser.should_upgrade():
                # Upgrade or CONNECT: httptools has llhttp skip this body and pause after the
                # head. We switch no protocol, so the body is ours to frame (BodyReader).
                self._r_unframed = framing
        conn = self._r_conn
        if conn is None:
            tokens, last = NO_TOKENS, version < (1, 1)
        else:
            tokens = self._s.tokens(conn)
            last = not client_wants_persistence(version, tokens)
        self._r_version, self._r_tokens = version, tokens
        self._parsed += 1
        if last or self._parsed >= self._limit:
            self._input_done = True  # the last request this connection will read

    def _check_framing(self, version: tuple[int, int]) -> BodyFraming:
        """Host, Content-Length, Transfer-Encoding (400/501); 100 Continue if a body follows."""
        fields = [("host", "")] * self._r_hosts + (self._r_framing or [])
        framing = body_framing(version, fields)
        if self._r_expect and framing.kind is not BodyKind.NONE and version >= (1, 1):
            self._continue_due = True
            self._send_continue()
        return framing
