"""C connections in parallel under pyperf: throughput with and without connection reuse.

    python -m benchmarks.clients.pyperf_concurrent --variant raw --concurrency 50 \
        --url http://127.0.0.1:8080 --mode pooled --duration 5 --output /tmp/conc.json

`--variant raw` is the wrk-like Protocol client of `benchmarks.clients.raw_client` (fast
enough that the server sets the ceiling); `--variant aiohttp` is what an application would use:
a ClientSession with `TCPConnector(limit=C)` (pooled) or `force_close=True` plus
`Connection: close` (unpooled).
Both run on uvloop, so the difference between them is the client library, not the loop. pyperf
reports seconds per request (the inverse of throughput); the summary line adds req/s and the
latency percentiles from the histograms merged across workers.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from typing import Any

from benchmarks.clients.contract import PYPERF_VARIANTS, ClientConfig, ClientKind, Mode
from benchmarks.clients.pyperf_driver import Batch, ClientSpec, LoadClient, main
from benchmarks.clients.shared import Phase, Target, error_kind

PROG = "python -m benchmarks.clients.pyperf_concurrent"
REQUEST_TIMEOUT_S = 30.0


class AiohttpClient:
    """aiohttp ClientSession shared by `concurrency` tasks that draw from one request budget.

    Its trace hooks time a new connection from start to end of its creation, which over https
    includes the TLS handshake: so the connect phase is measured over http only, and neither
    TLS nor the first byte (aiohttp has no hook at the first response byte)."""

    tls_resumed = 0  # never offers a TLS session to resume

    def __init__(self, target: Target, mode: Mode, concurrency: int) -> None:
        import uvloop

        self.loop = uvloop.new_event_loop()
        self.target = target
        self.concurrency = concurrency
        self.url = f"{target.scheme}://{target.host_header}{target.path}"
        self.headers = {"User-Agent": "keepalive-bench"}
        if mode is Mode.UNPOOLED:
            self.headers["Connection"] = "close"
        self.session: Any = self.loop.run_until_complete(self._session(mode is Mode.UNPOOLED))
        self.remaining = 0
        self.latencies: list[int] = []
        self.errors: Counter[str] = Counter()
        self.connections_opened = 0
        self.timings = frozenset() if target.tls else frozenset({Phase.CONNECT})
        self.connects: list[int] = []

    async def _session(self, force_close: bool) -> Any:
        import aiohttp

        ssl_option: Any = self.target.ssl_context() if self.target.tls else True
        connector = aiohttp.TCPConnector(
            limit=self.concurrency, force_close=force_close, ssl=ssl_option
        )
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_start.append(self._opening)
        trace.on_connection_create_end.append(self._opened)
        return aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, trace_configs=[trace]
        )

    async def _opening(self, _session: Any, ctx: Any, _params: Any) -> None:
        """aiohttp's trace hook: a new connection starts (`ctx` is the request's own)."""
        ctx.connect_start = time.perf_counter_ns()

    async def _opened(self, _session: Any, ctx: Any, _params: Any) -> None:
        """aiohttp's trace hook: a new connection (not one taken from the pool)."""
        self.connects.append(time.perf_counter_ns() - ctx.connect_start)
        self.connections_opened += 1

    def run(self, loops: int) -> Batch:
        self.remaining = loops
        self.latencies, self.errors, self.connects = [], Counter(), []
        t0 = time.perf_counter_ns()
        self.loop.run_until_complete(self._batch())
        elapsed = (time.perf_counter_ns() - t0) / 1e9
        return Batch(elapsed, self.latencies, self.errors, connects_ns=self.connects)

    async def _batch(self) -> None:
        await asyncio.gather(*(self._task() for _ in range(self.concurrency)))

    async def _task(self) -> None:
        clock, session, url, headers = time.perf_counter_ns, self.session, self.url, self.headers
        while self.remaining > 0:
            self.remaining -= 1
            start = clock()
            try:
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    status = response.status
            except Exception as exc:  # every failure is counted, by kind
                self.errors[_aiohttp_error_kind(exc)] += 1
                continue
            if status >= 400:
                self.errors[f"http-{status}"] += 1
            else:
                self.latencies.append(clock() - start)

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.close()


def _aiohttp_error_kind(exc: BaseException) -> str:
    """aiohttp wraps socket errors; report the errno underneath (EADDRNOTAVAIL, ...)."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError):
        return error_kind(os_error)
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    return error_kind(exc)


def make_client(config: ClientConfig, target: Target) -> LoadClient:
    if config.kind is ClientKind.PYPERF_CONCURRENT_RAW:
        from benchmarks.clients.raw_client import RawClient

        return RawClient(target, config.mode, config.concurrency)
    return AiohttpClient(target, config.mode, config.concurrency)


def bench_name(config: ClientConfig) -> str:
    return f"concurrent-{PYPERF_VARIANTS[config.kind]}-{config.mode}-c{config.concurrency}"


SPEC = ClientSpec(
    prog=PROG,
    module="benchmarks.clients.pyperf_concurrent",
    description=__doc__.split("\n")[0],
    bench_name=bench_name,
    make_client=make_client,
)

if __name__ == "__main__":
    sys.exit(main(SPEC))
