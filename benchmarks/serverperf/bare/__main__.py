"""`python -m benchmarks.serverperf.bare NAME [options]`: start one bare app, print its READY line.

The socket is bound here (port 0 by default) and announced only once it listens, exactly like
`servers.runtime`, so `benchmarks.serverperf.targets` starts a bare app and a reference server
the same way. There is no control listener: the READY line says `control=-`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import sys

from benchmarks.common import OneLineParser
from benchmarks.serverperf.bare import BARE_NAMES, BareSettings


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m benchmarks.serverperf.bare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("name", choices=BARE_NAMES)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--keepalive-timeout", type=float, default=5.0, metavar="SECONDS")
    parser.add_argument("--keepalive-max", type=int, default=0, metavar="COUNT")
    return parser


def ready_line(sock: socket.socket, name: str) -> str:
    host, port = sock.getsockname()[:2]
    return f"READY http://{host}:{port} control=- pid={os.getpid()} server=bare-{name}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.keepalive_timeout < 0 or ns.keepalive_max < 0:
        parser.error("--keepalive-timeout and --keepalive-max must be >= 0")
    try:
        sock = socket.create_server((ns.host, ns.port), backlog=1024)
    except OSError as exc:
        parser.error(f"cannot listen on {ns.host}:{ns.port}: {exc.strerror}")
    settings = BareSettings(ns.keepalive_timeout, ns.keepalive_max)
    module = importlib.import_module(f"benchmarks.serverperf.bare.{ns.name}_app")
    module.serve(sock, settings, ready_line(sock, ns.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
