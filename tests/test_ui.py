"""`python -m benchmarks ui` (issue 5, `make ui`): the lab starts, serves, and stops cleanly.

One end-to-end run, as `make ui` starts it: both printed URLs answer, a test started through the
web UI's own /swarm endpoint reaches the server and shows in the server-side rows, /swarm refuses
what Locust would accept and then fail on, and SIGINT (the terminal's Ctrl-C) leaves no process
of the lab behind. Bad flags are one-line errors before anything starts. The arithmetic behind
the rows is checked on made-up samples. The real browser test lives in tests_browser/
(`make test-browser`).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from benchmarks.ui import launcher
from benchmarks.ui.serverwatch import Sample, count_time_wait, derive, is_local_host, table_rows

START_TIMEOUT_S = 60.0  # Locust's import is slow on a loaded 2-core machine
STOP_TIMEOUT_S = 20.0
Lab = tuple[subprocess.Popen[str], dict[str, list[str]]]  # the launcher and its banner


def _sample(t: float, accepted: int, requests: int, idle: int = 0, cpu_s: float = 0.0) -> Sample:
    closed = {"idle_timeout": idle, "client_closed": 0, "max_reached": 0, "client_requested": 0}
    return Sample(t, accepted, 2, 5, requests, closed, 7, 1, cpu_s)


def test_rows_give_rates_now_and_totals_since_start() -> None:
    base = _sample(100.0, accepted=10, requests=10)
    window = _sample(107.0, accepted=12, requests=50, idle=1, cpu_s=1.0)
    latest = _sample(110.0, accepted=18, requests=110, idle=4, cpu_s=1.6)
    rows = {r["metric"]: (r["now"], r["total"]) for r in table_rows(latest, window, base)}
    assert rows["Connections opened /s"] == ("2.0", "8")
    assert rows["Requests /s (server)"] == ("20.0", "100")
    assert rows["Requests per new connection"] == ("10.0", "12.5")
    assert rows["Closed by idle_timeout /s"] == ("1.0", "4")
    assert rows["TIME_WAIT on server port (server side)"][0] == "7"
    assert rows["Server CPU %"][0] == "20.0"


def test_requests_without_new_connections_are_all_reused() -> None:
    point = derive(_sample(2.0, accepted=3, requests=90), _sample(1.0, accepted=3, requests=40))
    assert point["req_per_conn"] == "all reused"
    assert point["req_per_s"] == 50.0


def test_time_wait_counted_per_side_of_the_port(tmp_path: Path) -> None:
    proc = tmp_path / "tcp"
    header = "  sl  local_address rem_address   st tx_queue rx_queue\n"
    lines = [
        "0: 0100007F:1F90 0100007F:D431 06 0",  # server side of port 8080, TIME_WAIT
        "1: 0100007F:D432 0100007F:1F90 06 0",  # client side
        "2: 0100007F:1F90 0100007F:D433 01 0",  # established: not counted
        "3: 0100007F:1F91 0100007F:D434 06 0",  # another port
    ]
    proc.write_text(header + "\n".join(lines) + "\n")
    assert count_time_wait(8080, [proc, tmp_path / "missing"]) == (1, 1)


def test_loopback_is_local_and_a_remote_name_is_not() -> None:
    assert is_local_host("127.0.0.1")
    assert not is_local_host("192.0.2.1")  # TEST-NET-1: never this machine


def _locust_argv(*flags: str) -> list[str]:
    args = launcher.build_parser().parse_args(list(flags))
    return launcher.locust_command(args, "http://127.0.0.1:1", "http://127.0.0.1:2", None, [])


def test_workers_get_a_private_master_port() -> None:
    argv = _locust_argv("--workers", "2")
    assert argv[argv.index("--processes") + 1] == "2"
    assert argv[argv.index("--master-bind-host") + 1] == "127.0.0.1"
    assert argv[argv.index("--master-port") + 1] == argv[argv.index("--master-bind-port") + 1]


@pytest.mark.parametrize("flags", [(), ("--workers", "1")])
def test_one_worker_is_one_plain_locust_process(flags: tuple[str, ...]) -> None:
    """As in make bench (benchmarks/harness/config.py): WORKERS=1 is not a master + 1 worker."""
    argv = _locust_argv(*flags)
    assert "--processes" not in argv and "--master-bind-port" not in argv


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--web-port", "99999"], "argument --web-port: must be between 0 and 65535, got 99999"),
        (["--web-port", "-1"], "argument --web-port: must be between 0 and 65535, got -1"),
        (["--workers", "0"], "argument --workers: must be between 1 and 64, got 0"),
        (["--workers", "65"], "argument --workers: must be between 1 and 64, got 65"),
        (["--workers", "two"], "argument --workers: must be an integer, got 'two'"),
    ],
)
def test_bad_flags_are_one_line_errors_before_anything_starts(
    flags: list[str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "ui", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"python -m benchmarks ui: error: {message}\n"


THINK_TIME_PROBE = """
import types
from locustfiles.keepalive import _think_time
user = types.SimpleNamespace(environment=types.SimpleNamespace(parsed_options=None))
for value in (0.25, -1.0, -1.0, float("nan")):
    user.environment.parsed_options = types.SimpleNamespace(kab_think_time=value)
    print(_think_time(user))
"""


def test_a_bad_think_time_from_the_web_ui_counts_as_zero_with_one_warning() -> None:
    """The web UI stores any float; the users must neither crash nor spin without a word."""
    done = subprocess.run(
        [sys.executable, "-c", THINK_TIME_PROBE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.25", "0.0", "0.0", "0.0"]
    warnings = [line for line in done.stderr.splitlines() if "warning: think time" in line]
    assert warnings == [
        "locustfiles/keepalive.py: warning: think time -1 s is negative or not finite; using 0 s",
        "locustfiles/keepalive.py: warning: think time nan s is negative or not finite; using 0 s",
    ]


def _read_banner(proc: subprocess.Popen[str]) -> dict[str, list[str]]:
    """The launcher's lines up to 'Ctrl-C ...': label -> the words after it."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    banner: dict[str, list[str]] = {}
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            assert proc.poll() is None, f"launcher exited with {proc.returncode}"
            continue
        if line.startswith("Ctrl-C"):
            return banner
        label, *rest = line.split()
        banner[label] = rest
    raise AssertionError(f"no banner in {START_TIMEOUT_S:g} s: {banner}")


def _pid(words: list[str]) -> int:
    return int(next(w for w in words if w.startswith("pid="))[4:])


def _get(url: str, data: dict[str, Any] | None = None) -> bytes:
    body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
    with urllib.request.urlopen(url, data=body, timeout=10) as response:
        assert response.status == 200
        return response.read()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextlib.contextmanager
def lab_process(
    log: Path, *flags: str
) -> Iterator[tuple[subprocess.Popen[str], dict[str, list[str]]]]:
    """`python -m benchmarks ui` on a free web port, until its banner; SIGINT at the end.

    Shared with tests_browser/: the browser test drives the same lab.
    """
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks", "ui", "--web-port", "0", *flags],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            yield proc, _read_banner(proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with lab_process(tmp_path / "lab.log", "--keepalive-timeout", "1") as started:
        yield started


def _wait_for_rows(web: str, metric: str, timeout_s: float = 15.0) -> dict[str, str]:
    """Until the tab's row for `metric` counts something since the test started."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = json.loads(_get(web + "/stats/requests"))
        rows = {r["metric"]: r for r in report["extended_stats"][0]["data"]}
        if rows.get(metric, {}).get("total", "0") not in ("0", "-") or time.monotonic() > deadline:
            return rows[metric]
        time.sleep(0.5)


def test_lab_serves_both_urls_and_sigint_stops_everything(lab: Lab) -> None:
    proc, banner = lab
    web, server_pid, locust_pid = banner["web"][1], _pid(banner["server"]), _pid(banner["web"])
    assert banner["server"][0].startswith("http://127.0.0.1:")
    assert web.startswith("http://127.0.0.1:")

    index = _get(web + "/").decode()
    assert '"extended_tabs"' in index and "Server side" in index
    assert b"./server-stats" in _get(banner["charts"][0])  # the charts page polls the JSON
    stats = json.loads(_get(web + "/kab/server-stats"))
    assert stats["control_url"] and stats["local"] is True

    form = {"user_count": 2, "spawn_rate": 2, "user_classes": "PooledUser"}
    refused = json.loads(_get(web + "/swarm", {**form, "kab_think_time": "-1"}))
    assert refused == {
        "success": False,
        "message": "Kab Think Time must be a number of seconds >= 0, got '-1'",
        "host": banner["server"][0],
    }
    assert json.loads(_get(web + "/swarm", {**form, "kab_think_time": "0.1"}))["success"]
    requests_row = _wait_for_rows(web, "Requests /s (server)")
    assert int(requests_row["total"]) > 0, requests_row

    # Switching class under running users freezes Locust 2.47 (KeyError): refused with a reason.
    switch = {**form, "user_classes": "UnpooledUser", "kab_think_time": "0.1"}
    refused = json.loads(_get(web + "/swarm", switch))
    assert not refused["success"]
    assert refused["message"].endswith("with PooledUser: press Stop and wait for STOPPED before "
                                       "starting another user class"), refused  # fmt: skip
    assert json.loads(_get(web + "/stats/requests"))["state"] == "running"

    proc.send_signal(signal.SIGINT)
    assert proc.wait(STOP_TIMEOUT_S) == 0
    for pid in (server_pid, locust_pid):
        assert _gone(pid), f"pid {pid} still running after SIGINT"
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # nor anything else in its process group (Locust's workers)
