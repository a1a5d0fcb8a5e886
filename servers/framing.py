"""Request validation and body framing (spec rules 8 and 9), for servers that parse themselves.

The stdlib and uvloop servers feed their parsed request line and header fields through here, so
both reject the same malformed requests with the same status and agree on how long a body is.
aiohttp has its own parser; its differences are documented in its module.

The rules follow llhttp (the parser of the other two servers) byte for byte where llhttp is
stricter than RFC 9112 allows a recipient to be: a front end and this server must never disagree
on where a request ends. So the request line splits on SP only (not TAB, VT or NBSP, as
`str.split()` would), the method is one llhttp knows, field values carry no control character,
and chunk-size lines are parsed strictly (`CHUNK_LINE`). `BodyReader` frames a body without a
socket: the stdlib server drains every body through it, and the uvloop and aiohttp servers use it
for the bodies llhttp leaves unframed (after an Upgrade or a CONNECT head), so no body is ever
parsed as a request.

llhttp also decides byte by byte: it rejects `GX` at the `X`, long before a line end. The
`*_prefix_error` functions say what it has already rejected of a line that has not ended yet
(checked against httptools on every prefix of the fuzz corpus in tests/test_framing.py); the
stdlib server asks them at EOF inside a line, BodyReader after every read.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_HEADER_BYTES = 8 * 1024  # header section (431 beyond)
MAX_REQUEST_LINE_BYTES = 8 * 1024  # request line (414 beyond)
MAX_CHUNK_LINE_BYTES = 4096  # chunk-size line with its extensions (400 beyond)
MAX_CHUNK_SIZE = 2**64 - 1  # llhttp keeps sizes in a uint64: larger is "... overflow"

# The request methods llhttp accepts (HTTP mode; RTSP's and PRI are 400), checked against
# httptools 0.9 and aiohttp 3.14. Case-sensitive: `get` is not a method.
METHODS = frozenset((
    "DELETE", "GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "TRACE", "COPY", "LOCK",
    "MKCOL", "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND",
    "ACL", "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE",
    "UNSUBSCRIBE", "PATCH", "PURGE", "MKCALENDAR", "LINK", "UNLINK", "SOURCE", "QUERY",
))  # fmt: skip

# Every name in llhttp's method table: its RTSP methods and PRI are parsed as methods too, and
# rejected only once the version is read. A request line stopped short is rejected only when no
# name here starts with its first word (`request_line_prefix_error`).
LLHTTP_METHOD_NAMES = METHODS | frozenset((
    "PRI", "DESCRIBE", "ANNOUNCE", "SETUP", "PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER",
    "SET_PARAMETER", "REDIRECT", "RECORD", "FLUSH",
))  # fmt: skip
_METHOD_PREFIXES = frozenset(
    name[:i].encode() for name in LLHTTP_METHOD_NAMES for i in range(len(name) + 1)
)

# fullmatch and explicit ASCII classes: `$` would accept a trailing newline and `\d` Unicode digits.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")
# Request-target forms (RFC 9112 §3.2) as llhttp's URL parser takes them: a path or query is
# visible ASCII (`[!-~]`); a scheme is letters only; a host (and userinfo) is from the class
# below, `@` never twice in a row, and ends at `/` or `?`.
_HOST_BYTE = r"[A-Za-z0-9!$%&'()*+,\-.:;=\[\]_~]"
_HOST = r"(?:" + _HOST_BYTE + r"|@(?!@))"
_ORIGIN_FORM = re.compile(r"/[!-~]*")
_ABSOLUTE_FORM = re.compile(r"[A-Za-z]+://" + _HOST + r"+(?:[/?][!-~]*)?")
_AUTHORITY_FORM = re.compile(_HOST + r"+:[0-9]+")  # host:port (or [v6]:port), CONNECT only
# What llhttp has not rejected yet of a request-target still arriving (request_line_prefix_error):
# CONNECT starts with a host; any other method with `/`, `*` or a scheme.
_TARGET_PREFIX = re.compile(
    rb"/[!-~]*|\*[!-~]*|[A-Za-z]*(?::/{0,2})?|[A-Za-z]+://" + _HOST.encode() + rb"*(?:[/?][!-~]*)?"
)
_CONNECT_TARGET_PREFIX = re.compile(_HOST.encode() + rb"*(?:[/?][!-~]*)?")
_SCHEME_PREFIX = re.compile(rb"[A-Za-z]*(?::/?)?")  # a target cannot end here
_PROTOCOLS = (b"HTTP/", b"RTSP/", b"ICE/")  # llhttp's; each is 400 with the others' methods
_VERSION_DIGITS_PREFIX = re.compile(rb"(?:[0-9](?:\.(?:[0-9]\r?)?)?)?")
# Words separated by runs of SP, nothing before the first or after the last (llhttp accepts
# `GET  /`, rejects ` GET /` and `GET / HTTP/1.1 `). A TAB, VT or NBSP stays inside a word,
# where the method, target or version check rejects it.
_REQUEST_LINE = re.compile(rb"([^ ]+) +([^ ]+)(?: +([^ ]+))?")
# Field value: HTAB, SP, visible ASCII, obs-text; no other control character (`\x01`, `\x7f`,
# a bare CR), as llhttp rejects them.
_BAD_VALUE_BYTE = re.compile(rb"[^\t\x20-\x7e\x80-\xff]")
_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_QDTEXT = rb"[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff]"
# chunk-size [ ;name[=value] ]... with no whitespace anywhere (llhttp's strict mode): the size is
# hex digits only (`5 `, ` 5`, `0x5` are 400), an extension value is a token or a quoted string,
# and the line does not end with `;`. An empty name (`5;;a`, `5;=b`) is llhttp's, kept as is.
_CHUNK_EXT = rb";" + _TCHAR + rb"*(?:=(?:" + _TCHAR + rb'*|"(?:' + _QDTEXT + rb')*"))?'
CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:" + _CHUNK_EXT + rb")*")
# ... and what llhttp has not rejected yet of one still arriving: an extension may stop inside
# its quoted value, and a CR may follow a complete line (never a `;`).
_CHUNK_LINE_PREFIX = re.compile(
    rb"([0-9A-Fa-f]*)|([0-9A-Fa-f]+)(?:"
    + _CHUNK_EXT
    + rb")*(?:;"
    + _TCHAR
    + rb"*(?:=(?:"
    + _TCHAR
    + rb'*|"(?:'
    + _QDTEXT
    + rb")*\\?))?|(?<!;)\r)?"
)
# A field line still arriving: a name so far, or a name, the colon and a value so far (a CR may
# end it); or the CR of the empty line that ends the section.
_FIELD_LINE_PREFIX = re.compile(_TCHAR + rb"*|" + _TCHAR + rb"+:[\t\x20-\x7e\x80-\xff]*\r?|\r")

# llhttp reads a Content-Length value as it comes: digits, then only whitespace (uint64 at most).
_CONTENT_LENGTH_PREFIX = re.compile(rb"[ \t]*([0-9]*)[ \t]*\r?")


class ProtocolError(Exception):
    """A request the server answers with `status` and then closes (rule 9)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail


class BodyKind(enum.Enum):
    NONE = "none"
    LENGTH = "length"
    CHUNKED = "chunked"


@dataclass(frozen=True)
class BodyFraming:
    kind: BodyKind
    length: int = 0


NO_BODY = BodyFraming(BodyKind.NONE)


HTTP_09 = (0, 9)  # the version llhttp gives a request line without one (`GET /x`)


def parse_version(text: str) -> tuple[int, int]:
    """`HTTP/1.1` -> (1, 1). Major 1 only (505 otherwise); `HTTP/1.2` is served as 1.x."""
    return check_version(_version_of(text))


def _version_of(text: str) -> tuple[int, int]:
    match = _VERSION.fullmatch(text)
    if match is None:
        raise ProtocolError(400, f"malformed HTTP version {text[:20]!r}")
    return int(match[1]), int(match[2])


def check_version(version: tuple[int, int]) -> tuple[int, int]:
    """505 for a major version other than 1 (HTTP/0.9 syntax included). llhttp decides this
    only after the header section, so a malformed field before it is still a 400."""
    if version[0] != 1:
        shown = "HTTP/0.9 (no version)" if version == HTTP_09 else f"HTTP/{version[0]}.{version[1]}"
        raise ProtocolError(505, f"{shown} not supported")
    return version


def parse_request_line(line: bytes) -> tuple[str, str, tuple[int, int]]:
    """`GET /x HTTP/1.1` (no CRLF) -> method, target, version, or ProtocolError 400 for a line
    that is not two or three SP-separated words, an unknown method or target, or a malformed
    version (checked in this order). The version is not checked yet (`check_version`): `GET /x`
    (HTTP/0.9 syntax) gives (0, 9), as llhttp reads it, and `HTTP/2.0` (2, 0)."""
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise ProtocolError(400, f"bad request line {line[:60]!r}")
    method, target, version = (w.decode("latin-1") if w else "" for w in match.groups())
    if method not in METHODS:
        raise ProtocolError(400, f"unknown method {method[:20]!r}")
    check_target(method, target)  # before the version, as llhttp reads left to right
    return method, target, _version_of(version) if version else HTTP_09


def request_line_too_long(prefix: bytes) -> ProtocolError:
    """A request line over MAX_REQUEST_LINE_BYTES: 414, unless llhttp would already have
    rejected its start (an unknown method, say) with 400."""
    return request_line_prefix_error(prefix) or ProtocolError(414, "request line too long")


def request_line_prefix_error(prefix: bytes) -> ProtocolError | None:
    """What llhttp has already rejected of a request line that stopped short (no LF yet, at EOF):
    it parses byte by byte and answers 400 at the first byte no request line continues with
    (`GX`, `GET /\x01`, `GET / X`), where a reader of whole lines has seen nothing wrong yet.
    None while the line may still turn out well, or llhttp would still be waiting for more."""
    method, sp, rest = prefix.partition(b" ")
    if not sp:
        return None if method in _METHOD_PREFIXES else _unknown_method(method)
    if method.decode("latin-1") not in LLHTTP_METHOD_NAMES:
        return _unknown_method(method)
    target, sp, version = rest.lstrip(b" ").partition(b" ")
    connect = method == b"CONNECT"
    ends = sp or target.endswith(b"\r")  # a CR after the target: an HTTP/0.9 line ending
    if target.endswith(b"\r") and not sp:
        target = target[:-1]
    pattern = _CONNECT_TARGET_PREFIX if connect else _TARGET_PREFIX
    if not pattern.fullmatch(target) or (
        ends and not (target and (connect or not _SCHEME_PREFIX.fullmatch(target)))
    ):
        return ProtocolError(400, f"invalid request-target {target[:40]!r}")
    if sp and not _version_prefix_ok(version.lstrip(b" ")):
        return ProtocolError(400, f"malformed HTTP version {version[:20]!r}")
    return None


def _unknown_method(method: bytes) -> ProtocolError:
    return ProtocolError(400, f"unknown method {method[:20]!r}")


def _version_prefix_ok(text: bytes) -> bool:
    for protocol in _PROTOCOLS:
        if protocol.startswith(text):
            return True
        if text.startswith(protocol):
            return _VERSION_DIGITS_PREFIX.fullmatch(text[len(protocol) :]) is not None
    return False


def field_line_prefix_error(prefix: bytes) -> ProtocolError | None:
    """As request_line_prefix_error, for a header or trailer field line stopped short: a byte
    outside a token before the colon (a space, an obs-fold), an empty name, a control byte in
    the value, or anything after a CR, is already a 400 for llhttp; so is a Content-Length
    value with a byte other than digits and trailing whitespace, or over 2^64 - 1."""
    if not _FIELD_LINE_PREFIX.fullmatch(prefix):
        return ProtocolError(400, f"invalid field line {prefix[:40]!r}")
    name, _, value = prefix.partition(b":")
    if name.lower() == b"content-length":
        digits = _CONTENT_LENGTH_PREFIX.fullmatch(value)
        if digits is None or (digits[1] and int(digits[1]) > MAX_CHUNK_SIZE):
            return ProtocolError(400, "invalid Content-Length")
    return None


def chunk_line_prefix_error(prefix: bytes) -> ProtocolError | None:
    """As request_line_prefix_error, for a chunk-size line stopped short (`5 `, `5;\x01`, a
    size over 2^64 - 1 are 400 before its CRLF arrives)."""
    match = _CHUNK_LINE_PREFIX.fullmatch(prefix)
    if match is None:
        return ProtocolError(400, f"invalid chunk-size line {prefix[:40]!r}")
    size = match[1] or match[2]
    if size and int(size, 16) > MAX_CHUNK_SIZE:
        return ProtocolError(400, "chunk size overflow")
    return None


def check_target(method: str, target: str) -> None:
    """Origin or absolute form; asterisk form for OPTIONS and authority form for CONNECT only
    (RFC 9112 §3.2); 400 otherwise (`GET foo`, `GET *`, a raw non-ASCII byte). llhttp decides
    the same except for `GET *`, so the uvloop server calls this for targets not starting `/`."""
    if _ORIGIN_FORM.fullmatch(target) or _ABSOLUTE_FORM.fullmatch(target):
        return
    if (method, target) == ("OPTIONS", "*"):
        return
    if method == "CONNECT" and _AUTHORITY_FORM.fullmatch(target):
        return
    raise ProtocolError(400, f"invalid request-target {target[:40]!r}")


def check_field_name(name: bytes) -> None:
    """Field names are tokens: whitespace before the colon is a 400 (RFC 9112 §5.1)."""
    if not _TOKEN.fullmatch(name):
        raise ProtocolError(400, f"invalid header field name {name[:40]!r}")


def parse_field_line(line: bytes) -> tuple[bytes, bytes]:
    """`Name: value` (no CRLF) -> name, value without surrounding SP/HTAB; 400 for a line without
    a colon, a name that is not a token (obs-fold, space before the colon) or a control
    character in the value. Header and trailer fields alike."""
    name, colon, value = line.partition(b":")
    if not colon:
        raise ProtocolError(400, f"field line without a colon {line[:40]!r}")
    check_field_name(name)
    value = value.strip(b" \t")
    if _BAD_VALUE_BYTE.search(value):
        raise ProtocolError(400, f"invalid byte in the value of {name[:40]!r}")
    return name, value


def parse_chunk_line(line: bytes) -> int:
    """The size of a chunk from its chunk-size line (no CRLF), extensions checked and ignored."""
    match = CHUNK_LINE.fullmatch(line)
    if match is None or line.endswith(b";"):
        raise ProtocolError(400, f"invalid chunk-size line {line[:40]!r}")
    size = int(match[1], 16)
    if size > MAX_CHUNK_SIZE:
        raise ProtocolError(400, "chunk size overflow")
    return size


# RFC 9112 §3.2: 400 for any request (HTTP/1.0 too) with more than one Host field line; aiohttp's
# parser rejects the second one as it reads it, and so do the others (before a 505).
TWO_HOSTS = "more than one Host header"
_OWS = " \t"


@dataclass
class FramingFields:
    """What llhttp rejects (400) as it reads the framing fields of a header section, before
    the section ends and so before a version's 505: a Content-Length that is not digits (or over
    2^64 - 1), a second Content-Length, Content-Length together with Transfer-Encoding, any
    coding after `chunked`, and an empty Content-Length or Transfer-Encoding. For a server that
    parses field lines itself (stdlib), one per header section; llhttp does this for the others.
    """

    content_length: bool = False
    transfer_encoding: bool = False
    chunked: bool = False  # the last coding so far is chunked

    def check(self, name: bytes, raw_value: bytes) -> ProtocolError | None:
        """Raise what llhttp rejects by the end of this field line; return what it rejects only
        once the next line starts (an empty value), for the caller to raise then. `raw_value`
        is what follows the colon, whitespace included: `chunked\t` is not chunked."""
        key = name.lower()
        value = raw_value.strip(b" \t")
        if key == b"content-length":
            if not value:
                return ProtocolError(400, "empty Content-Length")
            if not value.isdigit() or int(value) > MAX_CHUNK_SIZE:
                raise ProtocolError(400, "invalid Content-Length")
            self._check_content_length()
            self.content_length = True
        elif key == b"transfer-encoding":
            if self.content_length:
                raise ProtocolError(400, "Content-Length together with Transfer-Encoding")
            if not value:
                return ProtocolError(400, "empty Transfer-Encoding")
            for coding in raw_value.split(b","):
                if self.chunked:
                    raise ProtocolError(400, "a transfer coding after chunked")
                self.chunked = coding.lstrip(b" \t").rstrip(b" ").lower() == b"chunked"
            self.transfer_encoding = True
        return None

    def prefix_error(self, prefix: bytes) -> ProtocolError | None:
        """For a field line stopped short: llhttp rejects a second Content-Length (or one after
        Transfer-Encoding) at its first digit."""
        name, colon, value = prefix.partition(b":")
        if colon and name.lower() == b"content-length" and value.strip(b" \t\r"):
            try:
                self._check_content_length()
            except ProtocolError as exc:
                return exc
        return None

    def _check_content_length(self) -> None:
        if self.content_length:
            raise ProtocolError(400, "Content-Length must be a single value")
        if self.transfer_encoding:
            raise ProtocolError(400, "Content-Length together with Transfer-Encoding")


def body_framing(version: tuple[int, int], fields: Sequence[tuple[str, str]]) -> BodyFraming:
    """Validate Host, Content-Length and Transfer-Encoding; say how the body is delimited.

    `fields` are (lower-case name, value) pairs in received order.
    """
    hosts = [v for n, v in fields if n == "host"]
    if len(hosts) > 1:
        raise ProtocolError(400, TWO_HOSTS)
    if version >= (1, 1) and not hosts:
        raise ProtocolError(400, "HTTP/1.1 request without a Host header")
    # Whitespace here is SP and HTAB only (RFC 9110 §5.6.1): str.strip() would also take an
    # NBSP off (`Content-Length: \xa00` is a 400 for llhttp).
    # A coding ends before SP, not before HTAB (llhttp: `chunked\t` is not chunked).
    codings = [
        c.lstrip(_OWS).rstrip(" ").lower()
        for n, v in fields
        if n == "transfer-encoding"
        for c in v.split(",")
    ]
    lengths = [v.strip(_OWS) for n, v in fields if n == "content-length" for v in v.split(",")]
    if codings:
        return _chunked_framing(version, codings, lengths)
    if lengths:
        return _length_framing(lengths)
    return NO_BODY


def _chunked_framing(
    version: tuple[int, int], codings: list[str], lengths: list[str]
) -> BodyFraming:
    if lengths:
        raise ProtocolError(400, "Content-Length together with Transfer-Encoding")
    if version < (1, 1):
        raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
    if codings[-1] != "chunked":
        raise ProtocolError(400, f"final transfer coding is {codings[-1]!r}, not chunked")
    if "chunked" in codings[:-1]:  # RFC 9112 §6.1: a sender must not chunk twice
        raise ProtocolError(400, "chunked applied more than once")
    if len(codings) > 1:
        raise ProtocolError(501, f"transfer coding {codings[0]!r} not implemented")
    return BodyFraming(BodyKind.CHUNKED)


def _length_framing(lengths: list[str]) -> BodyFraming:
    if not all(v.isascii() and v.isdigit() and len(v) <= 18 for v in lengths):
        raise ProtocolError(400, "invalid Content-Length")
    if len(lengths) != 1:
        # RFC 9112 §6.3 lets a recipient accept `5, 5`; llhttp rejects it, and so do we.
        same = len({int(v) for v in lengths}) == 1
        raise ProtocolError(
            400, "Content-Length must be a single value" if same else "conflicting Content-Length"
        )
    length = int(lengths[0])
    return BodyFraming(BodyKind.LENGTH, length) if length else NO_BODY


class _Stage(enum.Enum):
    SIZE = "chunk-size line"
    DATA = "chunk data"
    DATA_END = "CRLF after chunk data"
    TRAILER = "trailer section"
    DONE = "done"


@dataclass
class BodyReader:
    """Frames one request body without a socket: `feed(data)` returns how many bytes of `data`
    complete the body, or None when all of `data` belonged to it and more is needed; a malformed
    chunked body raises ProtocolError (400, 431 for a trailer section over the header limit).

    Lines end in CRLF only (a bare LF is 400, as in `stdlib_io.read_line`); a chunk-size line is
    checked by `parse_chunk_line`, trailer fields by `parse_field_line`, and a line still
    arriving by `chunk_line_prefix_error` or `field_line_prefix_error`, so that a bad byte is
    rejected when it arrives, as llhttp rejects it, not when (or if) its line ends.
    """

    framing: BodyFraming
    _left: int = 0  # bytes of Content-Length body or of the current chunk still to come
    _stage: _Stage = _Stage.SIZE
    _line: bytearray = field(default_factory=bytearray)
    _trailer_bytes: int = 0

    def __post_init__(self) -> None:
        if self.framing.kind is BodyKind.LENGTH:
            self._left = self.framing.length
            self._stage = _Stage.DATA
        elif self.framing.kind is BodyKind.NONE:
            self._stage = _Stage.DONE

    @property
    def done(self) -> bool:
        return self._stage is _Stage.DONE

    def feed(self, data: bytes | bytearray | memoryview) -> int | None:
        view = memoryview(data)
        used = 0
        while self._stage is not _Stage.DONE:
            if used == len(view):
                return None
            used += self._step(view[used:])
        return used

    def _step(self, data: memoryview) -> int:
        """Consume the start of `data` for the current stage; return how much was used."""
        if self._stage is _Stage.DATA:
            take = min(self._left, len(data))
            self._left -= take
            if self._left == 0:
                chunked = self.framing.kind is BodyKind.CHUNKED
                self._stage = _Stage.DATA_END if chunked else _Stage.DONE
            return take
        limit = self._line_limit()
        end = bytes(data[: limit + 1 - len(self._line)]).find(b"\n")
        if end < 0:
            self._line += data[: limit + 1 - len(self._line)]
            error = self._line_error()  # llhttp rejects a bad byte before the line ends
            if error is not None:
                raise error
            if len(self._line) > limit or not self._line_may_continue():
                raise self._too_long()
            return len(data)
        self._line += data[: end + 1]
        line, self._line = bytes(self._line), bytearray()
        if not line.endswith(b"\r\n"):
            raise ProtocolError(400, f"{self._stage.value} ended by a bare LF")
        self._line_done(line[:-2])
        return end + 1

    def _line_limit(self) -> int:
        if self._stage is _Stage.TRAILER:
            return MAX_HEADER_BYTES - self._trailer_bytes
        return 2 if self._stage is _Stage.DATA_END else MAX_CHUNK_LINE_BYTES

    def _line_error(self) -> ProtocolError | None:
        if self._stage is _Stage.SIZE:
            return chunk_line_prefix_error(bytes(self._line))
        if self._stage is _Stage.TRAILER:
            return field_line_prefix_error(bytes(self._line))
        return None

    def _line_may_continue(self) -> bool:
        """After chunk data only CRLF may follow: reject anything else at once."""
        return self._stage is not _Stage.DATA_END or b"\r\n".startswith(self._line)

    def _too_long(self) -> ProtocolError:
        if self._stage is _Stage.TRAILER:
            return ProtocolError(431, "trailer section too large")
        if self._stage is _Stage.DATA_END:
            return ProtocolError(400, "chunk data not followed by CRLF")
        return ProtocolError(400, "chunk-size line too long")

    def _line_done(self, line: bytes) -> None:
        if self._stage is _Stage.DATA_END:
            if line:
                raise ProtocolError(400, "chunk data not followed by CRLF")
            self._stage = _Stage.SIZE
        elif self._stage is _Stage.SIZE:
            self._left = parse_chunk_line(line)
            self._stage = _Stage.DATA if self._left else _Stage.TRAILER
        elif not line:  # the empty line that ends the trailer section
            self._stage = _Stage.DONE
        else:
            self._trailer_bytes += len(line) + 2
            parse_field_line(line)
