"""wrk as the load generator for server-only checks: command line, run, and output parsing.

wrk (C, epoll) is fast enough that the server, not the client, is what a run measures, which no
Python client here can promise. `--latency` prints the 50/75/90/99th percentiles with units
(us, ms, s); they are parsed to microseconds. Connection-close runs send `Connection: close`
so every request pays a TCP handshake, and wrk reconnects after each response.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

CLOSE_HEADER = "Connection: close"
_UNITS_US = {"us": 1.0, "ms": 1_000.0, "s": 1_000_000.0, "m": 60_000_000.0, "h": 3_600_000_000.0}
_PERCENTILE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+(\d+(?:\.\d+)?)(us|ms|s|m|h)\s*$", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed something we cannot read; one-line message."""


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured. Latencies are in microseconds."""

    requests_per_s: float
    requests: int
    p50_us: float
    p99_us: float
    socket_errors: dict[str, int]
    non_2xx: int

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "errors": self.errors}


def find_wrk() -> str | None:
    return shutil.which("wrk")


def wrk_command(
    url: str,
    *,
    connections: int,
    duration_s: float,
    close: bool = False,
    cpu: int | None = None,
    wrk: str = "wrk",
) -> list[str]:
    """`taskset -c CPU wrk -t1 -cN -dDs --latency [-H 'Connection: close'] URL`."""
    command = [wrk, "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency"]
    if close:
        command += ["-H", CLOSE_HEADER]
    command.append(url)
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    return command


def _to_us(value: str, unit: str) -> float:
    return float(value) * _UNITS_US[unit]


def parse_wrk_output(text: str) -> WrkResult:
    """Read Requests/sec, the request count, p50/p99 and the error lines of `wrk --latency`."""
    rps, total = _RPS.search(text), _TOTAL.search(text)
    percentiles = {float(p): _to_us(v, u) for p, v, u in _PERCENTILE.findall(text)}
    if rps is None or total is None or 50.0 not in percentiles or 99.0 not in percentiles:
        tail = " ".join(text.split())[-200:]
        raise WrkError(f"cannot read wrk output (was --latency given?): {tail!r}")
    errors = _SOCKET_ERRORS.search(text)
    names = ("connect", "read", "write", "timeout")
    non_2xx = _NON_2XX.search(text)
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        requests=int(total.group(1)),
        p50_us=percentiles[50.0],
        p99_us=percentiles[99.0],
        socket_errors=dict(zip(names, map(int, errors.groups()), strict=True))
        if errors
        else dict.fromkeys(names, 0),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def run_wrk(command: list[str], duration_s: float) -> WrkResult:
    """Run one wrk command; a non-zero exit or unreadable output is a WrkError."""
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=duration_s + 30,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise WrkError(f"wrk did not finish within {duration_s + 30:g} s") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise WrkError(
            f"wrk exited with status {done.returncode}: {message[-1] if message else ''}"
        )
    return parse_wrk_output(done.stdout)
