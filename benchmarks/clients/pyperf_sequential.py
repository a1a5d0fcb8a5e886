"""One request at a time over http.client: what a reused connection saves per request.

This is the seed experiment: the same GET, sequentially, over one reused `HTTPConnection`
(pooled) or over a new connection per request that asks the server to close it (unpooled). With
no concurrency the difference per request is the connection set-up (and teardown) itself.

    python -m benchmarks.clients.pyperf_sequential --url http://127.0.0.1:8080 --mode pooled \
        --duration 5 --warmup 1 --output /tmp/seq.json

Prints pyperf's mean per request and a summary line ("... us per request ...") from the merged
histogram; pyperf's own JSON is kept beside --output as `<output>.pyperf.json`.
"""

from __future__ import annotations

import http.client
import ssl
import sys
import time
from collections import Counter

from benchmarks.clients.contract import Mode
from benchmarks.clients.pyperf_driver import Batch, ClientSpec, main
from benchmarks.clients.shared import (
    CONNECT_TIMEOUT_S,
    Target,
    error_kind,
    socket_phases,
)

PROG = "python -m benchmarks.clients.pyperf_sequential"


class SequentialClient:
    """http.client, one request in flight; pooled keeps one connection for the whole worker.

    Each connect is timed apart from its TLS handshake (`_open`); the first byte is taken when
    `getresponse()` has read the status line and headers (one read: a few microseconds of
    parsing later than the byte itself, and no extra system call per request)."""

    tls_resumed = 0  # never offers a TLS session to resume

    def __init__(self, target: Target, mode: Mode) -> None:
        self.target = target
        self.mode = mode
        self.context = target.ssl_context()
        self.headers = {"User-Agent": "keepalive-bench"}
        if mode is Mode.UNPOOLED:
            self.headers["Connection"] = "close"
        self.conn: http.client.HTTPConnection | None = None
        self.connections_opened = 0
        self.timings = socket_phases(self.context is not None)
        self.connects: list[int] = []
        self.tls: list[int] = []
        self.ttfb: list[int] = []

    def _new(self) -> http.client.HTTPConnection:
        if self.context is not None:
            return self._https(self.context)
        return http.client.HTTPConnection(
            self.target.host, self.target.port, timeout=CONNECT_TIMEOUT_S
        )

    def _https(self, context: ssl.SSLContext) -> http.client.HTTPConnection:
        """An https connection (not yet connected); a full handshake on each new connection."""
        return http.client.HTTPSConnection(
            self.target.host, self.target.port, timeout=CONNECT_TIMEOUT_S, context=context
        )

    def _handshake(self, conn: http.client.HTTPConnection, context: ssl.SSLContext) -> None:
        """The TLS handshake on `conn`'s connected socket (a subclass may offer a session)."""
        conn.sock = context.wrap_socket(conn.sock, server_hostname=self.target.host)

    def _got_head(self, conn: http.client.HTTPConnection) -> None:
        """Called once a response head has arrived (TLS 1.3 session tickets came before it)."""

    def _open(self, conn: http.client.HTTPConnection) -> None:
        """Connect `conn` (TCP, then TLS on https: what HTTPSConnection.connect does), timing
        each step. Called before every request whose connection is closed, so http.client's own
        reconnect (auto_open, once the server closed) never happens unseen."""
        clock = time.perf_counter_ns
        start = clock()
        http.client.HTTPConnection.connect(conn)  # TCP only, also for an HTTPSConnection
        connected = clock()
        if self.context is not None:
            self._handshake(conn, self.context)
            self.tls.append(clock() - connected)
        self.connects.append(connected - start)
        self.connections_opened += 1

    def _one(self, conn: http.client.HTTPConnection) -> int:
        if conn.sock is None:
            self._open(conn)
        write = time.perf_counter_ns()
        conn.request("GET", self.target.path, headers=self.headers)
        response = conn.getresponse()
        self.ttfb.append(time.perf_counter_ns() - write)
        self._got_head(conn)
        response.read()
        return response.status

    def run(self, loops: int) -> Batch:
        """`loops` requests; a failed pooled connection is dropped and reopened on the next one."""
        latencies: list[int] = []
        errors: Counter[str] = Counter()
        self.connects, self.tls, self.ttfb = [], [], []
        pooled = self.mode is Mode.POOLED
        clock = time.perf_counter_ns
        t0 = clock()
        for _ in range(loops):
            start = clock()
            conn = self.conn if pooled and self.conn is not None else self._new()
            try:
                status = self._one(conn)
            except (OSError, http.client.HTTPException) as exc:
                errors[error_kind(exc)] += 1
                del self.ttfb[len(latencies) :]  # one per completed request, like the latencies
                conn.close()
                self.conn = None
                continue
            if pooled:
                self.conn = conn  # http.client reopens it if the server said close
            else:
                conn.close()
            if status >= 400:
                errors[f"http-{status}"] += 1
                del self.ttfb[len(latencies) :]
            else:
                latencies.append(clock() - start)
        return Batch((clock() - t0) / 1e9, latencies, errors, connects_ns=self.connects,
                     tls_ns=self.tls, ttfb_ns=self.ttfb)  # fmt: skip

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


SPEC = ClientSpec(
    prog=PROG,
    module="benchmarks.clients.pyperf_sequential",
    description=__doc__.split("\n")[0],
    bench_name=lambda config: f"sequential-{config.mode}",
    make_client=lambda config, target: SequentialClient(target, config.mode),
)

if __name__ == "__main__":
    sys.exit(main(SPEC))
