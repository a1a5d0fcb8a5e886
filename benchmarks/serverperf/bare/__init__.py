"""Bare minimal apps: the floor each library reaches with no keep-alive policy code on top.

`python -m benchmarks.serverperf.bare aiohttp|uvloop|stdlib` serves `GET /` with the same body as
the reference servers (`servers.endpoints.HELLO`) and prints the same READY line, so the launcher
pattern and wrk commands are identical for both. The reference server's overhead over its
library is then read directly as the gap between two rows of `python -m benchmarks serverperf`.
`KeepAlivePolicy` is only the type of the settings here: the apps read its T and N and apply
them with their library's own means, never its decisions.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.common import OneLineParser, seconds_text
from servers.policy import KeepAlivePolicy

BARE_NAMES = ("aiohttp", "uvloop", "stdlib")
MODULE = "benchmarks.serverperf.bare"


def command(name: str, keepalive: KeepAlivePolicy) -> list[str]:
    """The argv that starts bare app `name` with `keepalive` (what `build_parser` reads back)."""
    return [
        sys.executable, "-m", MODULE, name,
        "--keepalive-timeout", seconds_text(keepalive.timeout_s),
        "--keepalive-max", str(keepalive.max_requests),
    ]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The flags `command` writes, plus where to listen."""
    parser = OneLineParser(
        prog=f"python -m {MODULE}", description="Start one bare app, print its READY line."
    )
    parser.add_argument("name", choices=BARE_NAMES)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--keepalive-timeout", type=float, default=5.0, metavar="SECONDS")
    parser.add_argument("--keepalive-max", type=int, default=0, metavar="COUNT")
    return parser


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, KeepAlivePolicy]:
    """`command`'s argv read back; one line and exit 2 when a knob is negative."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.keepalive_timeout < 0 or ns.keepalive_max < 0:
        parser.error("--keepalive-timeout and --keepalive-max must be >= 0")
    return ns, KeepAlivePolicy(ns.keepalive_timeout, ns.keepalive_max)
