"""One client library's side of the idle-timeout race, in a process of its own (argv in, JSON out).

    python -m benchmarks.scenarios.race_client CLIENT METHOD URL CONTROL_URL WAIT_S[,WAIT_S...]

For each wait: a fresh pool, a priming request, the server's counters, a sleep until `wait`
seconds after the priming response, the measured request on whatever connection the library
picks, the counters again. Prints one JSON list: per wait the status (0 when it raised), the
exception's type, the server's accepted/served deltas and the library's own retry count (the
evidence that it sent the request twice, which the server cannot see when the first attempt met
a closed socket). The library is imported only in this process: geventhttpclient's monkey
patching never reaches the harness. Counters are fetched with a bare socket, not the library.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

CLIENTS = ("http.client", "requests", "aiohttp", "geventhttpclient")
BODY = b"race-body-0123456789"
TIMEOUT_S = 10.0

# request(method) -> (status, error type or "", retries the library counted)
Attempt = tuple[int, str, int]


def counters(control_url: str) -> tuple[int, int]:
    """(connections_accepted, requests_served) from the control listener, on a socket of its own."""
    parts = urlsplit(control_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(b"GET /counters HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    return int(body["connections_accepted"]), int(body["requests_served"])


def _error(exc: BaseException) -> str:
    """The innermost cause's type, the one that says what the socket did."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return type(exc).__name__


def http_client_pool(url: str) -> tuple[Callable[[str], Attempt], Callable[[], None]]:
    import http.client

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT_S)

    def request(method: str) -> Attempt:
        try:
            conn.request(method, "/", body=BODY if method == "POST" else None)
            response = conn.getresponse()
            response.read()
            return response.status, "", 0
        except Exception as exc:  # noqa: BLE001 - the type is the measurement
            conn.close()
            return 0, _error(exc), 0

    return request, conn.close


def requests_pool(url: str) -> tuple[Callable[[str], Attempt], Callable[[], None]]:
    import requests

    session = requests.Session()

    def request(method: str) -> Attempt:
        try:
            response = session.request(
                method, url, data=BODY if method == "POST" else None, timeout=TIMEOUT_S
            )
        except Exception as exc:  # noqa: BLE001
            return 0, _error(exc), 0
        retries = response.raw.retries
        return response.status_code, "", len(retries.history) if retries is not None else 0

    return request, session.close


def aiohttp_pool(url: str) -> tuple[Callable[[str], Attempt], Callable[[], None]]:
    import asyncio

    import aiohttp

    loop = asyncio.new_event_loop()
    seen = {"reused": 0, "created": 0}

    async def on_reuse(*_: Any) -> None:
        seen["reused"] += 1

    async def on_create(*_: Any) -> None:
        seen["created"] += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_reuseconn.append(on_reuse)
    trace.on_connection_create_end.append(on_create)

    async def make() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(trace_configs=[trace])

    session = loop.run_until_complete(make())

    async def fetch(method: str) -> int:
        data = BODY if method == "POST" else None
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with session.request(method, url, data=data, timeout=timeout) as response:
            await response.read()
            return response.status

    def request(method: str) -> Attempt:
        seen.update(reused=0, created=0)
        try:
            status = loop.run_until_complete(fetch(method))
        except Exception as exc:  # noqa: BLE001
            return 0, _error(exc), 0
        # a pooled connection taken and then a new one made for the same request: a retry
        return status, "", 1 if seen["reused"] and seen["created"] else 0

    def close() -> None:
        loop.run_until_complete(session.close())
        loop.close()

    return request, close


def gevent_pool(url: str) -> tuple[Callable[[str], Attempt], Callable[[], None]]:
    """Locust's FastHttpSession with FastHttpUser's defaults (geventhttpclient underneath)."""
    from gevent import monkey

    monkey.patch_all()
    from geventhttpclient.connectionpool import ConnectionPool
    from locust.contrib.fasthttp import FastHttpSession
    from locust.event import EventHook

    sockets = {"taken": 0}
    original = ConnectionPool.get_socket

    def counted(self: Any) -> Any:
        sockets["taken"] += 1
        return original(self)

    ConnectionPool.get_socket = counted  # type: ignore[method-assign]
    session = FastHttpSession(
        url, request_event=EventHook(), user=None, max_retries=0, concurrency=10,
        connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S, insecure=True,
    )  # fmt: skip

    def request(method: str) -> Attempt:
        sockets["taken"] = 0
        data = BODY.decode() if method == "POST" else None
        response = session.request(method, "/", data=data)
        error = getattr(response, "error", None)  # set on an ErrorResponse or a failed one
        if error is not None:
            return 0, _error(error), max(0, sockets["taken"] - 1)
        return int(response.status_code), "", max(0, sockets["taken"] - 1)

    return request, lambda: None


POOLS = {
    "http.client": http_client_pool,
    "requests": requests_pool,
    "aiohttp": aiohttp_pool,
    "geventhttpclient": gevent_pool,
}


def trial(pool: Callable[[str], Any], url: str, control: str, method: str, wait_s: float) -> dict:
    request, close = pool(url)
    try:
        status, error, _ = request(method)
        primed = time.monotonic()
        if status != 200:
            return {"wait_s": wait_s, "status": status, "error": f"priming: {error or status}"}
        accepted0, served0 = counters(control)
        time.sleep(max(0.0, primed + wait_s - time.monotonic()))
        slept = time.monotonic() - primed  # a busy machine oversleeps: report the real wait
        status, error, retries = request(method)
        accepted1, served1 = counters(control)
    finally:
        close()
    return {
        "wait_s": wait_s, "actual_wait_s": slept, "status": status, "error": error,
        "retries": retries, "accepted": accepted1 - accepted0, "served": served1 - served0,
    }  # fmt: skip


def main(argv: list[str]) -> int:
    client, method, url, control, waits = argv
    pool = POOLS[client]
    out = [trial(pool, url, control, method, float(w)) for w in waits.split(",")]
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
