"""`python -m benchmarks demo` (issue 5): run it end to end and check its computed verdicts.

The demo is run as a subprocess, as `make demo` runs it, once per reference server: each server
must show the same reuse behaviour, since the verdicts depend only on the clients and on the
server honouring keep-alive. Lines are matched exactly, so a changed wording is a failure. The
story of the overlapped cases is checked on made-up outcomes (no timing of this machine), and
Ctrl-C at three moments: while modules load, while the server starts, while the cases run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import psutil
import pytest

import benchmarks.demo.__main__ as demo
from servers.options import REFERENCE_SERVERS

EXPECTED_VERDICTS = [
    "pooled: 2 requests over 1 connection",
    "unpooled: 2 requests over 2 connections",
    "overlapped, pool of 1: 2 requests over 1 connection",
    "overlapped, pool of 1, no block: 2 requests over 2 connections",
]


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "demo", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("demo_server", [n.value for n in REFERENCE_SERVERS])
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


def _outcome(
    tag: str, ports: list[int], times_s: tuple[float, ...], messages: tuple[str, ...] = ()
) -> demo.Outcome:
    """A case's outcome as the server's log and the client would have reported it."""
    case = next(c for c in demo.cases(200) if c.tag == tag)
    lines = [
        demo.LogLine(port, ports.index(port) + 1, 1, "GET", f"/sleep?case={tag}", "-", "")
        for port in ports
    ]  # one connection id per client port, as the server numbers them
    return demo.Outcome(case, demo.Observed("made up", times_s, messages), lines, len(set(ports)))


def test_the_story_of_a_queued_request_comes_from_the_times() -> None:
    queued = demo.overlap_story(_outcome("overlapped", [5000, 5000], (0.2, 0.4)))
    assert queued == (
        "one connection for both, and the later took 2.0 times as long as the earlier: the "
        "second request waited for the pool's only connection, then reused it"
    )
    not_queued = demo.overlap_story(_outcome("overlapped", [5000, 5000], (0.2, 0.21)))
    assert not_queued == "one connection for both, and both took about as long"


def test_a_discarded_connection_is_claimed_only_when_urllib3_said_so() -> None:
    full = "Connection pool is full, discarding connection: 127.0.0.1. Connection pool size: 1"
    said = demo.overlap_story(_outcome("noblock", [5000, 5001], (0.2, 0.2), (full,)))
    assert said.endswith(f"another connection for it; urllib3 then closed one, its pool "
                         f"holding only one: {full!r}")  # fmt: skip
    silent = demo.overlap_story(_outcome("noblock", [5000, 5001], (0.2, 0.2)))
    assert silent == (
        "two connections, and both took about as long: the second request did not wait, the "
        "pool opened another connection for it"
    )


def test_ctrl_c_while_the_server_starts_stops_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[demo.ServerProcess] = []

    class InterruptedStart(demo.ServerProcess):
        def _read_first_line(self) -> str:
            started.append(self)  # the process exists; READY is being awaited
            super()._read_first_line()
            raise KeyboardInterrupt

    monkeypatch.setattr(demo, "ServerProcess", InterruptedStart)
    assert demo.main([]) == 130
    assert started and started[0].proc is not None
    assert started[0].proc.poll() is not None, "the server outlived the Ctrl-C"
    assert capsys.readouterr().err == "python -m benchmarks demo: interrupted\n"


INTERRUPTED_IMPORT = """
import runpy, sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "requests":
            raise KeyboardInterrupt

sys.meta_path.insert(0, CtrlC())
runpy.run_module("benchmarks.demo", run_name="__main__")
"""


def test_ctrl_c_while_modules_load_is_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_IMPORT], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (130, "")
    assert done.stderr == "python -m benchmarks demo: interrupted\n"


def _server_children(proc: subprocess.Popen[Any]) -> list[psutil.Process]:
    return [c for c in psutil.Process(proc.pid).children() if "servers" in c.cmdline()]


def test_ctrl_c_during_the_cases_stops_the_server() -> None:
    """--sleep-ms 5000: the overlapped cases last seconds, so the signal lands while they run."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "demo", "--sleep-ms", "5000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("server: ")
        servers = _server_children(proc)
        assert len(servers) == 1
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130
    assert err == "python -m benchmarks demo: interrupted\n"
    assert not servers[0].is_running() or servers[0].status() == psutil.STATUS_ZOMBIE
