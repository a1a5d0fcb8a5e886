"""`python -m benchmarks net slowstart` (issue 10): slow start over the delay line.

The model and the flags are checked without root; the measurements need root and
/dev/net/tun, and check lower bounds of physics only: the relay never releases a packet early
and a sender's window can at most double per round trip, so no machine is too fast for them.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.net import DelayLine, LinkSpec, NetError, netns
from benchmarks.net.cli import start_server
from benchmarks.net.slowstart import (
    INITIAL_WINDOW,
    SERVER_WORDS,
    Bench,
    Connection,
    SlowStartConfig,
    textbook_round_trips,
)

ROOT = Path(__file__).resolve().parent.parent
KIB = 1024


def _why_not() -> str | None:
    try:
        netns.check_preconditions()
    except NetError as exc:
        return str(exc)
    return None


needs_line = pytest.mark.skipif(_why_not() is not None, reason=f"{_why_not()}")


def slowstart(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "net", "slowstart", *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("segments", "cwnd", "flights"),
    [(1, 10, 1), (10, 10, 1), (11, 10, 2), (30, 10, 2), (31, 10, 3), (182, 10, 5), (182, 200, 1)],
)
def test_textbook_flights_double_from_the_window(segments: int, cwnd: int, flights: int) -> None:
    """Without a bandwidth limit the model is whole flights: 10, 20, 40... segments."""
    assert textbook_round_trips(segments * 1000, 1000, cwnd, 0.05, 0.0) == pytest.approx(flights)


def test_textbook_rest_leaves_at_the_link_rate_once_the_link_is_full() -> None:
    # 1 ms per packet, 50 ms RTT: flights of 10, 20, 40 fit; the 80 of the 4th take 80 ms > RTT,
    # so from the 4th round trip the remaining 130 segments leave one per millisecond.
    assert textbook_round_trips(200 * 1000, 1000, 10, 0.05, 0.001) == pytest.approx(4 + 130 / 50)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repeat", "0"], "--repeat must be between 1 and 100, got 0"),
        (["--sizes", "16k,x"], "not a size in bytes: 'x'"),
        (["--sizes", "0"], "--sizes: each size must be 1 to"),
        (["--idle", "0"], "--idle must be more than 0"),
        (["--rtt", "-1"], "--rtt must be between 0"),
        (["--bandwidth", "0"], "--bandwidth must be a positive"),
        (["--cc", "Nope!"], "--cc must name a congestion control"),
        (["--csv", "/no/such/dir/x.csv"], "--csv: no such directory: /no/such/dir"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    proc = slowstart(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


@needs_line
def test_a_large_response_on_a_new_connection_takes_its_slow_start_flights() -> None:
    """256 KiB is 182 segments: flights of 10, 20, 40, 80, then the rest: 5 round trips at
    least after the request, one more for the handshake, whatever the machine's speed."""
    rtt_ms = 20.0
    config = SlowStartConfig(rtt_ms=rtt_ms, bandwidth_mbit=None, sizes=(256 * KIB,), repeat=1)
    with DelayLine(LinkSpec(rtt_ms=rtt_ms)) as line:
        line.sysctl(line.server, "net.ipv4.tcp_congestion_control", "reno")
        info = start_server(line, SERVER_WORDS, 0)
        bench = Bench(line, config, int(info.url.rsplit(":", 1)[1]))
        sample = bench.measure(Connection.NEW, 256 * KIB, 1, 1)
        warm = bench.measure(Connection.WARM, 256 * KIB, 1, 1)
    flights = textbook_round_trips(256 * KIB, sample.mss, INITIAL_WINDOW, 1.0, 0.0)
    assert flights == pytest.approx(5)
    assert sample.connect_ms is not None and sample.connect_ms >= rtt_ms
    assert sample.first_byte_ms >= rtt_ms
    assert sample.last_byte_ms >= flights * rtt_ms, sample
    assert sample.round_trips >= flights + 1
    assert sample.cwnd_before == INITIAL_WINDOW  # the kernel's own initial window (ss -ti)
    assert warm.connect_ms is None and warm.last_byte_ms >= rtt_ms
    assert netns.our_namespaces(os.getpid()) == []


@needs_line
def test_the_command_prints_the_table_and_writes_every_sample(tmp_path: Path) -> None:
    out = tmp_path / "slowstart.csv"
    proc = slowstart(
        "--rtt", "20", "--bandwidth", "none", "--sizes", "16k", "--repeat", "1", "--idle", "0.5",
        "--csv", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "| 16 KiB | new | on |" in proc.stdout and "| 16 KiB | idle | off |" in proc.stdout
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {(r["connection"], r["slow_start_after_idle"]) for r in rows} == {
        (kind.value, setting) for kind in Connection for setting in ("0", "1")
    }
    assert all(float(r["last_byte_ms"]) >= 20.0 for r in rows)
    assert [p.name for p in tmp_path.iterdir()] == ["slowstart.csv"]  # no temporary file left


def test_committed_slowstart_csvs_are_not_taken_for_run_csvs() -> None:
    """`make report` reads every run CSV under results/: a slowstart file would stop it."""
    from benchmarks.analysis.plots import default_inputs

    committed = list((ROOT / "results").glob("*/slowstart-*.csv"))
    assert committed  # the README's figures
    assert not [p for p in default_inputs(ROOT / "results") if p.name.startswith("slowstart-")]
