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
