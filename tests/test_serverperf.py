"""`python -m benchmarks serverperf`: wrk output parsing, nginx config, targets, and one short run.

Parsing and checks are tested on fixed text, so they need neither wrk nor nginx; the end-to-end
run (bare uvloop app next to nginx, 1 s per row) is skipped when either binary is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import UsageError
from benchmarks.serverperf.checks import Row, evaluate
from benchmarks.serverperf.command import parse_config
from benchmarks.serverperf.nginx import find_nginx, nginx_config
from benchmarks.serverperf.wrk import WrkResult, find_wrk, parse_wrk_output, wrk_command
from servers.policy import KeepAlivePolicy

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:40000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.00us  100.00us   2.00ms   90.00%
    Req/Sec    60.00k     1.00k   62.00k    80.00%
  Latency Distribution
     50%  390.00us
     75%  450.00us
     90%  520.00us
     99%    1.25ms
  120000 requests in 2.00s, 20.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:  59990.50
Transfer/sec:     10.00MB
"""


def test_parse_wrk_output() -> None:
    result = parse_wrk_output(WRK_OUTPUT)
    assert result.requests_per_s == 59990.5
    assert result.requests == 120000
    assert result.p50_us == 390.0
    assert result.p99_us == 1250.0
    assert result.errors == 6


def test_parse_wrk_output_without_latency_fails() -> None:
    with pytest.raises(RuntimeError, match="--latency"):
        parse_wrk_output("Requests/sec: 1.0\n")


def test_wrk_command_pins_and_closes() -> None:
    cmd = wrk_command("http://h:1/", connections=50, duration_s=2, close=True, cpu=1)
    assert cmd[:3] == ["taskset", "-c", "1"]
    assert cmd[3:] == ["wrk", "-t1", "-c50", "-d2s", "--latency", "-H", "Connection: close",
                       "http://h:1/"]  # fmt: skip


def test_nginx_config_mirrors_our_policy(tmp_path: Path) -> None:
    conf = nginx_config(tmp_path, 4321, KeepAlivePolicy(5.0, 0))
    assert "daemon off;" in conf and "worker_processes 1;" in conf
    assert "listen 127.0.0.1:4321" in conf
    assert "keepalive_timeout 5s 5s;" in conf
    assert "keepalive_requests 1000000000;" in conf
    assert 'return 200 "Hello, keep-alive!\\n";' in conf
    assert "keepalive_requests 7;" in nginx_config(tmp_path, 1, KeepAlivePolicy(5.0, 7))


def _row(target: str, mode: str, rps: float, p50_us: float = 500.0) -> Row:
    return Row(target, mode, 50, WrkResult(rps, int(rps), p50_us, p50_us * 2, {}, 0))


def test_checks_pass_fail_and_skip() -> None:
    rows = [
        _row("uvloop", "keep-alive", 100.0),
        _row("nginx", "keep-alive", 90.0),
        _row("uvloop", "close", 80.0),
        _row("nginx", "close", 90.0),
        _row("aiohttp", "keep-alive", 96.0),
        _row("bare-aiohttp", "keep-alive", 100.0),
        _row("stdlib", "sequential", 5000.0, p50_us=1200.0),
    ]
    status = {c.name: c.status for c in evaluate(rows)}
    assert status["uvloop >= nginx (keep-alive)"] == "PASS"
    assert status["uvloop >= nginx (close)"] == "FAIL"
    assert status["aiohttp within 5% of bare-aiohttp (keep-alive)"] == "PASS"
    assert status["aiohttp within 5% of bare-aiohttp (close)"] == "SKIP"
    assert status["stdlib reused-connection p50 < 1 ms"] == "FAIL"


def test_every_issue_14_target_has_a_line_with_instructions_beside() -> None:
    rows = [
        _row("nginx", "close", 100.0),
        _row("uvloop", "close", 95.0),
        _row("bare-uvloop", "close", 100.0),
        _row("uvloop", "keep-alive", 100.0),
        _row("bare-uvloop", "keep-alive", 100.0),
        _row("uvloop", "recycle", 80.0),
        _row("nginx", "keep-alive", 100.0),
        _row("nginx", "recycle", 86.0),
    ]
    counts = {("uvloop", "close"): 100_000.0, ("bare-uvloop", "close"): 50_000.0}
    checks = {c.name: c for c in evaluate(rows, counts)}
    close = checks["uvloop within 5% of bare-uvloop (close)"]
    assert close.status == "PASS"
    assert close.detail == (
        "95 vs 100 req/s (95%); instructions 100,000 vs 50,000 per request (200%)"
    )
    assert checks["uvloop >= nginx (close)"].status == "FAIL"
    assert (
        checks["uvloop within 5% of bare-uvloop (keep-alive)"].detail == "100 vs 100 req/s (100%)"
    )
    assert checks["uvloop keep-alive max 100 >= 85% of unlimited"].status == "FAIL"
    assert checks["nginx keep-alive max 100 of unlimited"].status == "INFO"


@pytest.mark.parametrize(
    "argv",
    [
        ["--duration", "0"],
        ["--connections", "0"],
        ["--servers", "apache"],
        ["--keepalive-max", "-1"],
    ],
)
def test_bad_input(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_config(argv)


def test_servers_subset_keeps_run_order() -> None:
    config = parse_config(["--servers", "bare-stdlib,nginx", "uvloop"])
    assert config.targets == ("nginx", "uvloop", "bare-stdlib")


@pytest.mark.skipif(find_wrk() is None or find_nginx() is None, reason="needs wrk and nginx")
def test_short_run_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "perf.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "serverperf", "--duration", "1",
         "--servers", "nginx,bare-uvloop", "--connections", "10", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    rows = {(r["target"], r["mode"]): r for r in data["rows"]}
    pairs = {(t, m) for t in ("nginx", "bare-uvloop") for m in ("keep-alive", "close")}
    assert set(rows) == pairs | {("nginx", "recycle")}  # nginx at keepalive_requests 100 too
    assert all(r["result"]["requests_per_s"] > 0 and r["error"] is None for r in rows.values())
    assert "SKIP uvloop >= nginx (keep-alive)" in done.stdout
    assert "INFO nginx keep-alive max 100 of unlimited: " in done.stdout
    assert data["instructions"] == []  # counted only with --instructions
