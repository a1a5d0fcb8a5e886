"""Issue 12's `slots` scenario: one real run on loopback, its rows and verdict, bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks.scenarios.slots import (
    Mode,
    Site,
    SlotsConfig,
    drive,
    ordinal,
    rows_of,
    seed_verdict,
)
from servers.options import ServerName

T = 2.0  # the oldest holder is idle about T/2 + 0.25 s at the arrival: reclaim has T/2 to act


def test_newcomers_wait_for_the_oldest_idle_connection_then_reclaim_serves_them_at_once() -> None:
    """Real server, real client: 4 slots held, 2 newcomers. Without reclaim the first is served
    no earlier than the oldest holder's T (a lower bound); with it, two holders are reclaimed."""
    config = SlotsConfig(servers=(ServerName.UVLOOP,), timeouts=(T,), slots=4, newcomers=2)
    site = Site(None)
    keep = rows_of(config, ServerName.UVLOOP, Mode.KEEPALIVE, T,
                   drive(site, config, ServerName.UVLOOP, Mode.KEEPALIVE, T))  # fmt: skip
    reclaim = rows_of(config, ServerName.UVLOOP, Mode.RECLAIM, T,
                      drive(site, config, ServerName.UVLOOP, Mode.RECLAIM, T))  # fmt: skip
    for rows in (keep, reclaim):
        assert [r["rank"] for r in rows] == [1, 2]
        assert all(r["valid"] == 1 and r["status"] == 200 and r["error"] == "" for r in rows), rows
        assert rows[0]["server_accept_pauses"] >= 1
    first = keep[0]
    assert first["first_byte_s"] >= first["model_wait_s"] - 0.05, first  # not before T ran out
    assert first["server_reclaimed"] == 0 and first["holders_closed_by_server"] >= 2
    assert reclaim[0]["server_reclaimed"] == 2, reclaim[0]
    verdict = seed_verdict(first, reclaim[0], None)
    assert verdict.startswith("the 5th connection is not dumped: it waited ")
    assert f"which is T ({T:g} s) minus the" in verdict and "with --reclaim-idle" in verdict


def _row(**fields: object) -> dict[str, object]:
    base = {"max_connections": 100, "valid": 1, "invalid_reason": "", "status": 200, "error": "",
            "keepalive_timeout_s": 2.0, "first_byte_s": 0.801, "connect_s": 0.002,
            "accept_wait_s": 0.8, "baseline_first_byte_s": 0.001,
            "idle_age_s": 1.23, "model_wait_s": 0.77, "holder_connections": 300, "holders": 100,
            "requests_per_holder": 3, "rtt_ms": 0.0}  # fmt: skip
    return base | fields


def test_verdict_in_the_seeds_terms() -> None:
    text = seed_verdict(_row(), _row(first_byte_s=0.007), _row(first_byte_s=0.004))
    assert text.startswith("the 101st connection is not dumped: it waited 0.80 s (its first byte")
    assert "T (2 s) minus the 1.23 s the oldest idle connection had already been idle" in text
    assert "to within 30.0 ms" in text
    assert "with --reclaim-idle its first byte came after 7.0 ms" in text
    assert "keep-alive off after 4.0 ms, at the price of 300 connections for 300 requests" in text
    rtt = seed_verdict(_row(rtt_ms=50.0, model_wait_s=0.67), None, None)
    assert "had already been idle, minus 2 RTT (0.1 s: the server's timer" in rtt
    assert seed_verdict(_row(status="", error="ConnectionResetError"), None, None) == (
        "the 101st connection was dumped: ConnectionResetError"
    )
    assert seed_verdict(_row(valid=0, invalid_reason="x"), None, None) == "inconclusive (x)"


def test_ordinal() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 101, 102, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "101st", "102nd", "111th",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--timeouts", "0.5"], "--timeouts"),
        (["--timeouts", "x"], "--timeouts"),
        (["--servers", "nginx"], "--servers"),
        (["--servers", "apache"], "--servers"),
        (["--slots", "1"], "--slots"),
        (["--newcomers", "0"], "--newcomers"),
        (["--rtt", "-1"], "--rtt"),
    ],
)
def test_bad_input_is_one_line(argv: list[str], words: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "slots", *argv],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert words in proc.stderr
