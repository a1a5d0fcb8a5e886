"""The endpoints every reference server exposes, decided in one place.

Each server parses the request its own way, then asks `route()` what to answer and writes the
`Reply` its own way (a delay is slept in a thread, awaited, or scheduled with `call_later`).
Application statuses (404, a /bytes size out of range) keep the connection: only protocol errors
close it (spec rule 9), and a 404 counts toward the keep-alive max (MAX-04).

    GET  /              200, a small text body
    GET  /bytes/N       200, N bytes (0 <= N <= 16 MiB; 400 beyond)
    GET  /sleep?ms=X    200 after X ms (0 <= X <= 60000)
    GET  /peer          200, JSON: client_host, client_port, connection_id, request_number
    GET  /status/N      status N (200-599) with an empty body
    GET  /close         200, and the handler asks to close the connection
    GET  /page?n=N&size=B  200, HTML referencing N resources /r/<i>?size=B (issue 11's page)
    GET  /r/I?size=B    200, a GIF of B bytes: one resource of the page (I < 1000, B <= 1 MiB)
    POST any path       the body is read in full and ignored; answered like GET
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qs

MAX_BYTES = 16 * 1024 * 1024
MAX_SLEEP_MS = 60_000
# The page-load scenario (issue 11): bounded so that one request cannot ask for a huge page.
MAX_PAGE_RESOURCES = 1000
MAX_RESOURCE_BYTES = 1024 * 1024
DEFAULT_PAGE_RESOURCES = 10
DEFAULT_RESOURCE_BYTES = 4096
HTML = "text/html; charset=utf-8"
OCTETS = "application/octet-stream"
GIF = "image/gif"
# A 1x1 GIF without extensions (35 bytes: header, screen, two-colour table, image, trailer),
# split where a comment extension goes to pad it to any size >= MIN_IMAGE_BYTES.
_GIF_HEAD = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
_GIF_TAIL = b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b"
MIN_IMAGE_BYTES = 64
# Every load of the page fetches everything: no browser cache, in any context.
NO_STORE = (("Cache-Control", "no-store"),)
HELLO = b"Hello, keep-alive!\n"
TEXT = "text/plain; charset=utf-8"
STATUSES_WITHOUT_BODY = frozenset({*range(100, 200), 204, 304})  # RFC 9110 §6.4.1


@dataclass(frozen=True)
class RequestContext:
    """Who is asking, on which connection, and how many requests that connection has carried."""

    client_host: str
    client_port: int
    connection_id: int
    request_number: int


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = TEXT
    # Extra response headers, written after Content-Length by every server (Cache-Control).
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    close: bool = False  # the handler wants the connection closed after this response
    # The reply uses the RequestContext (/peer): a server must not replay it for another
    # request. Every other reply is a pure function of method and target, which the servers'
    # memos rely on.
    per_connection: bool = False


_HELLO = Reply(200, HELLO)
_BAD = Reply(400, b"bad request\n")
_NOT_FOUND = Reply(404, b"not found\n")


def route(method: str, target: str, ctx: RequestContext) -> Reply:
    """Answer one request. `target` is the raw request-target: origin form (path and query),
    or absolute form, answered by its path."""
    path, _, query = target.partition("?")
    if path == "/":
        return _HELLO
    if path.startswith("/bytes/"):
        return _bytes(path.removeprefix("/bytes/"))
    if path == "/sleep":
        return _sleep(query)
    if path == "/peer":
        return _peer(ctx)
    if path.startswith("/status/"):
        return _status(path.removeprefix("/status/"))
    if path == "/close":
        return Reply(200, b"closing\n", close=True)
    if path == "/page":
        return _page(query)
    if path.startswith("/r/"):
        return _resource(path.removeprefix("/r/"), query)
    if "://" in path:  # absolute form (RFC 9112 §3.2.2: a server must accept it)
        origin = "/" + path.split("://", 1)[1].partition("/")[2]
        return route(method, origin + ("?" + query if query else ""), ctx)
    return _NOT_FOUND


def replayable(reply: Reply, target: str, max_target: int, max_body: int) -> bool:
    """May a server remember `reply` for its (method, target) and send it again?

    Only when it does not depend on the connection (`per_connection`), and only for short
    targets and small bodies, so that a memo of replies stays small whatever clients send."""
    return not reply.per_connection and len(target) <= max_target and len(reply.body) <= max_body


def _int_or_none(text: str) -> int | None:
    """ASCII digits only: `str.isdigit()` alone accepts '²', which `int()` then rejects."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def _bytes(size_text: str) -> Reply:
    size = _int_or_none(size_text)
    if size is None or size > MAX_BYTES:
        return _BAD
    return Reply(200, b"x" * size, content_type="application/octet-stream")


def _sleep(query: str) -> Reply:
    values = parse_qs(query).get("ms", ["0"])
    ms = _int_or_none(values[0])
    if ms is None or ms > MAX_SLEEP_MS:
        return _BAD
    return Reply(200, b"slept\n", delay_s=ms / 1000)


def _query_int(query: str, name: str, default: int, high: int) -> int | None:
    """One integer parameter in 0..high (its last value wins, as parse_qs lists them); None
    when it is malformed or out of range, `default` when absent."""
    values = parse_qs(query, keep_blank_values=True).get(name)
    if not values:
        return default
    value = _int_or_none(values[-1])
    return value if value is not None and value <= high else None


def page_html(n: int, size: int) -> bytes:
    """The page of n same-origin images of `size` bytes each.

    Images, because a browser fetches them in parallel (up to its six connections per host)
    without blocking the parser; `<link rel=icon href="data:,">` keeps the browser from asking
    for /favicon.ico, so a load is exactly n + 1 requests.
    """
    lines = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><link rel="icon" href="data:,">',
        f"<title>page of {n} resources of {size} bytes</title></head>",
        "<body>",
        *(f'<img src="/r/{i}?size={size}" alt="">' for i in range(n)),
        "</body></html>",
        "",
    ]
    return "\n".join(lines).encode("ascii")


def _page(query: str) -> Reply:
    n = _query_int(query, "n", DEFAULT_PAGE_RESOURCES, MAX_PAGE_RESOURCES)
    size = _query_int(query, "size", DEFAULT_RESOURCE_BYTES, MAX_RESOURCE_BYTES)
    if n is None or size is None:
        return _BAD
    return Reply(200, page_html(n, size), content_type=HTML, headers=NO_STORE)


def gif_of_size(size: int) -> bytes:
    """A valid 1x1 GIF of exactly `size` bytes (>= MIN_IMAGE_BYTES), padded by a comment.

    A real image, because a browser cancels an image whose bytes it cannot decode before they
    have all arrived, and an HTTP/1.1 connection with an unread body cannot be reused: with
    junk bytes Chromium closes connections mid-page and keep-alive looks worse than it is.
    """
    if size < MIN_IMAGE_BYTES:
        raise ValueError(f"a GIF here has at least {MIN_IMAGE_BYTES} bytes")
    room = size - len(_GIF_HEAD) - len(_GIF_TAIL) - 3  # 3: introducer, label, terminator
    blocks = -(-room // 256)  # each sub-block: one length byte and 1..255 bytes
    data = room - blocks
    lengths = [data // blocks + (1 if i < data % blocks else 0) for i in range(blocks)]
    comment = b"".join(bytes([n]) + b"x" * n for n in lengths)
    return _GIF_HEAD + b"\x21\xfe" + comment + b"\x00" + _GIF_TAIL


def _resource(index_text: str, query: str) -> Reply:
    """A GIF of `size` bytes; below MIN_IMAGE_BYTES, that many bytes of `x` (no image fits)."""
    index = _int_or_none(index_text)
    size = _query_int(query, "size", DEFAULT_RESOURCE_BYTES, MAX_RESOURCE_BYTES)
    if index is None or index >= MAX_PAGE_RESOURCES or size is None:
        return _BAD
    if size < MIN_IMAGE_BYTES:
        return Reply(200, b"x" * size, content_type=OCTETS, headers=NO_STORE)
    return Reply(200, gif_of_size(size), content_type=GIF, headers=NO_STORE)


def _peer(ctx: RequestContext) -> Reply:
    body = json.dumps(
        {
            "client_host": ctx.client_host,
            "client_port": ctx.client_port,
            "connection_id": ctx.connection_id,
            "request_number": ctx.request_number,
        }
    ).encode()
    return Reply(200, body, content_type="application/json", per_connection=True)


def _status(code_text: str) -> Reply:
    code = _int_or_none(code_text)
    if code is None or not 200 <= code <= 599:
        return _BAD
    return Reply(code)


def connection_log_line(ctx: RequestContext, method: str, target: str, connection: str) -> str:
    """--log-connections: the seed experiment's line (client port, path, Connection header)."""
    return (
        f"port={ctx.client_port} conn={ctx.connection_id} req={ctx.request_number} "
        f"{method} {target} connection={connection or '-'}"
    )
