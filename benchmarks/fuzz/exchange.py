"""One fuzz case against one server: a fresh connection, the writes, a half-close, the answer.

The client shuts its write side after the last write, so a server that waits for more body bytes
sees EOF and must answer or close: after that, a connection still open at the deadline is a hang,
whatever the input was. Responses are counted by their status lines: every body the reference
servers send is text, bytes of `x` or JSON, none of which contains `HTTP/1.`, so no framing
(and no knowledge of which request was a HEAD) is needed to list the statuses in order.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass

from benchmarks.fuzz.mutator import Case

WRITE_GAP_S = 0.002  # between the writes of a split case, so that they arrive as separate reads
_STATUS_LINE = re.compile(rb"HTTP/\d\.\d (\d{3})")
EOF, RESET, OPEN, REFUSED = "eof", "reset", "open", "refused"


@dataclass(frozen=True)
class Outcome:
    """What one server did with one case."""

    statuses: tuple[int, ...]  # in the order received, interim (1xx) ones included
    end: str  # EOF, RESET, OPEN (still open at the deadline) or REFUSED (no connection)
    elapsed_s: float  # from connect to the end
    received: int  # bytes received

    def as_json(self) -> dict[str, object]:
        return {"statuses": list(self.statuses), "end": self.end,
                "elapsed_s": round(self.elapsed_s, 4), "received": self.received}  # fmt: skip


def statuses_in(data: bytes) -> tuple[int, ...]:
    return tuple(int(m[1]) for m in _STATUS_LINE.finditer(data))


def exchange(host: str, port: int, case: Case, deadline_s: float) -> Outcome:
    """Send `case` on a new connection, half-close, read until EOF, reset or the deadline."""
    start = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=deadline_s)
    except OSError:
        return Outcome((), REFUSED, time.monotonic() - start, 0)
    received = bytearray()
    end = OPEN
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        end = _send(sock, case)
        until = start + deadline_s
        while end == OPEN:
            left = until - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                end = RESET
                break
            if not chunk:
                end = EOF
            received += chunk
    return Outcome(statuses_in(bytes(received)), end, time.monotonic() - start, len(received))


def _send(sock: socket.socket, case: Case) -> str:
    """Write every part, then shut the write side; a server that closed early ends the writes
    (what it answered is still read)."""
    try:
        for i, part in enumerate(case.parts):
            if i:
                time.sleep(WRITE_GAP_S)
            sock.sendall(part)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    return OPEN
