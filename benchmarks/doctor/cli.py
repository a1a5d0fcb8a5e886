"""`python -m benchmarks doctor URL`: probe one server's keep-alive behaviour and judge it.

Exit status: 0 when the examination ran (whatever it found), 2 for a malformed or unreachable
URL or bad flags (one line on stderr), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import ssl
import sys
import threading
from pathlib import Path
from typing import TextIO

from benchmarks.common import OneLineParser, UsageError, number_type, print_error
from benchmarks.doctor.defaults import load_peers
from benchmarks.doctor.headers import MalformedResponse
from benchmarks.doctor.probes import (
    DEFAULT_IDLE_CONNECTIONS,
    Findings,
    first_contact,
    run_probes,
)
from benchmarks.doctor.render import Report, render_human, render_json
from benchmarks.doctor.target import Target, resolve
from benchmarks.doctor.tlsprobe import TlsFacts, probe_tls
from benchmarks.doctor.verdicts import judge_all, notes, server_idle
from benchmarks.doctor.wire import ConnectionEnded, ReadTimeout, clock

PROG = "python -m benchmarks doctor"
EXIT_BAD_TARGET = 2
DESCRIPTION = """\
Measure what one HTTP/1.1 or HTTPS server really does with persistent connections, on raw
sockets, then judge common clients and load balancers against it.

Measured (not read from headers): whether connections are kept alive (HTTP/1.1, and HTTP/1.0
with Connection: keep-alive); the idle timeout, from the end of a response to the server's FIN
or reset, on several connections in parallel, plus an active check with requests sent just
under and just over it; the requests one connection carries until Connection: close or a
close; pipelining; how it closes with input pending; the header deadline (a request trickled
one byte at a time); over TLS the version, ALPN, handshake time, tickets and resumption.
Reported next to them: the advertised Connection and Keep-Alive headers.

All probing goes to the URL's host only (resolved once, redirects never followed). It opens
many connections (up to --max-requests + 1 requests on one of them) and, with the defaults,
waits minutes: up to --max-idle for the idle timeout, then about as long again for the active
check. Progress goes to stderr. Point it only at servers you may load-test.
"""
EPILOG = """\
examples:
  python -m benchmarks doctor http://127.0.0.1:8080/
  python -m benchmarks doctor https://api.internal:8443/health --ca ca.pem --json
  make doctor URL=http://127.0.0.1:8080/ MAX_IDLE=30
"""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("url", help="http://HOST[:PORT][/PATH] or https://...")
    parser.add_argument("--ca", type=Path, metavar="FILE", help="CA PEM to verify https with")
    parser.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    parser.add_argument(
        "--max-idle", type=number_type(float, 0, above=True), default=120.0, metavar="S",
        help="longest idle wait; beyond it the timeout is 'at least S' (default %(default)g)",
    )  # fmt: skip
    parser.add_argument(
        "--max-requests", type=number_type(int, 0, above=True), default=1000, metavar="N",
        help="requests counted on one connection; N + 1 are sent (default %(default)d)",
    )  # fmt: skip
    parser.add_argument(
        "--max-header-wait", type=float, default=90.0, metavar="S",
        help="cap of the header-deadline trickle, 0 to skip it (default %(default)g)",
    )  # fmt: skip
    parser.add_argument(
        "--idle-connections", type=int, default=DEFAULT_IDLE_CONNECTIONS, metavar="K",
        help="idle connections watched in parallel, at least 3 (default %(default)d)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="JSON on stdout instead of text")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


class Progress:
    """Progress on stderr while the probes wait: a line now and then, one per wait."""

    def __init__(self, stream: TextIO, enabled: bool, every_s: float = 5.0) -> None:
        self.stream = stream
        self.enabled = enabled
        self.every_s = every_s
        self._waits: dict[str, tuple[str, float, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self) -> Progress:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def note(self, text: str) -> None:
        if self.enabled:
            with self._lock:
                self.stream.write(f"doctor: {text}\n")
                self.stream.flush()

    def wait(self, key: str, text: str, until: float) -> None:
        with self._lock:
            self._waits[key] = (text, clock(), until)
        self.note(f"{text} (up to {until - clock():.0f} s)")

    def done(self, key: str) -> None:
        with self._lock:
            self._waits.pop(key, None)

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            with self._lock:
                waits = list(self._waits.values())
            for text, start, until in waits:
                self.note(f"  ... {clock() - start:.0f} s of up to {until - start:.0f} s: {text}")


def _examine(target: Target, ns: argparse.Namespace, progress: Progress) -> Report:
    start = clock()
    advertised, persistence = first_contact(target)
    progress.note(f"{target.url} at {target.peer} answered {advertised.status}; probing")
    findings = Findings(advertised, persistence)
    tls: TlsFacts | None = None
    tls_error = None
    if target.tls:
        try:
            tls = probe_tls(target)
        except (OSError, ConnectionEnded, ReadTimeout, MalformedResponse) as exc:
            tls_error = f"{type(exc).__name__}: {exc}"
    run_probes(
        target, findings, max_idle_s=ns.max_idle, max_requests=ns.max_requests,
        max_header_wait_s=ns.max_header_wait, idle_connections=ns.idle_connections,
        reporter=progress,
    )  # fmt: skip
    server = server_idle(findings)
    settings = {
        "max_idle_s": ns.max_idle,
        "max_requests": ns.max_requests,
        "max_header_wait_s": ns.max_header_wait,
        "idle_connections": ns.idle_connections,
    }
    verdicts = judge_all(load_peers(), server)
    return Report(target, settings, findings, tls, tls_error, server, verdicts, notes(findings),
                  clock() - start)  # fmt: skip


def _unreachable(target: Target, exc: BaseException) -> str:
    where = f"{target.url} ({target.peer})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate of {where} not trusted: {exc.verify_message} "
            "(--ca FILE or --insecure)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {where} failed: {exc.reason or exc}"
    if isinstance(exc, MalformedResponse):
        return f"no HTTP/1.x response from {where}: {exc}"
    if isinstance(exc, ConnectionEnded):
        return f"{where} closed the connection ({exc.kind.value}) before answering"
    if isinstance(exc, ReadTimeout):
        return f"{where} sent no response"
    if isinstance(exc, OSError):
        return f"cannot connect to {where}: {exc.strerror or exc}"
    return f"{where}: {exc}"


def main(argv: list[str]) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.idle_connections < 3:
        parser.error("--idle-connections must be at least 3")
    if not (math.isfinite(ns.max_header_wait) and ns.max_header_wait >= 0):
        parser.error("--max-header-wait must be >= 0")
    if ns.ca is not None and not ns.ca.is_file():
        parser.error(f"--ca: no such file: {ns.ca}")
    try:
        target = resolve(ns.url, ns.ca, ns.insecure)
        load_peers()  # a broken data file is reported before minutes of probing
    except UsageError as exc:
        return print_error(PROG, exc, EXIT_BAD_TARGET)
    try:
        with Progress(sys.stderr, not ns.quiet) as progress:
            report = _examine(target, ns, progress)
    except (OSError, ConnectionEnded, ReadTimeout, MalformedResponse) as exc:
        return print_error(PROG, _unreachable(target, exc), EXIT_BAD_TARGET)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    print(render_json(report) if ns.json else render_human(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
