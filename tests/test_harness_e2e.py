"""The harness for real: a one-cell matrix with real servers and clients, failures, Ctrl-C.

Each test runs a few seconds; the machine may be busy, so the numbers are checked for
plausibility only. Every test also checks that no server or client process is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import psutil
import pytest

from benchmarks.clients.contract import ClientConfig
from benchmarks.harness.cli import main
from benchmarks.records.layout import bundle_of, read_bundle
from benchmarks.records.schema import read_rows
from benchmarks.serverperf import ceiling
from servers import launch

REPO = Path(__file__).resolve().parent.parent
ONE_CELL = [
    "--servers", "uvloop", "--clients", "pyperf-concurrent-raw", "--concurrency", "4",
    "--duration", "1", "--warmup", "0.3", "--repeat", "1",
]  # fmt: skip


def _descendants() -> list[psutil.Process]:
    return [
        p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE
    ]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Path, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    assert _descendants() == [], "a server or client outlived the run"
    return rc, Path(out.strip().splitlines()[-1]), err


def test_one_cell_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, csv_path, err = _run(
        [*ONE_CELL, "--modes", "pooled", "--results-dir", str(tmp_path)], capsys
    )
    assert rc == 0, err
    assert csv_path.parent.parent == tmp_path and csv_path.suffix == ".csv"
    (row,) = read_rows(csv_path)
    assert (row.status, row.key.server, row.key.mode) == ("ok", "uvloop", "pooled"), row.note
    # other tenants of this machine may crowd the server's core: that row is honestly invalid
    assert row.valid == 1 or row.note.startswith("contended:"), row.note
    if row.valid and len(os.sched_getaffinity(0)) >= 2:
        assert "cores: server " in row.note and "% harness)" in row.note
    assert row.requests > 100 and row.errors == 0 and row.throughput_rps > 100
    assert 0 < row.latency_p50_ms <= row.latency_p99_ms <= row.latency_max_ms < 5000
    assert 4 <= row.connections_opened < row.requests and row.requests_per_connection > 5
    assert row.server_cpu_s > 0 and row.server_cpu_us_per_req > 0
    assert row.peak_open_connections >= 4
    assert row.host_id and row.git_commit and "pyperf=" in row.packages
    if len(os.sched_getaffinity(0)) >= 2:
        assert row.server_core >= 0 and row.client_core >= 0 and row.server_core != row.client_core
    # Two files: the CSV and the bundle (client JSON with its histogram, pyperf's JSON; the logs
    # only when the row is invalid); the working folder is gone.
    members = read_bundle(bundle_of(csv_path))
    assert {p.name for p in csv_path.parent.iterdir()} == {csv_path.name, bundle_of(csv_path).name}
    assert sum(n.endswith(".json") for n in members) == 2 and "histogram" in str(members)
    assert any(n.endswith(".log") for n in members) == (row.valid == 0)
    assert "[1/1 " in err and "left]" in err


@pytest.fixture
def foreign_server() -> Iterator[int]:
    """An HTTP server that is not ours, answering 200 to everything."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


def _server_pid() -> int:
    return next(p.pid for p in psutil.Process().children() if "servers" in p.cmdline())


@pytest.mark.parametrize(
    "failure",
    ["server-start", "server-identity", "server-died", "client-crashed", "client-timeout"],
)
def test_a_failure_is_a_row_and_the_other_cells_still_run(
    failure: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    foreign_server: int,
) -> None:
    """The pooled cell fails in the chosen way; the unpooled cell after it still runs."""
    py = sys.executable
    real_command, real_server_command, real_ready = (
        ClientConfig.command, launch.server_command, launch.parse_ready_line,
    )  # fmt: skip

    armed = [True]  # only the first cell (pooled) fails

    def fire() -> bool:
        was, armed[0] = armed[0], False
        return was

    def server_command(options: object) -> list[str]:
        if failure == "server-start" and fire():
            return [py, "-c", "import sys; sys.stderr.write('boom: cannot bind\\n'); sys.exit(2)"]
        return real_server_command(options)  # type: ignore[arg-type]

    def parse_ready(line: str) -> launch.ReadyInfo:
        info = real_ready(line)
        if failure == "server-identity" and fire():
            return launch.ReadyInfo(
                f"http://127.0.0.1:{foreign_server}", info.control_url, info.pid, info.server, None
            )
        return info

    def command(self: ClientConfig) -> list[str]:
        if failure not in ("server-died", "client-crashed", "client-timeout") or not fire():
            return real_command(self)
        if failure == "server-died":
            code = f"import os, time; time.sleep(0.5); os.kill({_server_pid()}, 9); time.sleep(30)"
        elif failure == "client-crashed":
            code = "import sys; print('Traceback: kaboom'); sys.exit(3)"
        else:
            code = "import time; time.sleep(60)"
        return [py, "-c", code]

    monkeypatch.setattr(launch, "server_command", server_command)
    monkeypatch.setattr(launch, "parse_ready_line", parse_ready)
    monkeypatch.setattr(ClientConfig, "command", command)
    argv = [*ONE_CELL, "--results-dir", str(tmp_path)]
    if failure == "client-timeout":  # long enough for the real client of the second cell
        argv += ["--client-timeout", "10"]
    start = time.monotonic()
    rc, csv_path, err = _run(argv, capsys)
    assert rc == 1
    failed, ok = read_rows(csv_path)
    assert (failed.status, failed.valid, failed.key.mode) == (failure, 0, "pooled")
    assert failed.note and "\n" not in failed.note
    assert ok.status == "ok" and ok.key.mode == "unpooled" and ok.requests > 0, ok.note
    assert f"FAILED {failure}" in err
    assert time.monotonic() - start < 60
    expected = {
        "server-start": "boom: cannot bind",
        "server-identity": "not served by pid",
        "server-died": "exited with status -9",
        "client-crashed": "kaboom",
        "client-timeout": "still running after 10 s",
    }[failure]
    assert expected in failed.note
    # The failed cell's logs are kept in the bundle (the server's stderr at least); the logs of
    # the cell that ran fine are not, unless it came out invalid on a crowded machine.
    logs = {n for n in read_bundle(bundle_of(csv_path)) if n.endswith(".log")}
    assert any(n.startswith("001-") for n in logs), logs
    if ok.valid:
        assert not any(n.startswith("002-") for n in logs), logs


def test_ctrl_c_keeps_measured_rows_and_leaves_no_process(tmp_path: Path) -> None:
    """SIGINT to the foreground group (harness and server), as a terminal's Ctrl-C does."""
    argv = [*ONE_CELL, "--duration", "3", "--repeat", "2", "--modes", "pooled"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "run", *argv, "--results-dir", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    harness = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob("*/*.csv")):
        for p in harness.children(recursive=True):
            seen.setdefault(p.pid, p)
        time.sleep(0.1)
    time.sleep(1.5)  # into the second cell's client run
    for p in harness.children(recursive=True):
        seen.setdefault(p.pid, p)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    (csv_path,) = tmp_path.glob("*/*.csv")
    assert out.strip().splitlines()[-1] == str(csv_path)
    rows = read_rows(csv_path)
    assert len(rows) == 1 and rows[0].status == "ok"
    # the interrupted pyperf client's parts directory, temporary files and the working folder
    # are gone: the CSV and the bundle remain, the bundle with the finished cell's JSON only
    assert {p.name for p in csv_path.parent.iterdir()} == {csv_path.name, bundle_of(csv_path).name}
    assert all(n.startswith("001-") for n in read_bundle(bundle_of(csv_path)))
    time.sleep(0.2)
    left = [p for p in seen.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], [p.cmdline() for p in left]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_ceiling_one_short_round(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """wrk and the raw client against one pinned uvloop server: both measured, JSON written."""
    argv = ["--rounds", "1", "--duration", "1", "--warmup", "0.3", "--results-dir", str(tmp_path)]
    rc = ceiling.main(argv)
    out, err = capsys.readouterr()
    assert _descendants() == [], "a server or client outlived the run"
    assert rc in (0, 1), err  # 1: a run had errors, said in the table
    (json_path,) = tmp_path.glob("*/ceiling-*.json")
    assert out.strip().splitlines()[-1] == str(json_path)
    data = json.loads(json_path.read_text())
    (first,) = data["rounds"]
    assert first["wrk_rps"] > 100 and first["raw_rps"] > 100, first
    assert data["median"]["ratio"] == pytest.approx(first["raw_rps"] / first["wrk_rps"])
    assert "target >= 0.9" in out


def _proc_entry(p: psutil.Process) -> str:
    """'' when `p` has no /proc entry any more, else its state (a zombie too is left over)."""
    try:
        return p.status() if p.is_running() else ""
    except psutil.NoSuchProcess:
        return ""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_harness_pid_alone_leaves_nothing_behind(
    sig: signal.Signals, tmp_path: Path
) -> None:
    """Issue 8 item 10: `kill -INT <harness pid>` (not its group, unlike a terminal's Ctrl-C)
    while a pyperf worker runs; the same for SIGTERM. The worker used to outlive the harness:
    its manager died first, so it was orphaned to init (which reaps slowly here) instead of
    being reaped by the harness. Every process the harness started must be gone, zombies
    included, when it has exited."""
    argv = [*ONE_CELL, "--duration", "4", "--modes", "pooled", "--results-dir", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "run", *argv],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # the signal below reaches the harness only
    )  # fmt: skip
    harness = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}
    worker = False
    deadline = time.monotonic() + 60
    while not worker and time.monotonic() < deadline and proc.poll() is None:
        for p in harness.children(recursive=True):
            seen.setdefault(p.pid, p)
            with contextlib.suppress(psutil.Error):
                worker = worker or "--worker" in p.cmdline()
        time.sleep(0.02)
    assert worker, "no pyperf worker started"
    time.sleep(0.2)  # into the worker's run
    for p in harness.children(recursive=True):
        seen.setdefault(p.pid, p)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    left = {p.pid: _proc_entry(p) for p in seen.values() if _proc_entry(p)}
    assert left == {}, f"left after the harness exited (pid: state): {left}"
    assert proc.returncode == 130, err
    assert err.rstrip().splitlines()[-1].startswith("interrupted"), err
    assert "Traceback" not in err


THREE_CELLS = [*ONE_CELL, "--modes", "pooled", "--repeat", "3"]
RAISE_ENOSPC = (
    "import errno, os, sys; raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), sys.argv[1])"
)
# Fill the disk the client writes to but two pages, then become the real client: its log and
# the CSV still fit, its workers' tallies and result JSONs do not (ENOSPC).
FILL_THEN_EXEC = """\
import os, sys
try:
    with open(sys.argv[1], "wb", buffering=0) as f:
        while True:
            f.write(bytes(1 << 12))
except OSError:
    pass
os.truncate(sys.argv[1], max(0, os.path.getsize(sys.argv[1]) - 8192))
os.execv(sys.argv[2], sys.argv[2:])
"""


def _nth_client(monkeypatch: pytest.MonkeyPatch, n: int, wrap: object) -> list[Path]:
    """The `n`th client's command becomes `wrap(real argv, output)`; returns the outputs of the
    clients started, to count them."""
    real_command = ClientConfig.command
    started: list[Path] = []

    def command(self: ClientConfig) -> list[str]:
        started.append(self.output)
        argv = real_command(self)
        return wrap(argv, self.output) if len(started) == n else argv  # type: ignore[operator]

    monkeypatch.setattr(ClientConfig, "command", command)
    return started


def test_a_client_that_finds_the_disk_full_stops_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8 item 11, injected: the second client dies of ENOSPC writing its result. Its row
    says the results disk is full (not just client-crashed), stderr says it, the run stops
    (the third cell never starts) with exit 1, and the first row is kept."""
    started = _nth_client(
        monkeypatch, 2, lambda argv, out: [sys.executable, "-c", RAISE_ENOSPC, str(out)]
    )
    rc, csv_path, err = _run([*THREE_CELLS, "--results-dir", str(tmp_path)], capsys)
    assert rc == 1 and len(started) == 2, err
    first, full = read_rows(csv_path)
    assert first.status == "ok", first.note
    assert full.status == "disk-full" and full.valid == 0
    assert full.note.startswith("results disk full: No space left on device"), full.note
    assert "the cell failed as client-crashed" in full.note
    assert "error: results disk full: No space left on device" in err and "run stopped" in err
    assert "[3/3" not in err


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)]
    done = subprocess.run(mount, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_a_results_disk_that_fills_up_stops_the_run(
    small_disk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8 item 11, for real: the disk is all but full when the first (real) client runs,
    whose pyperf workers then cannot write their tallies (ENOSPC). The run stops there with
    exit 1 (the second cell never starts), and stderr and the row say the results disk is full.
    Should the disk be too full even for the row, stderr says that instead."""
    started = _nth_client(
        monkeypatch, 1,
        lambda argv, out: [sys.executable, "-c", FILL_THEN_EXEC, str(out.parent / "filler"), *argv],
    )  # fmt: skip
    rc = main([*ONE_CELL, "--modes", "pooled", "--repeat", "2", "--results-dir", str(small_disk)])
    out, err = capsys.readouterr()
    assert _descendants() == [], "a server or client outlived the run"
    assert rc == 1 and len(started) == 1, err
    assert "error: results disk full: No space left on device" in err, err
    assert "[2/2" not in err
    csvs = list(small_disk.glob("*/*.csv"))
    if not csvs:
        assert "the row of the cell that hit it could not be written" in err
        return
    (full,) = read_rows(csvs[0])
    assert full.status == "disk-full", full.note
    assert full.note.startswith("results disk full: No space left on device"), full.note


def test_locust_page_users_run_as_a_harness_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """make bench CLIENTS=locust-page: page users (six connections each) in a real cell; the
    row's mode is the server's counters' verdict, its note says how many pages loaded."""
    argv = ["--servers", "uvloop", "--clients", "locust-page", "--concurrency", "6",
            "--duration", "1", "--warmup", "0.3", "--repeat", "1", "--modes", "pooled",
            "--results-dir", str(tmp_path)]  # fmt: skip
    rc, csv_path, err = _run(argv, capsys)
    assert rc == 0, err
    (row,) = read_rows(csv_path)
    assert (row.status, row.key.client, row.key.concurrency) == ("ok", "locust-page", 6)
    assert row.valid == 1 or row.note.startswith("contended:"), row.note
    assert row.peak_open_connections >= 6 and 6 <= row.connections_opened < row.requests
    assert " pages " in f" {row.note}" and "page load p50 " in row.note
