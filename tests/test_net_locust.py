"""`python -m benchmarks net locust` (issue 10): Locust's master and worker as separate hosts.

The master runs in one client namespace, the worker in another, the server in its own: the
worker can reach the master only through the relay (client to client), and the server only
through it too. Needs root and /dev/net/tun (skipped otherwise); the bad-input checks do not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.clients.contract import ClientResult
from benchmarks.net import NetError, netns

ROOT = Path(__file__).resolve().parent.parent


def _why_not() -> str | None:
    try:
        netns.check_preconditions()
    except NetError as exc:
        return str(exc)
    return None


def net_locust(*args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "net", "locust", *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )


def test_page_users_run_from_their_own_locustfile() -> None:
    """PageUser and UnpooledPageUser are in locustfiles/pageload.py: master and workers load it."""
    from benchmarks.net.distributed import DistributedConfig
    from benchmarks.net.spec import LinkSpec

    for user_class, name in [("PageUser", "pageload.py"), ("PooledUser", "keepalive.py")]:
        config = DistributedConfig(LinkSpec(rtt_ms=20, clients=2), user_class=user_class)
        assert config.locustfile.name == name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rtt", "20", "--workers", "0"], "--workers must be between 1 and 63, got 0"),
        (["--rtt", "20", "--users", "0"], "--users must be between 1 and"),
        (["--rtt", "20", "--run-time", "0"], "--run-time must be 1 to 86400 s, got 0"),
        (
            ["--rtt", "20", "--user-class", "Nope"],
            "--user-class must be one of PageUser, PooledRequestsUser",
        ),
        (["--rtt", "-3"], "--rtt must be between 0"),
        (["--rtt", "20", "--server", "apache"], "--server must name a reference server"),
        (["--rtt", "20", "--json", "/no/such/dir/x.json"], "--json: no such directory"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    proc = net_locust(*args, timeout_s=60)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.skipif(_why_not() is not None, reason=f"{_why_not()}")
def test_master_and_worker_in_separate_namespaces_load_the_server(tmp_path: Path) -> None:
    figures_path, result_path = tmp_path / "figures.json", tmp_path / "result.json"
    proc = net_locust(
        "--rtt", "20", "--workers", "1", "--users", "4", "--run-time", "3",
        "--json", str(figures_path), "--", "--kab-output", str(result_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(figures_path.read_text())
    result = ClientResult.read(result_path)
    assert result.requests > 0 and result.errors == 0  # the master saw the worker's requests
    assert figures["server"]["requests_served"] >= result.requests
    hosts = figures["hosts"]
    assert hosts["master"]["address"] != hosts["worker 1"]["address"]
    # The master sends no request to the server: what reaches its namespace came from the
    # worker's namespace, through the relay.
    assert hosts["master"]["sent"] > 0 and hosts["master"]["received"] > 0
    assert hosts["worker 1"]["received"] > hosts["master"]["received"]  # its requests too
    assert "net: server:" in proc.stderr and "requests served" in proc.stderr
    # Every request waited at least one round trip (less 1% for the histogram's precision).
    assert result.latency_us["p50"] >= 0.99 * 20_000
