"""`python -m benchmarks demo`: the seed experiment, run. Does a client reuse its connection?

The seed (a Node.js server printing each request's client port) proves reuse by the port: a TCP
connection is identified by its two ends, so two requests arriving from the same client port
came over the same connection, and a new port means a new handshake. Here a reference server
runs with `--log-connections` (one stderr line per request: client port, connection id, request
number, path, Connection header) and four clients make two requests each:

- pooled: one `requests.Session` (Node's shared `Agent`), two sequential requests;
- unpooled: `urllib.request.urlopen` per request (Node's `http.request` without an agent),
  which sends `Connection: close` and opens a new connection each time;
- overlapped, pool of 1: two requests at once through a urllib3 pool of one connection with
  `block=True`: the second waits for the connection and then reuses it;
- overlapped, pool of 1, no block: the same with urllib3's default `block=False`: the second
  request cannot wait, so the pool opens a second connection (and discards it afterwards).

Each verdict is computed from the server's log (distinct connection ids per case), cross-checked
against the server's own counters, never written in advance. Exit status: 0 when every verdict
is what HTTP keep-alive predicts, 1 when one differs or the server fails, 2 for bad input.
"""

from __future__ import annotations

import sys

try:  # Ctrl-C while these load (requests and urllib3 take a moment): one line, no traceback
    import argparse
    import re
    import subprocess
    import textwrap
    import threading
    import time
    from collections.abc import Callable, Iterable
    from dataclasses import dataclass
    from typing import NoReturn

    import requests
    import urllib3

    from benchmarks.demo.traffic import Observed, overlapped, pooled, unpooled
    from benchmarks.harness.procs import deferred_signals
    from servers.launch import ServerProcess, ServerStartError
    from servers.options import REFERENCE_SERVERS, OneLineParser, ServerName, ServerOptions
except KeyboardInterrupt:
    sys.stderr.write("python -m benchmarks demo: interrupted\n")
    raise SystemExit(130) from None

PROG = "python -m benchmarks demo"
LOG_LINE = re.compile(
    r"port=(?P<port>\d+) conn=(?P<conn>\d+) req=(?P<req>\d+) (?P<method>\S+) "
    r"(?P<target>\S+) connection=(?P<connection>.*)$"
)
LOG_WAIT_S = 3.0
WAITED_RATIO = 1.5  # the later of two overlapped requests took this much longer: it queued


@dataclass(frozen=True)
class LogLine:
    """One `--log-connections` line, parsed."""

    port: int
    conn: int
    req: int
    method: str
    target: str
    connection: str
    text: str


class ServerLog:
    """Collects the server's stderr lines from a thread, so a case can wait for its own lines."""

    def __init__(self, stream: Iterable[str]) -> None:
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Iterable[str]) -> None:
        for line in stream:
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def requests_tagged(self, tag: str, count: int) -> list[LogLine]:
        """The log lines whose target carries `case=<tag>`, waiting briefly for `count` of them.

        A server may log a request after answering it, so a client can be faster than the log.
        """
        deadline = time.monotonic() + LOG_WAIT_S
        with self._cond:
            while True:
                found = [p for p in map(parse_log_line, self._lines) if p and _tag(p) == tag]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    return found
                self._cond.wait(remaining)

    def other_lines(self) -> list[str]:
        """Lines that are not request logs (warnings, a traceback): shown when a case fails."""
        with self._cond:
            return [line for line in self._lines if parse_log_line(line) is None]


def parse_log_line(text: str) -> LogLine | None:
    match = LOG_LINE.search(text)
    if match is None:
        return None
    g = match.groupdict()
    return LogLine(
        int(g["port"]), int(g["conn"]), int(g["req"]), g["method"], g["target"],
        g["connection"], text.strip(),
    )  # fmt: skip


def _tag(line: LogLine) -> str:
    query = line.target.partition("?")[2]
    params = dict(p.partition("=")[::2] for p in query.split("&"))
    return params.get("case", "")


@dataclass(frozen=True)
class Case:
    label: str  # the verdict line's prefix
    tag: str  # `case=` in the query string, to find this case's log lines
    run: Callable[[str, str], Observed]  # (base url, tag) -> what the client did and saw
    expected_connections: int  # what keep-alive predicts; compared, never printed as the verdict


def cases(sleep_ms: int) -> list[Case]:
    return [
        Case("pooled", "pooled", pooled, 1),
        Case("unpooled", "unpooled", unpooled, 2),
        Case("overlapped, pool of 1", "overlapped", overlapped(True, sleep_ms), 1),
        Case("overlapped, pool of 1, no block", "noblock", overlapped(False, sleep_ms), 2),
    ]


@dataclass(frozen=True)
class Outcome:
    case: Case
    observed: Observed
    lines: list[LogLine]
    accepted: int  # connections the server's counters saw opened during the case

    @property
    def connections(self) -> int:
        return len({line.conn for line in self.lines})

    def verdict(self) -> str:
        n, c = len(self.lines), self.connections
        return f"{self.case.label}: {n} request{'s' * (n != 1)} over {c} connection{'s' * (c != 1)}"


def run_case(case: Case, server: ServerProcess, log: ServerLog) -> Outcome:
    assert server.ready is not None
    before = server.counters()["connections_accepted"]
    observed = case.run(server.ready.url, case.tag)
    lines = log.requests_tagged(case.tag, 2)
    accepted = server.counters()["connections_accepted"] - before
    return Outcome(case, observed, lines, accepted)


def report_case(outcome: Outcome) -> None:
    print(f"== {outcome.case.label}: {outcome.observed.description}")
    for line in outcome.lines:
        print(f"   server log: {line.text}")
    ports = sorted({line.port for line in outcome.lines})
    word = "port" if len(ports) == 1 else "ports"
    print(
        f"   client {word} {', '.join(map(str, ports))}; server counters: "
        f"{outcome.accepted} connection(s) accepted during the case"
    )
    if outcome.accepted != outcome.connections:
        print("   note: the counters and the log disagree; the verdict uses the log")
    if outcome.case.tag in ("overlapped", "noblock"):
        print(f"   {overlap_story(outcome)}")
    print()


def overlap_story(outcome: Outcome) -> str:
    """What the pool did with the second of two overlapping requests, read from what was seen.

    The connection count comes from the server's log, the waiting from the measured times, the
    discarded connection from urllib3's own warning; a claim without its evidence is left out.
    """
    times = outcome.observed.times_s
    ratio = times[-1] / times[0] if len(times) == 2 and times[0] > 0 else None
    waited = ratio is not None and ratio >= WAITED_RATIO
    if ratio is None:
        timing = "no timing"
    elif waited:
        timing = f"the later took {ratio:.1f} times as long as the earlier"
    else:
        timing = "both took about as long"
    if outcome.connections == 1:
        if waited:
            return (
                f"one connection for both, and {timing}: the second request waited for the "
                "pool's only connection, then reused it"
            )
        return f"one connection for both, and {timing}"
    if outcome.connections != 2:
        return f"{outcome.connections} connections for 2 requests, and {timing}"
    story = f"two connections, and {timing}: " + (
        "the second request queued, yet on a connection of its own"
        if waited
        else "the second request did not wait, the pool opened another connection for it"
    )
    full = [m for m in outcome.observed.pool_messages if "pool is full" in m]
    if full:
        story += f"; urllib3 then closed one, its pool holding only one: {full[0]!r}"
    return story


def explanation(outcomes: list[Outcome]) -> str:
    """The closing sentence, built from what the log showed."""
    same = [o.case.label for o in outcomes if o.connections == 1 and len(o.lines) == 2]
    new = [o.case.label for o in outcomes if o.connections == 2]
    text = (
        "What the ports show: a TCP connection is identified by its two ends, and the server "
        "end never changes, so the client port names the connection. In "
        f"{_names(same)} both requests came from the same client port: one connection, one "
        f"handshake, reused. In {_names(new)} the second request came from a new port: a new "
        "connection and a new handshake. Reuse needs a shared pool and requests that do not "
        "overlap, or a pool that makes the second request wait for the connection."
    )
    return textwrap.fill(text, width=100)


def _names(labels: list[str]) -> str:
    return " and ".join(f"'{label}'" for label in labels) or "no case"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server", choices=[n.value for n in REFERENCE_SERVERS], default=ServerName.UVLOOP.value,
        help="reference server to run (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--sleep-ms", type=int, default=200, metavar="MS",
        help="server-side delay of the overlapped requests (default %(default)d)",
    )  # fmt: skip
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    parser.error = _one_line_error  # type: ignore[method-assign]
    ns = parser.parse_args(argv)
    if not 50 <= ns.sleep_ms <= 5000:
        _one_line_error(f"--sleep-ms must be between 50 and 5000, got {ns.sleep_ms}")
    return ns


def _one_line_error(message: str) -> NoReturn:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    raise SystemExit(2)


def demo(server_name: ServerName, sleep_ms: int) -> int:
    options = ServerOptions(server_name, keepalive_timeout_s=5.0, log_connections=True)
    server = ServerProcess(options, stderr=subprocess.PIPE)
    try:
        ready = server.start()
        assert server.proc is not None and server.proc.stderr is not None  # started, stderr=PIPE
        log = ServerLog(server.proc.stderr)
        print(f"server: python -m servers {server_name} --log-connections, at {ready.url}\n")
        outcomes = [run_case(case, server, log) for case in cases(sleep_ms)]
    except ServerStartError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 1
    finally:
        # On success, error and Ctrl-C alike, even one during start(); a second Ctrl-C
        # cannot cut the stop short and leave the server running.
        with deferred_signals():
            server.stop()
    for outcome in outcomes:
        report_case(outcome)
    for outcome in outcomes:
        print(outcome.verdict())
    print()
    print(explanation(outcomes))
    unexpected = [o for o in outcomes if o.connections != o.case.expected_connections]
    if unexpected or any(len(o.lines) != 2 for o in outcomes):
        sys.stderr.write(f"{PROG}: unexpected verdicts; server stderr: {log.other_lines()[-5:]}\n")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    try:
        return demo(ServerName(ns.server), ns.sleep_ms)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")  # the server is stopped by then
        return 130
    except (OSError, requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        sys.stderr.write(f"{PROG}: error: {' '.join(str(exc).split())}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
