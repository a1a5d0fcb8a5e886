"""The harness's deterministic logic, with fakes: matrix, rules, /proc parsing, CSV, summary."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import psutil
import pytest

from benchmarks import latency
from benchmarks.clientspec import ClientKind, ClientResult, Mode
from benchmarks.harness import config as cfgmod
from benchmarks.harness import rules
from benchmarks.harness.cell import CellContext, failed_row, measured_row
from benchmarks.harness.cli import main
from benchmarks.harness.config import ConfigError, build
from benchmarks.harness.fingerprint import Fingerprint, git_commit, package_versions
from benchmarks.harness.monitor import Monitor, Sample, busy_intervals, load_stats
from benchmarks.harness.procs import ClientProcess, Cores, choose_cores
from benchmarks.harness.report import Progress, fmt_duration, summary_table
from benchmarks.harness.results import RunWriter, keep_artifacts, new_run_paths
from benchmarks.harness.sockets import (
    SocketCounts,
    counters_delta,
    format_counters,
    kernel_counters,
    parse_proto_table,
    parse_tcp_table,
)
from benchmarks.schema import COLUMN_DOCS, COLUMNS, read_rows, readme_with_columns
from servers.options import ServerName
from tests.rowfactory import row

REPO = Path(__file__).resolve().parent.parent

# --- config and matrix -------------------------------------------------------------------------


def test_default_matrix_covers_every_server_both_modes_locust_and_pyperf() -> None:
    cells = build(quick=False).cells()
    assert len(cells) == 24
    assert {c.server for c in cells} == set(ServerName)
    assert {c.mode for c in cells} == {Mode.POOLED, Mode.UNPOOLED}
    assert any(c.client.is_locust for c in cells) and any(not c.client.is_locust for c in cells)
    assert [c.index for c in cells] == list(range(1, 25))


def test_quick_is_one_repetition_of_the_same_configurations() -> None:
    quick, full = build(quick=True), build(quick=False)
    assert quick.repeat == 1 and len(quick.cells()) == 12
    assert quick.duration_s < full.duration_s


def test_repetitions_are_the_outer_loop_and_modes_are_adjacent() -> None:
    cells = build(quick=False, servers="uvloop", clients="pyperf-concurrent-raw").cells()
    assert [(c.repetition, c.mode) for c in cells] == [
        (1, Mode.POOLED), (1, Mode.UNPOOLED), (2, Mode.POOLED), (2, Mode.UNPOOLED),
    ]  # fmt: skip


def test_comma_lists_are_parsed_in_order_and_deduplicated() -> None:
    config = build(
        quick=True, servers="uvloop,aiohttp,uvloop", concurrency="1,8", keepalive_max="0"
    )
    assert config.servers == (ServerName.UVLOOP, ServerName.AIOHTTP)
    assert config.concurrency == (1, 8)
    assert config.keepalive_maxes == (0,)
    assert len(config.cells()) == 2 * 2 * 2 * 2


def test_sequential_client_ignores_concurrency_and_collapses_duplicates() -> None:
    cells = build(
        quick=True, servers="stdlib", clients="pyperf-sequential", concurrency="4,16"
    ).cells()
    assert [(c.concurrency, c.mode) for c in cells] == [(1, Mode.POOLED), (1, Mode.UNPOOLED)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"servers": "uvloop,nginx"},
            "--servers: unknown 'nginx' (choose from stdlib, aiohttp, uvloop)",
        ),
        ({"concurrency": "0"}, "--concurrency must be >= 1, got 0"),
        ({"concurrency": "8,"}, "--concurrency: empty value"),
        ({"concurrency": "x"}, "--concurrency: bad value 'x'"),
        ({"modes": "both"}, "--modes: unknown 'both'"),
        ({"keepalive_timeout": "-1"}, "--keepalive-timeout must be >= 0"),
        ({"duration": 0.0}, "--duration must be in (0, 3600]"),
        ({"repeat": 0}, "--repeat must be >= 1"),
    ],
)
def test_bad_input_is_one_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(quick=True, **kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_cli_bad_input_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--servers", "bogus"], ["--concurrency", "0"], ["--workers", "0"], ["--nope"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err


def test_cli_dry_run_lists_cells(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dry-run", "--quick", "--servers", "uvloop"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("4 cells, about ")


def test_default_estimates_fit_the_budgets() -> None:
    for quick, budget in ((True, 60), (False, 300)):
        config = build(quick=quick)
        assert sum(cfgmod.estimate_cell_s(config, c) for c in config.cells()) <= budget


# --- rules -------------------------------------------------------------------------------------


def _judge(**kw: object) -> rules.Verdict:
    args: dict[str, object] = dict(
        mode=Mode.POOLED, concurrency=16, load_processes=1, keepalive_timeout_s=5.0,
        keepalive_max=100, requests=9000, errors=0, requests_total=10_000,
        connections_opened=116, requests_served=10_000, peak_open_connections=16,
    )  # fmt: skip
    args.update(kw)
    return rules.judge(**args)  # type: ignore[arg-type]


def test_expected_pooled_connections_counts_recycling_by_keepalive_max() -> None:
    assert rules.expected_pooled_connections(16, 3, 10_000, 100) == 48 + 100
    assert rules.expected_pooled_connections(16, 1, 10_000, 0) == 16
    assert rules.expected_pooled_connections(4, 0, 1, 1000) == 5


def test_pooled_verdicts() -> None:
    assert _judge().valid
    assert _judge(keepalive_max=0, connections_opened=16).valid
    bad = _judge(connections_opened=5000)
    assert not bad.valid and "not reused" in bad.reason
    assert not _judge(keepalive_timeout_s=0.0).valid
    low = _judge(peak_open_connections=4)
    assert not low.valid and "at most 4 connections were open" in low.reason
    assert _judge(peak_open_connections=15).valid  # one recycled connection between requests


def test_unpooled_verdicts() -> None:
    assert _judge(mode=Mode.UNPOOLED, connections_opened=10_000).valid
    reused = _judge(mode=Mode.UNPOOLED, connections_opened=116)
    assert not reused.valid and "reused" in reused.reason


def test_common_verdicts() -> None:
    assert "no request" in _judge(requests=0).reason
    assert "errors" in _judge(errors=500).reason
    assert _judge(errors=50).valid
    assert "did not measure this server" in _judge(requests_served=100).reason
    assert "no connection" in _judge(connections_opened=0).reason
    lost = _judge(requests_served=14_000)  # a worker's share never reached the result
    assert not lost.valid and "lost measurements" in lost.reason
    assert _judge(requests_served=10_050).valid  # requests in flight when the client stopped


def test_client_cpu_and_client_bound() -> None:
    assert rules.client_cpu_pct(97.0, 60.0, 1) == 97.0
    assert rules.client_cpu_pct(120.0, 95.0, 2) == 95.0
    assert rules.client_cpu_pct(190.0, 40.0, 2) == 95.0
    assert rules.is_client_bound(85.0) and not rules.is_client_bound(84.9)


# --- sockets -----------------------------------------------------------------------------------

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:1F90 0100007F:A2C4 01 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:A2C4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0100007F:1F90 0100007F:A2C5 06 00000000:00000000 03:00000F3A 00000000     0        0 0 3
   4: 0100007F:A2C6 0100007F:1F90 06 00000000:00000000 03:00000F3A 00000000     0        0 0 3
   5: 0100007F:0050 0100007F:A2C7 01 00000000:00000000 00:00000000 00000000     0        0 4 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:B000 06 0:0 0
"""


def test_parse_tcp_table_counts_the_server_port_only() -> None:
    assert parse_tcp_table(TCP, 0x1F90) == SocketCounts(1, 1, 1)
    assert parse_tcp_table(TCP6, 0x1F90) == SocketCounts(0, 1, 0)
    assert parse_tcp_table(TCP, 1234) == SocketCounts()


def test_socket_counts_and_kernel_counters_from_a_fake_proc(tmp_path: Path) -> None:
    from benchmarks.harness.sockets import count_entries, private_netns, socket_counts

    (tmp_path / "tcp").write_text(TCP)
    (tmp_path / "tcp6").write_text(TCP6)
    (tmp_path / "snmp").write_text(
        "Ip: Forwarding\nIp: 1\nTcp: RtoAlgorithm ActiveOpens PassiveOpens CurrEstab\n"
        "Tcp: 1 10 12 2\nUdp: InDatagrams\nUdp: 5\n"
    )
    (tmp_path / "netstat").write_text("TcpExt: SyncookiesSent TW\nTcpExt: 0 7\n")
    counts = socket_counts(0x1F90, tmp_path)
    assert counts == SocketCounts(1, 2, 1) and counts.time_wait == 3
    assert kernel_counters(tmp_path) == {
        "ActiveOpens": 10,
        "PassiveOpens": 12,
        "CurrEstab": 2,
        "TW": 7,
    }
    assert count_entries(tmp_path) == 7
    assert not private_netns(tmp_path)  # sockets present: the kernel counters are not ours alone
    for name in ("tcp", "tcp6"):
        (tmp_path / name).write_text("  sl  local_address rem_address   st\n")
    assert private_netns(tmp_path)


def test_proto_table_delta_and_note() -> None:
    assert parse_proto_table("Tcp: A B\nTcp: 1 x\n", "Tcp") == {"A": 1}
    assert parse_proto_table("Udp: A\nUdp: 1\n", "Tcp") == {}
    delta = counters_delta({"ActiveOpens": 5, "CurrEstab": 9}, {"ActiveOpens": 21, "CurrEstab": 1})
    assert delta == {"ActiveOpens": 16, "CurrEstab": 1}
    assert format_counters(delta) == "netns ActiveOpens=16 CurrEstab=1"


# --- monitor arithmetic ------------------------------------------------------------------------


def _samples(
    requests: list[int], server_rate: float = 0.5, client_rate: float = 0.9
) -> list[Sample]:
    out, cpu_s, cpu_c = [], 0.0, 0.0
    for k, n in enumerate(requests):
        if k and n > requests[k - 1]:
            cpu_s += server_rate * 0.2
            cpu_c += client_rate * 0.2
        elif k:
            cpu_c += 0.1 * 0.2  # idle client: imports between pyperf workers, say
        out.append(Sample(k * 0.2, n, cpu_s, cpu_c, {42: cpu_c}))
    return out


def test_busy_intervals_skip_pauses_and_edges() -> None:
    paused = [0, 0, 10, 20, 20, 30, 40, 50, 60, 70, 80, 80]
    assert busy_intervals(_samples(paused)) == [2, 3, 5, 6, 7, 8, 9, 10]  # few interior: all
    steady = [0, 0, 10, 20, 30, 40, 50, 60, 70, 70]
    assert busy_intervals(_samples(steady)) == [3, 4, 5, 6, 7]  # enough: edges dropped
    assert busy_intervals(_samples([0, 0, 10, 20, 20])) == [2, 3]


def test_load_stats_over_busy_intervals_only() -> None:
    stats = load_stats(_samples([0, 0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 90, 90]))
    assert stats is not None
    assert stats.server_cpu_pct == pytest.approx(50.0)
    assert stats.client_tree_pct == pytest.approx(90.0)
    assert stats.client_max_proc_pct == pytest.approx(90.0)
    assert load_stats(_samples([0, 0, 5, 5])) is None


# --- results, rows and the summary -------------------------------------------------------------

FP = Fingerprint("host1", "Test CPU", 2, "6.1", "3.11.7", "aiohttp=3", "abc1234")


def _ctx(tmp_path: Path) -> CellContext:
    return CellContext(build(quick=True), FP, "run1", Cores(1, 0), tmp_path, netns=False)


def test_new_run_paths_never_reuse_a_name(tmp_path: Path) -> None:
    a = new_run_paths(tmp_path, "host1", "20260101T000000Z", "abc")
    b = new_run_paths(tmp_path, "host1", "20260101T000000Z", "abc")
    assert a[0] == tmp_path / "host1" / "20260101T000000Z-abc.csv" and a[1].is_dir()
    assert b[0].name == "20260101T000000Z-abc-1.csv"


def test_writer_rewrites_the_csv_after_each_row(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "run.csv")
    writer.add(row(repetition=1))
    assert len(read_rows(writer.path)) == 1
    writer.add(row(repetition=2, status="server-died", valid=0))
    assert [r.status for r in read_rows(writer.path)] == ["ok", "server-died"]
    assert [p.name for p in tmp_path.iterdir()] == ["run.csv"]  # no temporary file left


def test_keep_artifacts_copies_outside_files_only(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    inside, outside = folder / "a.pyperf.json", tmp_path / "b.pyperf.json"
    inside.write_text("{}")
    outside.write_text("{}")
    kept = keep_artifacts([str(inside), "b.pyperf.json", "missing.json"], folder, tmp_path)
    assert kept == [inside, folder / "b.pyperf.json"] and (folder / "b.pyperf.json").exists()


def test_failed_row_carries_config_and_reason(tmp_path: Path) -> None:
    cell = build(quick=True).cells()[0]
    r = failed_row(cell, _ctx(tmp_path), "2026-01-01T00:00:00Z", "server-start", "exited 2")
    assert (r.status, r.valid, r.note, r.server, r.requests) == (
        "server-start",
        0,
        "exited 2",
        "stdlib",
        0,
    )
    assert (r.server_core, r.client_core) == (1, 0)


def _result(mode: Mode, requests_total: int) -> ClientResult:
    hist = latency.new_histogram()
    for us in (100, 200, 300):
        latency.record_us(hist, us)
    return ClientResult(
        client=ClientKind.PYPERF_CONCURRENT_RAW.value, mode=mode.value, requests=9000, errors=0,
        elapsed_s=1.0, requests_total=requests_total, load_processes=1,
        latency_us={"p50": 200.0, "p90": 300.0, "p99": 300.0, "p999": 300.0, "max": 300.0},
        histogram=latency.encode(hist), error_kinds={"ConnectionError: EADDRNOTAVAIL": 3},
    )  # fmt: skip


def test_measured_row_applies_rules_and_flags_port_exhaustion(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    cell = next(c for c in ctx.config.cells() if c.mode is Mode.UNPOOLED)
    monitor = Monitor(0, None, None, 8080, 1.0, lambda: True)  # type: ignore[arg-type]
    monitor.samples.extend(_samples([0, 0] + [1000 * k for k in range(1, 12)] + [11_000]))
    r = measured_row(
        cell, ctx, "t", _result(Mode.UNPOOLED, 10_000),
        before={"requests_served": 1, "connections_accepted": 1},
        after={
            "requests_served": 10_001, "connections_accepted": 10_001, "connections_peak_open": 17
        },
        server_cpu_s=0.5, client_wall_s=2.0, monitor=monitor, end_sockets=SocketCounts(0, 9000, 0),
        kernel={}, client_status=0,
    )  # fmt: skip
    assert r.status == "ports-exhausted" and r.valid == 0
    assert r.throughput_rps == 9000 and r.latency_p50_ms == 0.2
    assert r.connections_opened == 10_000 and r.requests_per_connection == 1.0
    assert r.server_cpu_us_per_req == 50.0 and r.time_wait_sockets == 9000
    assert r.client_bound == 1 and r.client_cpu_pct == pytest.approx(90.0)
    assert "EADDRNOTAVAIL" in r.note and "time_wait server=9000" in r.note


def test_summary_pairs_modes_with_ratio_and_flags() -> None:
    rows = [
        row(mode="pooled", throughput_rps=30_000.0, connections_opened=16, repetition=1),
        row(mode="unpooled", throughput_rps=10_000.0, connections_opened=9000, repetition=1),
        row(
            mode="pooled",
            throughput_rps=32_000.0,
            connections_opened=16,
            repetition=2,
            client_bound=1,
        ),
        row(mode="unpooled", status="client-crashed", valid=0, throughput_rps=0.0, repetition=2),
        row(server="stdlib", mode="pooled", valid=0, throughput_rps=1000.0),
    ]
    text = summary_table(rows)
    lines = text.splitlines()
    uv = next(line for line in lines if line.startswith("uvloop"))
    assert "31,000" in uv and "10,000" in uv and "3.10x" in uv and uv.endswith("CF")
    st = next(line for line in lines if line.startswith("stdlib"))
    # an invalid row's throughput is not its mode's: shown as "-", flagged I
    assert "1,000" not in st and st.split()[-1] == "I" and " - " in st
    assert lines[-1].startswith("flags:")


def test_progress_estimates_from_measured_cells() -> None:
    cells = build(quick=True, servers="uvloop").cells()
    now = [100.0]
    stream = io.StringIO()
    progress = Progress(cells, lambda c: 10.0, stream=stream, clock=lambda: now[0])
    assert progress.seconds_left() == 40.0
    progress.started(cells[0])
    now[0] += 4.0
    progress.finished(cells[0], row(), 4.0)
    assert progress.seconds_left() == 4.0 + 10.0 + 10.0  # same client measured, others a priori
    out = stream.getvalue().splitlines()
    assert out[0].startswith("[1/4 0:00 elapsed, ~0:40 left]") and "0:04 elapsed" in out[1]
    assert fmt_duration(61.4) == "1:01"


# --- processes, fingerprint, docs --------------------------------------------------------------


def test_choose_cores() -> None:
    assert choose_cores([0, 1]) == Cores(server=1, client=0)
    assert choose_cores([3, 1, 2]) == Cores(server=3, client=2)
    assert not choose_cores([0]).pinned


def test_kill_tree_leaves_no_descendant(tmp_path: Path) -> None:
    script = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); time.sleep(60)"
    )
    with (tmp_path / "log").open("wb") as log:
        client = ClientProcess([sys.executable, "-c", script], core=-1, log=log)
        deadline = time.monotonic() + 10
        while len(client.remember_tree()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [p.pid for p in client.remember_tree()]
        assert len(pids) == 2
        client.kill_tree()
    time.sleep(0.1)
    assert [p for p in pids if _running(p)] == []


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_fingerprint_pieces(tmp_path: Path) -> None:
    assert "pyperf=" in package_versions()
    commit = git_commit(REPO)
    assert commit == "unknown" or len(commit.removesuffix("-dirty")) >= 7
    assert git_commit(tmp_path) == "unknown"


def test_results_readme_columns_match_the_schema() -> None:
    readme = (REPO / "results" / "README.md").read_text()
    assert readme_with_columns(readme) == readme, (
        "run: python -m benchmarks.schema --update results/README.md"
    )
    assert set(COLUMN_DOCS) == set(COLUMNS)


def test_contention_note_names_starved_cores() -> None:
    cores = Cores(server=1, client=0)
    assert rules.contention_note(cores, {0: 95.0, 1: 60.0}, 55.0, 30.0) == (
        "contended: client core 0 95% busy, 30% ours"
    )
    assert rules.contention_note(cores, {0: 95.0, 1: 99.0}, 97.0, 90.0) == ""
    assert rules.contention_note(cores, {}, 50.0, 50.0) == ""
