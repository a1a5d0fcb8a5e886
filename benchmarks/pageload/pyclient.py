"""A browser-like page client in Python: fetch the page, then its resources over <= 6 connections.

    python -m benchmarks.pageload.pyclient --url http://198.18.0.2:8080 --resources 70 \\
        --size 4096 --mode pooled --loads 3 [--ca ca.pem] [--no-resume] [--output out.json]

One process per batch of loads, argv in and one JSON document out (stdout, or `--output`
written atomically), like every client of the suite; the harness runs it inside the delay
line's client namespace. Each load starts with an empty pool, as a fresh browser context does:

- `pooled` (a browser): the document on connection 1; once it has arrived and its resource list
  is parsed, connection 1 takes the first resource while up to five more connections open, and
  every connection takes the next resource as soon as it is free. A connection the server closes
  (`Connection: close`, its keep-alive max, or no keep-alive at all) is replaced by a new one.
- `unpooled`: the same six workers, but every request (the document too) on a new connection
  with `Connection: close`: N + 1 connections, at most six at once.

asyncio with raw non-blocking sockets (`loop.sock_*`) and TLS through `ssl.MemoryBIO`, because
that is the one way asyncio lets a client resume a TLS session (`SSLContext.wrap_bio(...,
session=)`): like a browser, connections 2-6 offer the session of connection 1 (under TLS 1.3
its ticket arrives with the first response, before the resource list is known), and each
handshake is counted as full or resumed (`SSLObject.session_reused`). Nagle is off, as in
browsers. Loads never overlap; the page-load time runs from the first connect() to the last
byte of the last resource.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import ssl
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.clients.contract import Mode
from benchmarks.common import OneLineParser, write_atomic
from benchmarks.pageload.model import CONNECTIONS_PER_HOST
from servers.endpoints import MAX_PAGE_RESOURCES, MAX_RESOURCE_BYTES

PROG = "python -m benchmarks.pageload.pyclient"
RESULT_FORMAT = 1
MAX_LOADS = 10_000
MAX_HEAD_BYTES = 64 * 1024
RECV_BYTES = 256 * 1024
DEFAULT_TIMEOUT_S = 60.0
_SRC = re.compile(rb"<(?:img|script|link)\b[^>]*?\s(?:src|href)=\"([^\"]+)\"")


class ClientError(Exception):
    """A bad option: one line, exit 2."""


class LoadError(Exception):
    """A load that could not finish (connection refused, reset, bad response, timeout)."""


@dataclass(frozen=True)
class PageClientConfig:
    """One batch of loads of one page; `command()` is the only place the flags are spelled."""

    url: str  # the server's base URL, http(s)://host:port
    resources: int
    size: int
    mode: Mode = Mode.POOLED
    loads: int = 1
    connections: int = CONNECTIONS_PER_HOST
    ca_path: Path | None = None
    resume: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S
    output: Path | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
            raise ClientError(f"--url must be http(s)://HOST:PORT, got {self.url!r}")
        if not 0 <= self.resources <= MAX_PAGE_RESOURCES:
            raise ClientError(f"--resources must be between 0 and {MAX_PAGE_RESOURCES}")
        if not 0 <= self.size <= MAX_RESOURCE_BYTES:
            raise ClientError(f"--size must be between 0 and {MAX_RESOURCE_BYTES} bytes")
        if not 1 <= self.loads <= MAX_LOADS:
            raise ClientError(f"--loads must be between 1 and {MAX_LOADS}")
        if not 1 <= self.connections <= 64:
            raise ClientError("--connections must be between 1 and 64")
        if not 0 < self.timeout_s <= 3600:
            raise ClientError("--timeout must be between 0 and 3600 seconds")
        if self.ca_path is not None and not self.ca_path.is_file():
            raise ClientError(f"--ca: no such file: {self.ca_path}")

    @property
    def page_path(self) -> str:
        return f"/page?n={self.resources}&size={self.size}"

    def command(self) -> list[str]:
        argv = [
            sys.executable, "-m", "benchmarks.pageload.pyclient",
            "--url", self.url,
            "--resources", str(self.resources),
            "--size", str(self.size),
            "--mode", self.mode.value,
            "--loads", str(self.loads),
            "--connections", str(self.connections),
            "--timeout", repr(self.timeout_s),
        ]  # fmt: skip
        if self.ca_path is not None:
            argv += ["--ca", str(self.ca_path)]
        if not self.resume:
            argv.append("--no-resume")
        if self.output is not None:
            argv += ["--output", str(self.output)]
        return argv


@dataclass
class Fetch:
    """One request of a load: which connection carried it and when (ms from the load's start)."""

    path: str
    connection: int
    reused: bool
    start_ms: float
    end_ms: float
    status: int


@dataclass
class LoadResult:
    page_load_ms: float = 0.0
    document_ms: float = 0.0  # the document's last byte
    connections: int = 0
    requests: int = 0
    bytes_received: int = 0
    tls_full: int = 0
    tls_resumed: int = 0
    tls_version: str = ""
    cpu_ms: float = 0.0  # this process's CPU during the load
    error: str = ""
    fetches: list[Fetch] = field(default_factory=list)

    @property
    def reused(self) -> int:
        return sum(f.reused for f in self.fetches)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    keep: bool  # the server left the connection open for another request
    size: int  # head + body bytes


class Connection:
    """One HTTP/1.1 connection on a non-blocking socket, TLS through memory BIOs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, number: int) -> None:
        self.loop = loop
        self.sock = sock
        self.number = number
        self.tls: ssl.SSLObject | None = None
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._buffer = bytearray()
        self.requests = 0

    @classmethod
    async def open(
        cls,
        address: tuple[str, int],
        number: int,
        context: ssl.SSLContext | None,
        server_hostname: str,
        session: ssl.SSLSession | None,
    ) -> Connection:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = cls(loop, sock, number)
        try:
            await loop.sock_connect(sock, address)
            if context is not None:
                await conn._handshake(context, server_hostname, session)
        except BaseException:
            sock.close()
            raise
        return conn

    async def _handshake(
        self, context: ssl.SSLContext, hostname: str, session: ssl.SSLSession | None
    ) -> None:
        self.tls = context.wrap_bio(self._in, self._out, server_hostname=hostname, session=session)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                await self._feed()
        await self._flush()

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            await self.loop.sock_sendall(self.sock, data)

    async def _feed(self) -> None:
        data = await self.loop.sock_recv(self.sock, RECV_BYTES)
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()
            if self.tls is None or not self.tls.pending():
                raise ConnectionResetError("the server closed the connection")

    async def _recv(self) -> bytes:
        """Application bytes; b"" at the end of the stream."""
        if self.tls is None:
            return await self.loop.sock_recv(self.sock, RECV_BYTES)
        while True:
            try:
                return self.tls.read(RECV_BYTES)
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self.loop.sock_recv(self.sock, RECV_BYTES)
                if not data:
                    self._in.write_eof()
                    try:
                        return self.tls.read(RECV_BYTES)
                    except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ssl.SSLWantReadError):
                        return b""
                self._in.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def send(self, data: bytes) -> None:
        if self.tls is None:
            await self.loop.sock_sendall(self.sock, data)
        else:
            self.tls.write(data)
            await self._flush()

    async def get(self, path: str, host: str, close: bool) -> Response:
        """One GET; raises ConnectionError when the connection ends before a whole response."""
        header = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n"
        if close:
            header += "Connection: close\r\n"
        await self.send((header + "\r\n").encode("latin-1"))
        self.requests += 1
        head = await self._read_head()
        status, length, keep = _parse_head(head)
        while len(self._buffer) < length:
            data = await self._recv()
            if not data:
                raise ConnectionResetError("the response ended early")
            self._buffer += data
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return Response(status, body, keep and not close, len(head) + length)

    async def _read_head(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self._buffer[: end + 4])
                del self._buffer[: end + 4]
                return head
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise LoadError("response head larger than 64 KiB")
            data = await self._recv()
            if not data:
                raise ConnectionResetError("the connection closed before a response")
            self._buffer += data

    def close(self) -> None:
        self.sock.close()


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, keep-alive) of an HTTP/1.1 response head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise LoadError(f"bad status line {lines[0][:80]!r}")
    length = None
    tokens: set[str] = set()
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if key == "content-length":
            length = int(value.strip())
        elif key == "connection":
            tokens |= {t.strip().lower() for t in value.split(",")}
    if length is None:
        raise LoadError("response without Content-Length")  # every reference server sends it
    keep = "close" not in tokens and (parts[0] == "HTTP/1.1" or "keep-alive" in tokens)
    return int(parts[1]), length, keep


def resource_paths(html: bytes) -> list[str]:
    """Same-origin resource paths the page references, in document order."""
    found = [m.decode("latin-1") for m in _SRC.findall(html)]
    return [p for p in found if p.startswith("/") and not p.startswith("//")]


class PageLoader:
    """Loads one page, again and again, each time with an empty pool."""

    def __init__(self, config: PageClientConfig) -> None:
        self.config = config
        parts = urlsplit(config.url)
        self.hostname = parts.hostname or ""
        self.address = (self.hostname, parts.port or 0)
        self.host_header = parts.netloc
        self.context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.context = ssl.create_default_context(
                cafile=str(config.ca_path) if config.ca_path else None
            )
            self.context.set_alpn_protocols(["http/1.1"])
        self.unpooled = config.mode is Mode.UNPOOLED

    async def load(self) -> LoadResult:
        result = LoadResult()
        cpu_before = time.process_time()
        try:
            await asyncio.wait_for(self._load(result), self.config.timeout_s)
        except (OSError, LoadError, ssl.SSLError, ValueError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        except TimeoutError:
            result.error = f"timeout after {self.config.timeout_s:g} s"
        result.cpu_ms = (time.process_time() - cpu_before) * 1000
        return result

    async def _load(self, result: LoadResult) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        session: list[ssl.SSLSession | None] = [None]  # this load's session cache
        opened: list[Connection] = []

        def ms() -> float:
            return (loop.time() - t0) * 1000

        async def connect() -> Connection:
            offer = session[0] if self.config.resume else None
            conn = await Connection.open(
                self.address, len(opened) + 1, self.context, self.hostname, offer
            )
            opened.append(conn)
            if conn.tls is not None:
                if conn.tls.session_reused:
                    result.tls_resumed += 1
                else:
                    result.tls_full += 1
                result.tls_version = conn.tls.version() or ""
            return conn

        async def fetch(conn: Connection | None, path: str) -> tuple[Connection | None, bytes]:
            """GET on `conn` (or a new connection); the connection if it may carry another."""
            reused = conn is not None
            start = ms()
            if conn is None:
                conn = await connect()
            try:
                response = await conn.get(path, self.host_header, close=self.unpooled)
            except ConnectionError:
                if not reused:
                    raise
                conn.close()  # the server closed it while idle: a browser retries once
                start, reused = ms(), False
                conn = await connect()
                response = await conn.get(path, self.host_header, close=self.unpooled)
            if response.status != 200:
                raise LoadError(f"GET {path}: status {response.status}")
            if conn.tls is not None and session[0] is None:
                session[0] = conn.tls.session  # a TLS 1.3 ticket has arrived with the response
            result.fetches.append(Fetch(path, conn.number, reused, start, ms(), response.status))
            result.bytes_received += response.size
            if not response.keep:
                conn.close()
                return None, response.body
            return conn, response.body

        try:
            first, html = await fetch(None, self.config.page_path)
            result.document_ms = ms()
            queue = deque(resource_paths(html))

            async def worker(conn: Connection | None, path: str) -> None:
                conn, _ = await fetch(conn, path)
                while queue:
                    conn, _ = await fetch(conn, queue.popleft())
                if conn is not None:
                    conn.close()

            # Every worker gets its first resource now, as a browser dispatches all of them
            # once the document is parsed: on a fast path connection 1 could otherwise answer
            # them all before the other workers ever ran.
            firsts = [queue.popleft() for _ in range(min(self.config.connections, len(queue)))]
            if not firsts and first is not None:
                first.close()
            await asyncio.gather(
                *(worker(first if i == 0 else None, path) for i, path in enumerate(firsts))
            )
            result.page_load_ms = ms()
        finally:
            for conn in opened:
                conn.close()
            result.connections = len(opened)
            result.requests = len(result.fetches)


async def run_loads(config: PageClientConfig) -> list[LoadResult]:
    loader = PageLoader(config)
    return [await loader.load() for _ in range(config.loads)]


def result_document(config: PageClientConfig, loads: list[LoadResult]) -> dict[str, Any]:
    rows = []
    for load in loads:
        row = asdict(load)
        row["reused"] = load.reused
        rows.append(row)
    return {
        "format": RESULT_FORMAT,
        "client": "python",
        "mode": config.mode.value,
        "url": config.url + config.page_path,
        "loads": rows,
    }


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="server base URL, http(s)://HOST:PORT")
    p.add_argument("--resources", type=int, required=True, metavar="N")
    p.add_argument("--size", type=int, required=True, metavar="BYTES")
    p.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.POOLED.value)
    p.add_argument("--loads", type=int, default=1)
    p.add_argument("--connections", type=int, default=CONNECTIONS_PER_HOST)
    p.add_argument("--ca", type=Path, default=None, help="CA file to trust (https)")
    p.add_argument("--no-resume", action="store_true", help="never offer a TLS session")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per load, seconds")
    p.add_argument("--output", type=Path, default=None, help="JSON file (default: stdout)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = PageClientConfig(
            url=args.url,
            resources=args.resources,
            size=args.size,
            mode=Mode(args.mode),
            loads=args.loads,
            connections=args.connections,
            ca_path=args.ca,
            resume=not args.no_resume,
            timeout_s=args.timeout,
            output=args.output,
        )
    except ClientError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    started = time.monotonic()
    loads = asyncio.run(run_loads(config))
    document = result_document(config, loads)
    document["wall_s"] = round(time.monotonic() - started, 3)
    text = json.dumps(document) + "\n"
    if config.output is None:
        sys.stdout.write(text)
    else:
        write_atomic(config.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
