"""The page-load scenario (issue 11): the model, the Python page client, the run.

The client is checked against the servers' own counters, over loopback (any machine) and over
the delay line (root with /dev/net/tun, skipped otherwise). Timing checks are lower bounds only:
the relay never releases a packet early, so a load can never beat the model's round trips.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.analysis.rounds import result_csvs
from benchmarks.clients.contract import Mode
from benchmarks.net import DelayLine, LinkSpec, NetError, netns
from benchmarks.pageload.certs import make_certificate
from benchmarks.pageload.config import Batch, Client, KeepAlive, Tls
from benchmarks.pageload.model import (
    handshake_round_trips,
    keepalive_round_trips,
    no_keepalive_round_trips,
    schedule,
)
from benchmarks.pageload.pyclient import PageClientConfig
from benchmarks.pageload.rows import COLUMNS, read_rows, readme_with_columns
from benchmarks.pageload.run import (
    LineServer,
    chromium_agreement,
    max_pooled_connections,
    percentile,
    run_python,
)
from benchmarks.records.layout import bundle_of, read_bundle
from servers.launch import ServerProcess
from servers.options import REFERENCE_SERVERS, ServerName, ServerOptions

ROOT = Path(__file__).resolve().parent.parent


def _why_not() -> str | None:
    try:
        netns.check_preconditions()
    except NetError as exc:
        return str(exc)
    return None


needs_line = pytest.mark.skipif(_why_not() is not None, reason=f"{_why_not()}")


# -- the model -----------------------------------------------------------------------------


@pytest.mark.parametrize("handshake", [1, 2, 3])
def test_the_simulation_gives_both_closed_forms(handshake: int) -> None:
    for n in range(0, 250):
        assert schedule(n, handshake).round_trips == keepalive_round_trips(n, handshake), n
        assert schedule(n, handshake, 1).round_trips == no_keepalive_round_trips(n, handshake), n


@pytest.mark.parametrize(
    ("n", "tls", "keepalive", "without"),
    [(70, "none", 15, 26), (10, "none", 5, 6), (70, "1.3", 17, 39), (10, "1.3", 7, 9)],
)
def test_documented_round_trips(n: int, tls: str, keepalive: int, without: int) -> None:
    h = handshake_round_trips(tls)
    assert (schedule(n, h).round_trips, schedule(n, h, 1).round_trips) == (keepalive, without)
    assert schedule(n, h).connections == min(6, n) and schedule(n, h, 1).connections == n + 1


def test_a_small_keepalive_max_lies_between() -> None:
    rounds = [schedule(70, 1, m).round_trips for m in (1, 5, 100)]
    assert rounds[0] > rounds[1] > rounds[2]
    assert math.ceil(71 / 5) <= schedule(70, 1, 5).connections <= math.ceil(71 / 5) + 5


def test_percentile_interpolates() -> None:
    assert percentile([3.0], 90) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0, 0.0], 90) == pytest.approx(9.0)
    assert math.isnan(percentile([], 50))


def test_chromium_agreement_counts_preconnects_and_flags_disagreement() -> None:
    fine = [{"fetches": [{"connection": 1, "reused": True}, {"connection": 1, "reused": True},
                         {"connection": 2, "reused": False}]}]  # fmt: skip
    assert chromium_agreement(fine) == (1, "")  # connection 1 was open before its request
    bad = [{"fetches": [{"connection": 3, "reused": False}, {"connection": 3, "reused": False}]}]
    assert "not marked reused" in chromium_agreement(bad)[1]


def test_pooled_ceiling() -> None:
    assert max_pooled_connections(70, KeepAlive(5, 0)) == 6
    assert max_pooled_connections(70, KeepAlive(5, 5)) == 6 + 15


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rtt", "300"], "below 250 ms"),
        (["--rtt", "20,,50"], "empty value"),
        (["--tls", "1.1"], "--tls: unknown '1.1'"),
        (["--clients", "firefox"], "--clients: unknown 'firefox'"),
        (["--keepalive", "maybe"], "--keepalive takes on and off"),
        (["--resources", "1001"], "--resources must be between 0 and 1000"),
        (["--repeat", "0"], "--repeat must be between"),
        (["--servers", "nginx"], "--servers: unknown 'nginx' (one of stdlib, aiohttp, uvloop)"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "pageload", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://x:1", "--resources", "1", "--size", "1"], "--url must be"),
        (["--url", "http://x:1", "--resources", "1", "--size", "9999999"], "--size must be"),
        (["--url", "http://x:1", "--resources", "1", "--size", "1", "--loads", "0"], "--loads"),
    ],
)
def test_python_client_bad_options(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.pageload.pyclient", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


# -- the Python client over loopback -------------------------------------------------------


def _client(url: str, n: int, mode: Mode, ca: Path | None = None, loads: int = 2) -> Any:
    config = PageClientConfig(url=url, resources=n, size=100, mode=mode, loads=loads, ca_path=ca)
    done = subprocess.run(config.command(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["loads"]


def _delta(server: ServerProcess, before: dict[str, Any]) -> tuple[int, int]:
    deadline = time.monotonic() + 5
    while True:
        after = server.counters()
        if after["connections_open"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return (
        after["connections_accepted"] - before["connections_accepted"],
        after["requests_served"] - before["requests_served"],
    )


@pytest.mark.parametrize("name", [n.value for n in REFERENCE_SERVERS])
def test_python_client_on_loopback_pooled_and_unpooled(name: str) -> None:
    with ServerProcess(ServerOptions(ServerName(name))) as server:
        assert server.ready is not None
        for n in (1, 70):
            before = server.counters()
            loads = _client(server.ready.url, n, Mode.POOLED)
            assert all(not ld["error"] for ld in loads), loads
            assert all(ld["connections"] <= 6 and ld["requests"] == n + 1 for ld in loads)
            assert _delta(server, before) == (sum(ld["connections"] for ld in loads), 2 * (n + 1))
            before = server.counters()
            loads = _client(server.ready.url, n, Mode.UNPOOLED)
            assert all(ld["connections"] == n + 1 and ld["reused"] == 0 for ld in loads)
            assert _delta(server, before) == (2 * (n + 1), 2 * (n + 1))


def test_python_client_against_a_server_without_keepalive_opens_n_plus_1() -> None:
    with ServerProcess(ServerOptions(ServerName.UVLOOP, keepalive_timeout_s=0)) as server:
        assert server.ready is not None
        before = server.counters()
        loads = _client(server.ready.url, 20, Mode.POOLED)
        assert [ld["connections"] for ld in loads] == [21, 21]
        assert _delta(server, before) == (42, 42)


def test_python_client_over_tls_resumes_sessions(tmp_path: Path) -> None:
    cert = make_certificate(tmp_path)
    options = ServerOptions(
        ServerName.UVLOOP, tls=True, certfile=cert.certfile, keyfile=cert.keyfile
    )
    with ServerProcess(options) as server:
        assert server.ready is not None
        (load,) = _client(server.ready.url, 12, Mode.POOLED, cert.ca_path, loads=1)
        assert (load["tls_full"], load["tls_resumed"], load["connections"]) == (1, 5, 6)
        assert load["tls_version"] == "TLSv1.3"
        (load,) = _client(server.ready.url, 12, Mode.UNPOOLED, cert.ca_path, loads=1)
        assert (load["tls_full"], load["tls_resumed"]) == (1, 12)


# -- over the delay line -------------------------------------------------------------------


def _batch(client: Client, n: int, ka: KeepAlive, rtt: float) -> Batch:
    return Batch(1, ServerName.UVLOOP, client, rtt, n, 100, ka, Tls.NONE, 1, 1)


@needs_line
@pytest.mark.parametrize(
    ("client", "keepalive", "expect"),
    [
        (Client.PYTHON, KeepAlive(5, 100), "pooled"),
        (Client.PYTHON_UNPOOLED, KeepAlive(5, 100), "unpooled"),
        (Client.PYTHON, KeepAlive(0, 100), "unpooled"),
    ],
)
def test_python_client_over_the_line(
    tmp_path: Path, client: Client, keepalive: KeepAlive, expect: str
) -> None:
    rtt, n = 20.0, 13
    with DelayLine(LinkSpec(rtt_ms=rtt)) as line:
        server = LineServer(line, ServerName.UVLOOP, keepalive, Tls.NONE, None, tmp_path / "s")
        try:
            before = server.settled()
            batch = _batch(client, n, keepalive, rtt)
            result = run_python(line, batch, server.url, None)
            after = server.settled()
        finally:
            server.close()
    (load,) = result["loads"]
    accepted = after["connections_accepted"] - before["connections_accepted"]
    served = after["requests_served"] - before["requests_served"]
    assert not load["error"] and served == n + 1 and accepted == load["connections"]
    if expect == "pooled":
        assert accepted <= 6 and load["reused"] == n + 1 - accepted
        rounds = schedule(n, 1).round_trips
    else:
        assert accepted == n + 1 and load["reused"] == 0
        rounds = schedule(n, 1, 1).round_trips
    assert load["page_load_ms"] >= rounds * rtt  # never faster than the paper's round trips


@needs_line
def test_the_run_writes_valid_rows_and_a_plot(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "pageload", "--rtt", "0", "--resources", "3",
         "--clients", "python", "--tls", "none,1.3", "--repeat", "1", "--no-plot",
         "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (csv_path,) = tmp_path.glob("*/pageload-*.csv")
    rows = read_rows(csv_path)
    assert len(rows) == 2 * 2 and all(r.valid and r.status == "ok" for r in rows), rows
    with csv_path.open() as fh:
        assert tuple(next(csv.reader(fh))) == COLUMNS
    pooled = [r for r in rows if r.mode == "pooled"]
    assert len(pooled) == 2 and all(r.connections_per_page == 3 for r in pooled)  # min(6, N)
    assert all(r.connections_per_page == 4 for r in rows if r.mode == "unpooled")  # N + 1
    assert {r.tls_version for r in rows if r.tls == "1.3"} == {"TLSv1.3"}
    assert "keep-alive cuts python's page load" in done.stdout
    members = read_bundle(bundle_of(csv_path))  # the layout of every run: CSV and bundle
    assert sorted(members) == ["loads.jsonl"]  # logs only when something went wrong
    assert members["loads.jsonl"].decode().count("\n") == 4
    assert [p.name for p in csv_path.parent.iterdir() if p.is_dir()] == []  # no work left
    assert result_csvs(tmp_path) == set()  # the bench readers skip page-load files
    png = tmp_path / "again.png"
    replot = subprocess.run(
        [sys.executable, "-m", "benchmarks", "pageload", "plot", str(csv_path), "--out", str(png)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert replot.returncode == 0 and png.stat().st_size > 10_000


@needs_line
def test_sigint_leaves_nothing_behind(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "pageload", "--rtt", "100", "--resources", "70",
         "--clients", "python-unpooled", "--tls", "none", "--keepalive", "on", "--repeat", "5",
         "--results-dir", str(tmp_path), "--no-plot"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if " ms, " in line:  # the first batch is done: the second one is running
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "interrupted" in err
    assert netns.our_namespaces(proc.pid) == []
    leftover = subprocess.run(["pgrep", "-f", f"kab{proc.pid}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""
    (csv_path,) = tmp_path.glob("*/pageload-*.csv")
    assert len(read_rows(csv_path)) >= 1
    assert os.path.exists(csv_path)


def test_results_readme_lists_the_page_load_columns() -> None:
    readme = (ROOT / "results" / "README.md").read_text()
    assert readme_with_columns(readme) == readme, (
        "run `python -m benchmarks.pageload.rows --update results/README.md`"
    )


def _row(client: Client, connections: int, accepted: int, fetches: list[list[Any]]) -> Any:
    from benchmarks.harness.fingerprint import Fingerprint
    from benchmarks.pageload.run import make_row

    fp = Fingerprint("h", "cpu", 2, "k", "3.11", "p", "c")
    load = {
        "page_load_ms": 10.0, "document_ms": 2.0, "connections": connections, "error": "",
        "fetches": [{"connection": c, "reused": r} for c, r in fetches],
    }  # fmt: skip
    n = len(fetches) - 1
    batch = Batch(1, ServerName.UVLOOP, client, 20.0, n, 100, KeepAlive(5, 100), Tls.NONE, 1, 1)
    return make_row(batch, fp, "run", "t", {"loads": [load]}, (accepted, n + 1), (0, 0, 0), "v")


def test_rows_judge_the_clients_account_against_the_servers() -> None:
    agree = _row(Client.PYTHON, 2, 2, [[1, False], [1, True], [2, False]])
    assert (agree.valid, agree.note, agree.requests_per_connection) == (1, "", 1.5)
    python_disagrees = _row(Client.PYTHON, 2, 3, [[1, False], [1, True], [2, False]])
    assert python_disagrees.valid == 0 and "server accepted 3" in python_disagrees.note
    # Chromium: a spare connection nobody used, and one opened before its request: both noted.
    spare = _row(Client.CHROMIUM, 2, 3, [[1, True], [1, True], [2, False], [2, True], [1, True]])
    assert spare.valid == 1
    assert spare.note == (
        "chromium preconnected 1 connection(s); chromium opened 1 connection(s) it never used"
    )
    assert spare.preconnected_per_page == 1


@pytest.mark.parametrize(("user", "pooled"), [("PageUser", True), ("UnpooledPageUser", False)])
def test_locust_page_users_load_pages_six_connections_at_a_time(user: str, pooled: bool) -> None:
    """locustfiles/pageload.py: a pooled page user keeps at most six connections for every
    page; an unpooled one opens one per request. The server's counters decide."""
    options = ServerOptions(ServerName.UVLOOP, keepalive_max=0, keepalive_timeout_s=30)
    with ServerProcess(options) as server:
        assert server.ready is not None
        # On a busy machine Locust's --run-time can fire at once (its timer is armed against a
        # loop clock that start-up left behind): a run that served nothing is run again.
        for _ in range(3):
            before = server.counters()
            done = subprocess.run(
                [sys.executable, "-m", "locust", "-f", "locustfiles/pageload.py", "--headless",
                 "--host", server.ready.url, "-u", "1", "-r", "1", "-t", "4s", "--only-summary",
                 "--kab-resources", "12", user],
                cwd=ROOT, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-2000:]
            if "PAGE" in done.stdout + done.stderr:
                break
        after = server.counters()
    assert "PAGE" in done.stdout + done.stderr and "/page load" in done.stdout + done.stderr
    served = after["requests_served"] - before["requests_served"]
    accepted = after["connections_accepted"] - before["connections_accepted"]
    assert served >= 13  # at least one whole page
    if pooled:
        assert accepted <= 6
    else:
        assert accepted >= served


def test_compare_judges_page_load_runs(tmp_path: Path) -> None:
    """`python -m benchmarks compare` on two page-load CSVs: a cell 50% slower in every
    repetition (3 + 3, beyond the baseline's range) is a regression, exit 1; the same run
    against itself has none, exit 0."""
    from dataclasses import replace

    from benchmarks.pageload.rows import write_rows

    committed = sorted((ROOT / "results").glob("*/pageload-*.csv"))
    assert committed, "a committed page-load run"
    rows = read_rows(committed[0])
    slow_cell = ("python", 100.0, 70, "none", 5.0)  # a steady cell: spread of 1-2%

    def slower(row: Any) -> Any:
        key = (row.client, row.rtt_ms, row.resources, row.tls, row.keepalive_timeout_s)
        if key != slow_cell:
            return row
        return replace(row, page_load_p50_ms=row.page_load_p50_ms * 1.5,
                       page_load_p90_ms=row.page_load_p90_ms * 1.5)  # fmt: skip

    base, new = tmp_path / "pageload-base.csv", tmp_path / "pageload-new.csv"
    write_rows(base, rows)
    write_rows(new, [slower(r) for r in rows])

    def compare(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "benchmarks", "compare", str(a), str(b)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    done = compare(base, new)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.count("REGRESSION") == 2  # p50 and p90 of the one cell
    assert compare(base, base).returncode == 0
    bad = compare(base, tmp_path / "pageload-missing.csv")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_quick_runs_without_a_missing_browser_and_a_full_run_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks.pageload import cli

    monkeypatch.setattr(cli, "browser_missing", lambda: "no /usr/bin/chromium")
    quick = cli.build_config(cli.build_parser().parse_args(["--quick"]))
    checked, note = cli.without_missing_browser(quick)
    assert checked is not None and checked.clients == (Client.PYTHON,)
    assert note.startswith("note: QUICK without the browser: no /usr/bin/chromium")
    full = cli.build_config(cli.build_parser().parse_args([]))
    checked, note = cli.without_missing_browser(full)
    assert checked is None and "make pageload` installs both" in note
    monkeypatch.setattr(cli, "browser_missing", lambda: "")
    assert cli.without_missing_browser(full) == (full, "")


def test_chromium_tls_handshakes_come_from_the_servers_counters() -> None:
    """Chromium does not report handshakes: the server's tls_handshakes/tls_resumed deltas do
    (full = handshakes - resumed), per load; a server without the counters leaves them unknown
    (-1), plain HTTP has none (0)."""
    from benchmarks.harness.fingerprint import Fingerprint
    from benchmarks.pageload.run import make_row, server_delta

    fp = Fingerprint("h", "cpu", 2, "k", "3.11", "p", "c")
    load = {"page_load_ms": 10.0, "document_ms": 2.0, "connections": 6, "error": "",
            "fetches": [{"connection": i % 6, "reused": i >= 6} for i in range(11)]}  # fmt: skip
    base = {"connections_accepted": 10, "requests_served": 100}
    after = {"connections_accepted": 22, "requests_served": 122}
    counted = server_delta({**base, "tls_handshakes": 4, "tls_resumed": 1},
                           {**after, "tls_handshakes": 16, "tls_resumed": 11})  # fmt: skip
    assert (counted.tls_full, counted.tls_resumed) == (2, 10)
    assert server_delta(base, after).tls_resumed == -1
    assert server_delta({**base, "tls_resumed": 1}, after).tls_resumed == -1

    def row(tls: Tls, delta: Any) -> Any:
        batch = Batch(1, ServerName.UVLOOP, Client.CHROMIUM, 20.0, 10, 100, KeepAlive(5, 100),
                      tls, 1, 2)  # fmt: skip
        return make_row(batch, fp, "run", "t", {"loads": [load, load]}, delta, (0, 0, 0), "v")

    with_counters = row(Tls.TLS13, counted)
    assert (with_counters.tls_full_per_page, with_counters.tls_resumed_per_page) == (1, 5)
    without = row(Tls.TLS13, server_delta(base, after))
    assert (without.tls_full_per_page, without.tls_resumed_per_page) == (-1, -1)
    plain = row(Tls.NONE, server_delta(base, after))
    assert (plain.tls_full_per_page, plain.tls_resumed_per_page) == (0, 0)
