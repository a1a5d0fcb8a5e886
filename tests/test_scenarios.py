"""Issue 12's race and ports scenarios: the classification on loopback, bad input, ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scenarios.ports import PortsConfig, drive
from benchmarks.scenarios.race import Outcome, classify, client_argv
from servers.launch import ServerProcess
from servers.options import ServerName, ServerOptions

T = 1.0


def test_http_client_reuses_below_t_and_fails_above_it() -> None:
    """Well below T the pooled connection is reused; well above it http.client sends on the
    closed connection and raises (it neither notices the FIN nor retries)."""
    options = ServerOptions(ServerName.AIOHTTP, keepalive_timeout_s=T, keepalive_max=0)
    with ServerProcess(options) as server:
        assert server.ready is not None
        argv = client_argv("http.client", "GET", server.ready.url, server.ready.control_url,
                           [T - 0.5, T + 0.4])  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    below, above = (classify(trial) for trial in json.loads(out.stdout))
    assert below == (Outcome.REUSED, "")
    assert above[0] is Outcome.FAILED
    assert above[1] in {"RemoteDisconnected", "ConnectionResetError", "BrokenPipeError"}


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["race", "--timeout", "0.1"], "--timeout"),
        (["race", "--clients", "curl"], "unknown curl"),
        (["race", "--server", "apache"], "--server"),
        (["race", "--rtt", "-1"], "--rtt"),
        (["ports", "--ports", "3"], "--ports"),
        (["ports", "--server", "apache"], "--server"),
    ],
)
def test_bad_input_is_one_line(argv: list[str], words: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks", *argv], capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert words in proc.stderr


needs_namespace = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/dev/net/tun").exists(), reason="needs root and /dev/net/tun"
)


@needs_namespace
def test_ports_run_out_unpooled_and_never_pooled() -> None:
    config = PortsConfig(ports=40, seconds=2.0)
    unpooled = drive(config, "unpooled", 0)
    assert unpooled["eaddrnotavail"] == 1
    assert unpooled["connections"] <= 40
    pooled = drive(config, "pooled", 0)
    assert pooled["eaddrnotavail"] == 0
    assert pooled["connections"] == 1
    assert pooled["requests"] > 40


def test_proxy_sweep_is_dense_over_the_race_window() -> None:
    """nginx's requests fail when sent less than one RTT before the backend's FIN arrives: the
    sweep covers (-RTT, 0) with most of its points, and some points on either side."""
    from benchmarks.scenarios.race import RaceConfig

    deltas = RaceConfig(rtt_ms=20, proxy_trials=21).proxy_deltas_ms()
    assert len(deltas) == 21 and deltas == sorted(deltas)
    assert deltas[0] == -30 and deltas[-1] == 10
    assert sum(-20 < d < 0 for d in deltas) >= 9
    loopback = RaceConfig(rtt_ms=0, proxy_trials=11).proxy_deltas_ms()
    assert loopback[0] == -7.5 and loopback[-1] == 2.5  # +-5 ms at least: timers are coarse


def test_nginx_upstream_errors_are_read_from_its_log(tmp_path: Path) -> None:
    from benchmarks.scenarios.race import _proxy_verdict, upstream_errors

    log = tmp_path / "error.log"
    assert upstream_errors(log) == 0  # not written yet
    log.write_text(
        "2026/12/06 21:19:01 [error] 7#7: *3 upstream prematurely closed connection while "
        "reading response header from upstream, client: 127.0.0.1\n"
        "2026/12/06 21:19:03 [error] 7#7: *5 recv() failed (104: Connection reset by peer) "
        "while reading response header from upstream\n"
        "2026/12/06 21:19:04 [notice] 7#7: signal process started\n"
    )
    assert upstream_errors(log) == 2
    rows = [
        {"status": 200, "outcome": "ok", "actual_delta_ms": -25.0},
        {"status": 502, "outcome": "failed", "actual_delta_ms": -12.5},
        {"status": 200, "outcome": "retried", "actual_delta_ms": -8.0},
        {"status": 502, "outcome": "failed", "actual_delta_ms": -3.0},
    ]
    assert _proxy_verdict(rows, "POST") == (
        "POST 2/4 502 for delta -12.5..-3.0 ms (width 9.5 ms); 1 met a closed upstream and "
        "were retried by nginx"
    )
    assert _proxy_verdict(rows[:1], "GET") == "GET 0/1 502"
