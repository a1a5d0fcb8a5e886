"""`python -m benchmarks.demo` (issue 5): run it end to end and check its computed verdicts.

The demo is run as a subprocess, as `make demo` runs it, once per reference server: each server
must show the same reuse behaviour, since the verdicts depend only on the clients and on the
server honouring keep-alive. Lines are matched exactly, so a changed wording is a failure.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from servers.options import ServerName

EXPECTED_VERDICTS = [
    "pooled: 2 requests over 1 connection",
    "unpooled: 2 requests over 2 connections",
    "overlapped, pool of 1: 2 requests over 1 connection",
    "overlapped, pool of 1, no block: 2 requests over 2 connections",
]


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.demo", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("demo_server", [n.value for n in ServerName])
def test_verdicts(demo_server: str) -> None:
    done = run_demo("--server", demo_server)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    verdicts = [line for line in lines if " requests over " in line and not line.startswith(" ")]
    assert verdicts == EXPECTED_VERDICTS
    assert any(line.startswith("What the ports show:") for line in lines)


def test_shows_server_log_lines() -> None:
    """Each case shows the server's own lines: client port, path and Connection header."""
    done = run_demo()  # the default server (uvloop)
    assert done.returncode == 0, done.stderr
    logged = [line for line in done.stdout.splitlines() if "server log: port=" in line]
    assert len(logged) == 8
    assert sum("case=unpooled" in line and "connection=close" in line for line in logged) == 2
    assert sum("case=pooled" in line and "connection=keep-alive" in line for line in logged) == 2


def test_bad_input_is_one_line() -> None:
    done = run_demo("--sleep-ms", "1")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "error" in done.stderr
