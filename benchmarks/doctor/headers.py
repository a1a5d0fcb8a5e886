"""Response heads and the keep-alive headers, parsed strictly enough to trust what we count.

`Connection` is a comma-separated token list (RFC 9110 §7.6.1), case-insensitive, possibly over
several header lines. `Keep-Alive` (RFC 2068 §19.7.1.1) carries `timeout=` and `max=` parameters;
servers write them with and without spaces, quotes and extra parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from servers.policy import connection_tokens

_STATUS_LINE = re.compile(rb"^HTTP/(\d)\.(\d) (\d{3})(?: (.*))?$")
_TOKEN_CHARS = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class MalformedResponse(ValueError):
    """Bytes that are not an HTTP/1.x response head."""


@dataclass(frozen=True)
class Head:
    """One response head: version, status and the header fields in order."""

    version: str
    status: int
    reason: str
    fields: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [v for k, v in self.fields if k.lower() == wanted]

    def header(self, name: str) -> str | None:
        """All lines of one field joined with ', ' (RFC 9110 §5.3); None when absent."""
        found = self.values(name)
        return ", ".join(found) if found else None

    @property
    def connection_tokens(self) -> frozenset[str]:
        return connection_tokens(self.values("Connection"))

    @property
    def closes(self) -> bool:
        """The server said this response ends the connection (or HTTP/1.0 without keep-alive)."""
        tokens = self.connection_tokens
        if "close" in tokens:
            return True
        return self.version == "1.0" and "keep-alive" not in tokens


def parse_head(raw: bytes) -> Head:
    """Parse a head without its final CRLFCRLF; MalformedResponse when it is not one."""
    lines = raw.split(b"\r\n")
    match = _STATUS_LINE.match(lines[0])
    if match is None:
        raise MalformedResponse(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    if match[1] != b"1":
        raise MalformedResponse(f"HTTP/{match[1].decode()}.{match[2].decode()} is not HTTP/1.x")
    fields = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise MalformedResponse(f"bad header line: {line[:80]!r}")
        fields.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    reason = (match[4] or b"").decode("latin-1")
    return Head(f"1.{match[2].decode()}", int(match[3]), reason, tuple(fields))


@dataclass(frozen=True)
class KeepAliveHint:
    """What a `Keep-Alive` header promises: the idle timeout and the requests left."""

    timeout_s: float | None = None
    max: int | None = None


def parse_keep_alive(value: str | None) -> KeepAliveHint:
    """`timeout=5, max=100` -> KeepAliveHint(5.0, 100); unknown or bad parameters are ignored.

    A value that is not a non-negative number is treated as absent, as Node's Agent does
    (it reads only `^timeout=(\\d+)`).
    """
    if not value:
        return KeepAliveHint()
    params: dict[str, str] = {}
    for part in re.split(r"[,;]", value):
        name, sep, arg = part.strip().partition("=")
        name = name.strip().lower()
        if sep and _TOKEN_CHARS.match(name) and name not in params:
            params[name] = arg.strip().strip('"')
    timeout = params.get("timeout")
    maximum = params.get("max")
    return KeepAliveHint(
        float(timeout) if timeout and re.fullmatch(r"\d+(\.\d+)?", timeout) else None,
        int(maximum) if maximum and maximum.isdigit() else None,
    )
