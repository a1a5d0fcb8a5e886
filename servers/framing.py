"""Request validation and body framing (spec rules 8 and 9), for servers that parse themselves.

The stdlib and uvloop servers feed their parsed request line and header fields through here, so
both reject the same malformed requests with the same status and agree on how long a body is.
aiohttp has its own parser; its differences are documented in its module.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

MAX_HEADER_BYTES = 8 * 1024  # header section (431 beyond)
MAX_REQUEST_LINE_BYTES = 8 * 1024  # request line (414 beyond)

# fullmatch and explicit ASCII classes: `$` would accept a trailing newline and `\d` Unicode digits.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")
# Request-target forms (RFC 9112 §3.2), visible ASCII only (`[!-~]`), as llhttp accepts them.
_ORIGIN_FORM = re.compile(r"/[!-~]*")
_ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[!-~]+")
_AUTHORITY_FORM = re.compile(r"[!-~]+:[0-9]+")  # host:port (or [v6]:port), CONNECT only


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


def parse_version(text: str) -> tuple[int, int]:
    """`HTTP/1.1` -> (1, 1). Major 1 only (505 otherwise); `HTTP/1.2` is served as 1.x."""
    match = _VERSION.fullmatch(text)
    if match is None:
        raise ProtocolError(400, f"malformed HTTP version {text[:20]!r}")
    version = (int(match[1]), int(match[2]))
    if version[0] != 1:
        raise ProtocolError(505, f"HTTP version {text} not supported")
    return version


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


def body_framing(version: tuple[int, int], fields: Sequence[tuple[str, str]]) -> BodyFraming:
    """Validate Host, Content-Length and Transfer-Encoding; say how the body is delimited.

    `fields` are (lower-case name, value) pairs in received order.
    """
    hosts = [v for n, v in fields if n == "host"]
    if version >= (1, 1) and len(hosts) != 1:
        raise ProtocolError(400, "HTTP/1.1 request needs exactly one Host header")
    codings = [
        c.strip().lower() for n, v in fields if n == "transfer-encoding" for c in v.split(",")
    ]
    lengths = [v.strip() for n, v in fields if n == "content-length" for v in v.split(",")]
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
