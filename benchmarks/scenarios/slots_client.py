"""The client side of `python -m benchmarks slots`: N holders take the slots, then newcomers.

    python -m benchmarks.scenarios.slots_client HOST PORT JSON

JSON is `SlotsPlan.to_json()` (benchmarks/scenarios/slots.py). One process, one asyncio loop,
one clock for every timestamp, so a newcomer's wait and the holders' idle ages compare exactly:

1. baseline: one request on a fresh connection while the server is empty (connect to first
   response byte: what a newcomer pays when nothing makes it wait), then closed;
2. holders: N users, started `spread_s / (N - 1)` apart, each sends `requests` GET / with
   `think_s` between them on one keep-alive connection (a new one whenever the server closes
   it), then stays connected and silent (the user reads) until the server closes it or the run
   ends;
3. newcomers: M users arrive together at `arrive_s`, each connects, sends GET / at once and
   reads its response: connect() time (the kernel completes the handshake when the backlog has
   room, even while the server does not accept) and time to the first response byte. They keep
   their connections (keep-alive users too) until every newcomer is answered, so each needs a
   slot a holder gives up.

Prints one JSON object on stdout. Never raises on a network error: it is recorded.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import Any

REQUEST = b"GET / HTTP/1.1\r\nHost: slots\r\n\r\n"
HEAD_LIMIT = 65536


@dataclass
class Answer:
    """One response as a client sees it."""

    status: int
    close: bool  # the server said Connection: close


async def read_response(reader: asyncio.StreamReader) -> Answer:
    """A response head and its Content-Length body (the reference servers frame by length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > HEAD_LIMIT:
        raise ValueError("response head too large")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    await reader.readexactly(int(fields.get("content-length", "0")))
    return Answer(status, "close" in fields.get("connection", "").lower())


def error_name(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "EOF before a response"
    return type(exc).__name__


@dataclass
class HolderResult:
    connections: int = 0
    answered: int = 0
    idle_since: float | None = None  # loop time of its last response
    closed_by_server_at: float | None = None  # EOF while it was idle
    error: str = ""


@dataclass
class NewcomerResult:
    connect_s: float | None = None
    first_byte_s: float | None = None
    status: int | None = None
    error: str = ""
    start: float = 0.0


@dataclass
class Run:
    host: str
    port: int
    plan: dict[str, Any]
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def baseline(self) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(REQUEST)
        await reader.readexactly(1)
        first = loop.time() - start
        writer.close()
        return first

    async def holder(self, index: int, t0: float) -> HolderResult:
        loop = asyncio.get_running_loop()
        plan = self.plan
        gap = plan["spread_s"] / max(plan["holders"] - 1, 1)
        await asyncio.sleep(max(0.0, t0 + index * gap - loop.time()))
        result = HolderResult()
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            for number in range(plan["requests"]):
                if number:
                    await asyncio.sleep(plan["think_s"])
                if conn is None:
                    conn = await asyncio.open_connection(self.host, self.port)
                    result.connections += 1
                reader, writer = conn
                writer.write(REQUEST)
                answer = await read_response(reader)
                result.answered += answer.status == 200
                result.idle_since = loop.time()
                if answer.close:
                    writer.close()
                    conn = None
            if conn is not None:
                await self._idle(conn[0], result)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            result.error = error_name(exc)
        finally:
            if conn is not None:
                conn[1].close()
        return result

    async def _idle(self, reader: asyncio.StreamReader, result: HolderResult) -> None:
        """Silent until the server closes the connection (EOF) or the run ends."""
        loop = asyncio.get_running_loop()
        eof = asyncio.ensure_future(reader.read(1))
        done = asyncio.ensure_future(self.done.wait())
        await asyncio.wait({eof, done}, return_when=asyncio.FIRST_COMPLETED)
        if eof.done():
            if eof.exception() is None and eof.result() == b"":
                result.closed_by_server_at = loop.time()
            elif eof.exception() is not None:
                result.error = error_name(eof.exception())  # type: ignore[arg-type]
            else:
                result.error = "unsolicited bytes"
        eof.cancel()
        done.cancel()

    async def newcomer(self, arrive_at: float, keep: list[asyncio.StreamWriter]) -> NewcomerResult:
        """One newcomer; its connection is kept open (appended to `keep`): it is a keep-alive
        user too, so the next newcomer cannot take its slot."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, arrive_at - loop.time()))
        result = NewcomerResult(start=loop.time())
        writer = None
        try:
            async with asyncio.timeout(self.plan["newcomer_timeout_s"]):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                result.connect_s = loop.time() - result.start
                writer.write(REQUEST)
                await reader.readexactly(1)
                result.first_byte_s = loop.time() - result.start
                rest = await read_response(_Prefixed(b"H", reader))  # type: ignore[arg-type]
                result.status = rest.status
        except TimeoutError:
            result.error = "timeout"
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            result.error = error_name(exc)
        if writer is not None:
            keep.append(writer)
        return result


class _Prefixed:
    """A reader whose first bytes were already read (the first response byte)."""

    def __init__(self, prefix: bytes, reader: asyncio.StreamReader) -> None:
        self._prefix = prefix
        self._reader = reader

    async def readuntil(self, separator: bytes) -> bytes:
        prefix, self._prefix = self._prefix, b""
        return prefix + await self._reader.readuntil(separator)

    async def readexactly(self, n: int) -> bytes:
        return await self._reader.readexactly(n)


async def main_async(host: str, port: int, plan: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    run = Run(host, port, plan)
    baseline = await run.baseline()
    await asyncio.sleep(0.2)  # the server counts the baseline's close: its slot is free again
    t0 = loop.time()
    holders = [asyncio.ensure_future(run.holder(i, t0)) for i in range(plan["holders"])]
    arrive_at = t0 + plan["arrive_s"]
    kept: list[asyncio.StreamWriter] = []
    newcomers = await asyncio.gather(
        *(run.newcomer(arrive_at, kept) for _ in range(plan["newcomers"]))
    )
    run.done.set()
    for writer in kept:
        writer.close()
    held = await asyncio.gather(*holders)
    return {
        "baseline_first_byte_s": baseline,
        "arrive_at": arrive_at - t0,
        "holders": [
            {
                "connections": h.connections, "answered": h.answered, "error": h.error,
                "idle_since": None if h.idle_since is None else h.idle_since - t0,
                "closed_by_server_at": None if h.closed_by_server_at is None
                else h.closed_by_server_at - t0,
            }
            for h in held
        ],
        "newcomers": [
            {"connect_s": n.connect_s, "first_byte_s": n.first_byte_s, "status": n.status,
             "error": n.error, "start": n.start - t0}
            for n in newcomers
        ],
    }  # fmt: skip


def main(argv: list[str]) -> int:
    host, port, plan = argv[0], int(argv[1]), json.loads(argv[2])
    print(json.dumps(asyncio.run(main_async(host, port, plan))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
