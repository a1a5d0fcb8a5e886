"""The valid HTTP/1.1 requests that the fuzzer mutates: one named seed per framing feature.

Every seed is a request (or a pipelined pair) that all three reference servers answer the same
way, so that a difference in their answers to a mutated seed comes from the mutation. Targets
stay among the endpoints that answer at once (no `/sleep`): a case that waits on purpose would
look like a hang.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Seed:
    """A named valid input. `parts` are the writes the client makes (one, or a pipelined pair)."""

    name: str
    data: bytes


def _get(path: str = "/", *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: t", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _post(path: str, body: bytes, *headers: str) -> bytes:
    return _get(path, f"Content-Length: {len(body)}", *headers, method="POST") + body


def _chunked(path: str, chunks: str, *headers: str) -> bytes:
    return _get(path, "Transfer-Encoding: chunked", *headers, method="POST") + chunks.encode()


_GET = _get("/")
_CHUNKS = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
_CHUNKS_EXT_TRAILER = "5;name=value\r\nhello\r\n3;x\r\nabc\r\n0\r\nTrailer-One: 1\r\nX-T: v\r\n\r\n"

SEEDS: tuple[Seed, ...] = (
    Seed("get", _GET),
    Seed("get-keepalive", _get("/bytes/5", "Connection: keep-alive", "Accept: */*")),
    Seed("get-close", _get("/bytes/3", "Connection: close")),
    Seed("get-1.0-keepalive", _get("/", "Connection: keep-alive", version="1.0")),
    Seed("get-1.0", _get("/bytes/2", version="1.0")),
    Seed("get-status", _get("/status/418", "User-Agent: fuzz/1")),
    Seed("get-absolute", _get("http://t/bytes/4")),
    Seed("get-query", _get("/bytes/7?a=1&b=%20", "Accept-Encoding: gzip, br")),
    Seed("head", _get("/bytes/9", method="HEAD")),
    Seed("options-star", _get("*", method="OPTIONS")),
    Seed("get-handler-close", _get("/close")),
    Seed("post-length", _post("/", b"hello world")),
    Seed("post-length-empty", _post("/bytes/1", b"")),
    Seed("post-length-close", _post("/", b"abc=1&d=2", "Connection: close")),
    Seed("post-chunked", _chunked("/", _CHUNKS)),
    Seed("post-chunked-ext-trailer", _chunked("/bytes/2", _CHUNKS_EXT_TRAILER)),
    Seed("pipeline-get-get", _GET + _get("/bytes/3")),
    Seed("pipeline-post-get", _post("/", b"0123456789") + _get("/status/204")),
    Seed("pipeline-chunked-get", _chunked("/", _CHUNKS) + _get("/bytes/1")),
    Seed("pipeline-get-close-get", _get("/bytes/2", "Connection: close") + _GET),
    Seed("pipeline-1.0-keepalive-get", _get("/", "Connection: keep-alive", version="1.0") + _GET),
)


def seed_named(name: str) -> Seed:
    for seed in SEEDS:
        if seed.name == name:
            return seed
    raise KeyError(name)
