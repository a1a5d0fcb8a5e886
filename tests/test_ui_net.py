"""`make ui RTT=20` (issue 10): the lab with its load on the delay line.

The server runs in the line's server namespace and Locust in a client namespace; the web UI is
still reached at 127.0.0.1 from here, and the Server side tab still reads the server. Every
request crosses the line, so none is faster than a round trip (a lower bound: the relay never
releases a packet early). Needs root and /dev/net/tun; the flag check does not.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from benchmarks.net import NetError, netns
from tests.test_ui import STOP_TIMEOUT_S, lab_process

RTT_MS = 20.0


def _why_not() -> str | None:
    try:
        netns.check_preconditions()
    except NetError as exc:
        return str(exc)
    return None


def _get(url: str, data: dict[str, Any] | None = None) -> Any:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(url, data=body, timeout=10) as response:
        return json.load(response)


def test_loss_without_rtt_is_a_one_line_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "ui", "--loss", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert (
        done.stderr == "python -m benchmarks ui: error: --loss and --bandwidth need --rtt (RTT=)\n"
    )


@pytest.mark.skipif(_why_not() is not None, reason=f"{_why_not()}")
def test_the_lab_over_the_line_serves_the_host_and_loads_the_server(tmp_path: Path) -> None:
    flags = ("--rtt", f"{RTT_MS:g}", "--keepalive-timeout", "5")
    with lab_process(tmp_path / "lab.log", *flags) as (proc, banner):
        web = banner["web"][1]
        assert web.startswith("http://127.0.0.1:")  # the host's loopback, forwarded
        assert banner["server"][0].startswith("http://198.18.0.2:")
        assert netns.our_namespaces(proc.pid)  # the launcher owns the line

        form = {"user_count": 2, "spawn_rate": 2, "user_classes": "PooledUser"}
        assert _get(web + "/swarm", {**form, "kab_think_time": "0.1"})["success"]
        deadline = time.monotonic() + 20
        while True:
            tab = _get(web + "/kab/server-stats")
            rows = {r["metric"]: r for r in tab["rows"]}
            served = rows.get("Requests /s (server)", {}).get("total", "0")
            if served not in ("0", "-") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert tab["local"] is True and tab["error"] == "", tab
        assert int(served) > 0, rows
        stats = _get(web + "/stats/requests")
        total = next(s for s in stats["stats"] if s["name"] == "Aggregated")
        assert total["num_requests"] > 0 and total["num_failures"] == 0
        assert total["min_response_time"] >= 0.99 * RTT_MS  # every request crossed the line

        proc.send_signal(signal.SIGINT)
        assert proc.wait(STOP_TIMEOUT_S) == 0
    assert netns.our_namespaces(proc.pid) == []
    assert "net: link rtt 20 ms:" in (tmp_path / "lab.log").read_text()
