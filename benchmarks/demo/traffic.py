"""The demo's four clients: each makes two requests and reports what it saw, not a verdict.

Kept apart from benchmarks.demo, which runs the server, reads its log and judges: here is only
what a client does (a pooled Session, urlopen without a pool, two overlapping requests through
a urllib3 pool of one) and the evidence it brings back (durations, urllib3's own warnings).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import requests
import urllib3

HTTP_TIMEOUT_S = 10.0
POOL_LOGGER = "urllib3.connectionpool"


@dataclass(frozen=True)
class Observed:
    """What a client saw: a description, and for the overlapped cases the evidence of the story."""

    description: str
    times_s: tuple[float, ...] = ()  # each request's duration, shortest first
    pool_messages: tuple[str, ...] = ()  # urllib3's warnings during the case, verbatim


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def pool_warnings() -> Iterator[list[str]]:
    """urllib3's pool warnings while the block runs, kept as evidence instead of printed.

    "Connection pool is full, discarding connection" is how urllib3 says it closed a connection
    because its pool had no room for it: the demo quotes it rather than asserting it.
    """
    logger = logging.getLogger(POOL_LOGGER)
    handler, propagate = _ListHandler(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


# --- the four clients: each makes two requests to `base` with `case=<tag>` in the query ---


def pooled(base: str, tag: str) -> Observed:
    """One Session: its pool keeps the connection after the first response for the second."""
    with requests.Session() as session:
        for n in (1, 2):
            session.get(f"{base}/peer?case={tag}&n={n}", timeout=HTTP_TIMEOUT_S).raise_for_status()
    return Observed("requests.Session: two sequential GETs")


def unpooled(base: str, tag: str) -> Observed:
    """urlopen has no pool: it sends `Connection: close` and connects anew for each request."""
    for n in (1, 2):
        with urllib.request.urlopen(f"{base}/peer?case={tag}&n={n}", timeout=HTTP_TIMEOUT_S) as r:
            r.read()
    return Observed("urllib.request.urlopen: two sequential GETs, no pool")


def overlapped(block: bool, sleep_ms: int) -> Callable[[str, str], Observed]:
    """Two threads released at once, each a GET /sleep through one urllib3 pool of maxsize 1."""

    def client(base: str, tag: str) -> Observed:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=1, block=block)
        barrier = threading.Barrier(2)
        elapsed: dict[int, float] = {}
        errors: list[Exception] = []

        def one(n: int) -> None:
            """A thread's failure is handed to the main thread, never printed as a traceback."""
            try:
                barrier.wait()
                start = time.perf_counter()
                url = f"/sleep?ms={sleep_ms}&case={tag}&n={n}"
                pool.request("GET", url, timeout=HTTP_TIMEOUT_S, retries=False)
                elapsed[n] = time.perf_counter() - start
            except Exception as exc:  # the server stopped under it (Ctrl-C), or failed
                errors.append(exc)

        with pool_warnings() as messages:
            # Daemons: after a Ctrl-C the main thread stops the server and exits without them.
            threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in (1, 2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            pool.close()
        if errors:
            raise errors[0]
        times = tuple(sorted(elapsed.values()))
        took = " and ".join(f"{t * 1000:.0f} ms" for t in times)
        description = (
            f"urllib3 HTTPConnectionPool(maxsize=1, block={block}), two GET /sleep?ms={sleep_ms} "
            f"started together; they took {took}"
        )
        return Observed(description, times, tuple(messages))

    return client
