"""The harness's deterministic logic, with fakes: matrix, rules, /proc parsing, CSV, summary."""

from __future__ import annotations

import errno
import io
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from benchmarks import latency
from benchmarks.clients.contract import (
    MAX_CONCURRENCY,
    ClientConfig,
    ClientKind,
    ClientResult,
    Mode,
)
from benchmarks.common import UsageError, write_atomic
from benchmarks.harness import cli, procs
from benchmarks.harness import config as cfgmod
from benchmarks.harness import validity as rules
from benchmarks.harness.cli import main
from benchmarks.harness.config import build
from benchmarks.harness.fingerprint import Fingerprint, git_commit, package_versions
from benchmarks.harness.monitor import Monitor, Sample, busy_intervals, load_stats
from benchmarks.harness.procs import ClientProcess, Cores, choose_cores, pinned_self
from benchmarks.harness.progress import Progress, fmt_duration, summary_table
from benchmarks.harness.rows import CellContext, Measurement, failed_row, measured_row
from benchmarks.harness.sockets import (
    SocketCounts,
    counters_delta,
    format_counters,
    kernel_counters,
    parse_proto_table,
    parse_tcp_table,
)
from benchmarks.net.line import LinkStats
from benchmarks.records import layout as results
from benchmarks.records.layout import (
    keep_artifacts,
    remove_client_leftovers,
)
from benchmarks.records.schema import (
    COLUMN_DOCS,
    COLUMNS,
    ResultRow,
    read_rows,
    readme_with_columns,
)
from benchmarks.serverperf import ceiling
from servers.options import REFERENCE_SERVERS, ServerName
from tests.rowfactory import row

REPO = Path(__file__).resolve().parent.parent

# --- config and matrix -------------------------------------------------------------------------


def test_default_matrix_covers_every_server_both_modes_locust_and_pyperf() -> None:
    cells = build(quick=False).cells()
    assert len(cells) == 24
    assert {c.server for c in cells} == set(REFERENCE_SERVERS)  # nginx, node: when named
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
    assert config.values("server") == (ServerName.UVLOOP, ServerName.AIOHTTP)
    assert config.values("concurrency") == (1, 8)
    assert config.values("keepalive_max") == (0,)
    assert len(config.cells()) == 2 * 2 * 2 * 2


def test_sequential_client_ignores_concurrency_and_collapses_duplicates() -> None:
    cells = build(
        quick=True, servers="stdlib", clients="pyperf-sequential", concurrency="4,16"
    ).cells()
    assert [(c.key.concurrency, c.mode) for c in cells] == [(1, Mode.POOLED), (1, Mode.UNPOOLED)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"servers": "uvloop,apache"},
            "--servers: unknown 'apache' (choose from stdlib, aiohttp, uvloop, nginx, node)",
        ),
        ({"concurrency": "0"}, "--concurrency must be >= 1, got 0"),
        ({"concurrency": "8,"}, "--concurrency: empty value"),
        ({"concurrency": "x"}, "--concurrency: bad value 'x'"),
        ({"modes": "both"}, "--modes: unknown 'both'"),
        ({"keepalive_timeout": "-1"}, "--keepalive-timeout must be a finite number >= 0"),
        ({"keepalive_timeout": "nan"}, "--keepalive-timeout must be a finite number >= 0"),
        ({"keepalive_timeout": "inf"}, "--keepalive-timeout must be a finite number >= 0"),
        ({"duration": 0.0}, "--duration must be in (0, 3600]"),
        ({"duration": float("nan")}, "--duration must be in (0, 3600]"),
        ({"duration": float("inf")}, "--duration must be in (0, 3600]"),
        ({"warmup": float("nan")}, "--warmup must be in [0, 600]"),
        ({"warmup": float("inf")}, "--warmup must be in [0, 600]"),
        ({"client_timeout": float("nan")}, "--client-timeout must be a finite number > 0"),
        ({"client_timeout": float("inf")}, "--client-timeout must be a finite number > 0"),
        ({"client_timeout": 0.0}, "--client-timeout must be a finite number > 0"),
        ({"repeat": 0}, "--repeat must be >= 1"),
        (
            {"concurrency": str(MAX_CONCURRENCY + 1), "clients": "pyperf-concurrent-raw"},
            f"--concurrency {MAX_CONCURRENCY + 1} is above pyperf-concurrent-raw's maximum",
        ),
        (
            {"servers": "uvloop,nginx", "clients": "locust-page"},
            "locust-page loads /page, which only our servers serve (stdlib, aiohttp, uvloop), "
            "not nginx",
        ),
    ],
)
def test_bad_input_is_one_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as info:
        build(quick=True, **kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_sequential_client_accepts_any_concurrency() -> None:
    """It always holds one connection, so the concurrent clients' maximum does not apply."""
    config = build(quick=True, clients="pyperf-sequential", concurrency=str(MAX_CONCURRENCY + 1))
    assert {c.key.concurrency for c in config.cells()} == {1}


def test_cli_bad_input_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--servers", "bogus"], ["--concurrency", "0"], ["--workers", "0"], ["--nope"],
        ["--client-timeout", "nan"], ["--client-timeout", "inf"], ["--duration", "nan"],
        ["--warmup", "inf"], ["--concurrency", "20000"],
    ):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err


@pytest.mark.parametrize("where", ["file", "proc"])
def test_unusable_results_dir_is_one_line_before_any_cell(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    ran: list[object] = []
    monkeypatch.setattr(cli, "run_cell", lambda *a: ran.append(a))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    target = str(a_file) if where == "file" else "/proc/keepalive-bench-test"
    assert main(["--quick", "--servers", "uvloop", "--results-dir", target]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m benchmarks run: error: --results-dir")
    assert ran == []


def test_a_failed_write_mid_run_keeps_the_rows_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second row cannot be written (disk full, say): one line, the first row stays, exit 1."""
    from benchmarks.harness.cell import CellOutcome

    def fake_cell(cell: cfgmod.Cell, ctx: CellContext) -> CellOutcome:
        return CellOutcome(row(mode=cell.mode.value, repetition=cell.repetition), None, 0.1)

    real_write = results.write_rows

    def write_rows(path: Path, rows: Sequence[ResultRow]) -> None:
        if len(rows) > 1:
            raise OSError(28, "No space left on device")
        real_write(path, rows)

    monkeypatch.setattr(cli, "run_cell", fake_cell)
    monkeypatch.setattr(results, "write_rows", write_rows)
    argv = ["--quick", "--servers", "uvloop", "--clients", "pyperf-concurrent-raw"]
    assert main([*argv, "--results-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "error: results disk full: cannot write" in err and "No space left on device" in err
    (csv_path,) = tmp_path.glob("*/*.csv")
    assert len(read_rows(csv_path)) == 1 and out.strip().splitlines()[-1] == str(csv_path)


def test_the_space_probe_says_when_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert results.no_space_left(tmp_path) == ""

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(results.os, "fsync", fsync)
    assert results.no_space_left(tmp_path) == "No space left on device"
    assert list(tmp_path.iterdir()) == []  # the probe file is removed
    monkeypatch.setattr(results.os, "fsync", lambda fd: (_ for _ in ()).throw(PermissionError()))
    assert results.no_space_left(tmp_path) == ""  # not a full disk: not this check's business


def test_a_log_that_says_no_space(tmp_path: Path) -> None:
    log = tmp_path / "client.log"
    assert results.no_space_in(log) == ""
    log.write_text("x" * 100_000 + "\nOSError: [Errno 28] No space left on device: 'a.json'\n")
    assert results.no_space_in(log) == "No space left on device"
    log.write_text("OSError: [Errno 122] Disk quota exceeded\n" + "x" * 100_000)
    assert results.no_space_in(log) == ""  # only the end of the log is read


def test_a_harness_write_on_a_full_disk_is_disk_full_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ENOSPC in the harness itself (copying an artifact, opening a log): the row says the
    results disk is full, not harness-error alone, and the outcome stops the run."""
    from benchmarks.harness import cell as cellmod

    def measure(*args: object) -> object:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "x.server.log")

    monkeypatch.setattr(cellmod, "_measure", measure)
    ctx = _ctx(tmp_path)
    outcome = cellmod.run_cell(ctx.config.cells()[0], ctx)
    assert outcome.row.status == "disk-full" and outcome.stop.startswith("results disk full: ")
    assert "No space left on device" in outcome.stop and " free)" in outcome.stop
    assert "the cell failed as harness-error: OSError: [Errno 28]" in outcome.row.note
    monkeypatch.setattr(cellmod, "_measure", lambda *a: (_ for _ in ()).throw(ValueError("bug")))
    outcome = cellmod.run_cell(ctx.config.cells()[0], ctx)
    assert (outcome.row.status, outcome.stop) == ("harness-error", "")


def test_cli_dry_run_lists_cells(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dry-run", "--quick", "--servers", "uvloop"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("4 cells, about ")


def test_default_estimates_fit_the_budgets() -> None:
    for quick, budget in ((True, 60), (False, 300)):
        config = build(quick=quick)
        assert cfgmod.estimate_cell_s(config) * len(config.cells()) <= budget


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
    assert "pooled mode impossible" in _judge(keepalive_timeout_s=0.0).reason
    assert "pooled mode impossible" in _judge(keepalive_max=1, connections_opened=10_016).reason
    low = _judge(peak_open_connections=4)
    assert not low.valid and "at most 4 connections were open" in low.reason
    assert _judge(peak_open_connections=15).valid  # one recycled connection between requests


def test_unpooled_verdicts() -> None:
    assert _judge(mode=Mode.UNPOOLED, connections_opened=10_000).valid
    reused = _judge(mode=Mode.UNPOOLED, connections_opened=116)
    assert not reused.valid and "reused" in reused.reason
    # the committed runs peak at 1.0-1.6x concurrency; half of it is the limit
    assert _judge(mode=Mode.UNPOOLED, connections_opened=10_000, peak_open_connections=8).valid
    low = _judge(mode=Mode.UNPOOLED, connections_opened=10_000, peak_open_connections=7)
    assert not low.valid and "unpooled at concurrency 16 but at most 7" in low.reason
    one = _judge(
        mode=Mode.UNPOOLED, concurrency=1, connections_opened=10_000, peak_open_connections=1
    )
    assert one.valid  # the sequential client


def test_common_verdicts() -> None:
    assert "no request" in _judge(requests=0).reason
    assert "errors" in _judge(errors=500).reason
    assert _judge(errors=50).valid
    assert "did not measure this server" in _judge(requests_served=100).reason
    assert "no connection" in _judge(connections_opened=0).reason
    lost = _judge(requests_served=14_000)  # a worker's share never reached the result
    assert not lost.valid and "lost measurements" in lost.reason
    assert _judge(requests_served=10_050).valid  # requests in flight when the client stopped


def test_window_verdicts_use_the_clients_window_counts_checked_against_the_server() -> None:
    """The mode is judged over the window (sent = requests + errors there); the client's
    run-wide count must first agree with the server's, else its window count is not trusted."""
    unpooled = dict(mode=Mode.UNPOOLED, connections_opened=10_000, connections_counted=10_000)
    # 6,207 connections over the run for 3,127 in the window: unpooled, judged by the window
    window = dict(unpooled, requests=3127, errors=0, connections_window=3130)
    assert _judge(**window).valid
    assert "reused" in _judge(**{**window, "connections_window": 1500}).reason
    # Locust's window closes mid-traffic: up to the in-flight requests straddle its edges
    assert _judge(**{**window, "requests": 129, "connections_window": 115}).valid
    mismatch = _judge(**{**window, "connections_counted": 8000})
    assert not mismatch.valid and "client counted 8000" in mismatch.reason
    pooled = dict(connections_opened=116, connections_counted=116, connections_window=0)
    assert _judge(**pooled).valid  # every connection opened in the warm-up: none in the window
    assert "not reused" in _judge(**{**pooled, "connections_window": 5000}).reason


def test_client_bound_by_its_own_cpu_or_a_crowded_core() -> None:
    assert rules.is_client_bound(85.0) and not rules.is_client_bound(84.9)
    assert rules.is_client_bound(30.0, 95.0)  # starved: the core was busy with others' work
    assert not rules.is_client_bound(30.0, 60.0) and not rules.is_client_bound(30.0, None)


def test_server_contended_counts_only_foreign_load_on_the_server_core() -> None:
    cores = Cores(server=1, client=0)
    assert rules.server_contended(cores, {0: 99.0, 1: 60.0}, 55.0) == ""  # client core is ours
    reason = rules.server_contended(cores, {0: 50.0, 1: 90.0}, 55.0)
    assert reason.startswith("contended: server core 1 90% busy, 55% by the server")
    assert rules.server_contended(cores, {}, 50.0) == ""
    assert rules.server_contended(Cores(-1, -1), {0: 100.0}, 10.0) == ""
    note = rules.core_note(cores, {0: 97.0, 1: 60.0}, 55.0, 94.0, 1.0)
    assert (
        note == "cores: server 1 60% busy (55% server), "
        "client 0 97% busy (94% client, 1.0% harness)"
    )


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
    assert parse_tcp_table(TCP, 0x1F90) == SocketCounts(1, 1, 1, held_client=1, held_server=1)
    assert parse_tcp_table(TCP6, 0x1F90) == SocketCounts(0, 1, 0)
    assert parse_tcp_table(TCP, 1234) == SocketCounts()
    # a server end closing (FIN_WAIT2) or in its handshake (SYN_RECV) is held, not ESTABLISHED
    closing = (
        TCP + "   6: 0100007F:1F90 0100007F:A2C8 05 0:0 0\n   7: 0100007F:1F90 0100007F:A2C9 03 0\n"
    )
    assert parse_tcp_table(closing, 0x1F90).held_server == 3
    assert parse_tcp_table(closing, 0x1F90).established_server == 1


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
    assert counts == SocketCounts(1, 2, 1, held_client=1, held_server=1) and counts.time_wait == 3
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
    requests: list[int], server_rate: float = 0.5, client_rate: float = 0.9,
    server_core_rate: float | None = None, client_core_rate: float | None = None,
) -> list[Sample]:  # fmt: skip
    """Samples 0.2 s apart; the cores (server 1, client 0) carry our load unless told more."""
    server_core = server_rate if server_core_rate is None else server_core_rate
    client_core = client_rate + 0.01 if client_core_rate is None else client_core_rate
    out, cpu_s, cpu_c, cpu_h, core0, core1 = [], 0.0, 0.0, 0.0, 0.0, 0.0
    for k, n in enumerate(requests):
        if k and n > requests[k - 1]:
            cpu_s += server_rate * 0.2
            cpu_c += client_rate * 0.2
            cpu_h += 0.01 * 0.2
            core0 += client_core * 0.2
            core1 += server_core * 0.2
        elif k:
            cpu_c += 0.1 * 0.2  # idle client: imports between pyperf workers, say
        out.append(Sample(k * 0.2, n, cpu_s, cpu_c, cpu_h, {0: core0, 1: core1}))
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
    assert stats.harness_cpu_pct == pytest.approx(1.0)
    assert stats.core_busy_pct == pytest.approx({0: 91.0, 1: 50.0})
    assert load_stats(_samples([0, 0, 5, 5])) is None


# --- results, rows and the summary -------------------------------------------------------------

FP = Fingerprint("host1", "Test CPU", 2, "6.1", "3.11.7", "aiohttp=3", "abc1234")


def _ctx(tmp_path: Path) -> CellContext:
    return CellContext(build(quick=True), FP, "run1", Cores(1, 0), tmp_path, netns=False)


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
    assert (r.status, r.valid, r.note, r.key.server, r.requests) == (
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


def _measurement(
    mode: Mode, samples: list[Sample], *, connections: int, peak: int = 17,
    end_sockets: SocketCounts | None = None,
) -> Measurement:  # fmt: skip
    monitor = Monitor(0, None, None, 8080, 1.0, lambda: True)  # type: ignore[arg-type]
    monitor.samples.extend(samples)
    return Measurement(
        result=_result(mode, 10_000), before={"requests_served": 1, "connections_accepted": 1},
        after={
            "requests_served": 10_001, "connections_accepted": 1 + connections,
            "connections_peak_open": peak,
        },
        server_cpu_s=0.5, client_wall_s=2.0, monitor=monitor,
        end_sockets=end_sockets or SocketCounts(), kernel={}, client_status=0,
    )  # fmt: skip


BUSY = [0, 0] + [1000 * k for k in range(1, 12)] + [11_000]


def test_measured_row_applies_rules_and_flags_port_exhaustion(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    cell = next(c for c in ctx.config.cells() if c.mode is Mode.UNPOOLED)
    m = _measurement(
        Mode.UNPOOLED, _samples(BUSY), connections=10_000, end_sockets=SocketCounts(0, 9000, 0)
    )
    r = measured_row(cell, ctx, "t", m)
    assert r.status == "ports-exhausted" and r.valid == 0
    assert r.throughput_rps == 9000 and r.latency_p50_ms == 0.2
    assert r.connections_opened == 10_000 and r.requests_per_connection == 1.0
    assert r.server_cpu_us_per_req == 50.0 and r.time_wait_sockets == 9000
    assert r.client_bound == 1 and r.client_cpu_pct == pytest.approx(90.0)
    assert "EADDRNOTAVAIL" in r.note and "time_wait server=9000" in r.note
    assert (
        "cores: server 1 50% busy (50% server), client 0 91% busy (90% client, 1.0% harness)"
        in r.note
    )


def _pooled_row(tmp_path: Path, samples: list[Sample]) -> ResultRow:
    ctx = _ctx(tmp_path)
    cell = next(c for c in ctx.config.cells() if c.mode is Mode.POOLED)
    result = replace(_result(Mode.POOLED, 10_000), error_kinds={})
    m = replace(_measurement(Mode.POOLED, samples, connections=116), result=result)
    return measured_row(cell, ctx, "t", m)


def test_a_crowded_server_core_makes_the_row_invalid(tmp_path: Path) -> None:
    quiet = _pooled_row(tmp_path, _samples(BUSY, server_core_rate=0.6))  # 10% foreign: fine
    assert (quiet.valid, quiet.client_bound, quiet.status) == (1, 1, "ok"), quiet.note
    crowded = _pooled_row(tmp_path, _samples(BUSY, server_core_rate=0.8))
    assert (crowded.valid, crowded.status) == (0, "ok")
    assert crowded.note.startswith("contended: server core 1 80% busy, 50% by the server")


def test_a_starved_client_is_client_bound(tmp_path: Path) -> None:
    calm = _pooled_row(tmp_path, _samples(BUSY, client_rate=0.3, client_core_rate=0.5))
    assert (calm.valid, calm.client_bound) == (1, 0), calm.note
    starved = _pooled_row(tmp_path, _samples(BUSY, client_rate=0.3, client_core_rate=0.95))
    assert (starved.valid, starved.client_bound, starved.client_cpu_pct) == (1, 1, 30.0)
    assert "client 0 95% busy (30% client" in starved.note


def _with_relay(samples: list[Sample], relay_rate: float) -> list[Sample]:
    """The same samples with a relay using `relay_rate` of a core while traffic flows (its time
    is on the client's core, already inside the samples' client-core busy time)."""
    out, relay = [], 0.0
    for k, sample in enumerate(samples):
        if k and sample.requests_served > samples[k - 1].requests_served:
            relay += relay_rate * 0.2
        out.append(replace(sample, relay_cpu_s=relay))
    return out


def test_the_relays_cpu_counts_toward_client_bound_never_the_server_core(tmp_path: Path) -> None:
    """50% client + 40% relay: client-bound (90%) even where the client's core total is not
    known (cores not pinned); pinned, the relay's time is on the client's core (91% busy) and
    the server's core (60% busy, 50% server) stays uncontended. On loopback: no relay column."""
    ctx = _ctx(tmp_path)
    cell = next(c for c in ctx.config.cells() if c.mode is Mode.POOLED)
    samples = _samples(BUSY, client_rate=0.5, client_core_rate=0.91, server_core_rate=0.6)
    result = replace(_result(Mode.POOLED, 10_000), error_kinds={})
    base = replace(
        _measurement(Mode.POOLED, _with_relay(samples, 0.4), connections=116), result=result
    )
    link = LinkStats(
        packets=1000, received=1000, drops_loss=0, drops_queue=0, unroutable=0,
        lateness_p50_us=100, lateness_p99_us=500, lateness_max_us=900.0, cpu_s=0.8,
        elapsed_s=2.0, raw={},
    )  # fmt: skip
    over_line = measured_row(cell, ctx, "t", replace(base, link=link))
    assert over_line.relay_cpu_pct == pytest.approx(40.0) and over_line.client_cpu_pct == 50.0
    assert (over_line.client_bound, over_line.valid) == (1, 1), over_line.note
    assert "client 0 91% busy (50% client, 40% relay, 1.0% harness)" in over_line.note
    assert "contended" not in over_line.note
    unpinned = replace(ctx, cores=Cores(-1, -1))
    alone = measured_row(cell, unpinned, "t", replace(base, link=link))
    assert (alone.client_bound, alone.relay_cpu_pct) == (1, pytest.approx(40.0))
    loopback = measured_row(cell, unpinned, "t", base)
    assert (loopback.relay_cpu_pct, loopback.client_bound) == (None, 0)


def test_monitor_poll_failures_reach_the_note(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    cell = next(c for c in ctx.config.cells() if c.mode is Mode.POOLED)
    m = _measurement(Mode.POOLED, _samples(BUSY), connections=116)
    m.monitor.control_errors, m.monitor.last_control_error = 2, "ControlError: timed out"
    r = measured_row(cell, ctx, "t", m)
    assert "2 monitor poll(s) failed (last: ControlError: timed out)" in r.note


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
    # no histograms: a median of per-row percentiles would be no percentile at all
    assert "0.400/1.000" not in uv and uv.split()[7:9] == ["-", "-"]
    st = next(line for line in lines if line.startswith("stdlib"))
    # an invalid row's throughput is not its mode's: shown as "-", flagged I
    assert "1,000" not in st and st.split()[-1] == "I" and " - " in st
    assert lines[-1].startswith("flags:")


def _hist(*us: int) -> str:
    hist = latency.new_histogram()
    for value in us:
        latency.record_us(hist, value)
    return latency.encode(hist)


def test_summary_says_what_a_reused_connection_saves_per_request() -> None:
    seq = dict(client="pyperf-sequential", concurrency=1)
    rows = [
        row(mode="pooled", throughput_rps=10_000.0, **seq),  # 100 us per request
        row(mode="unpooled", throughput_rps=4_000.0, **seq),  # 250 us per request
        row(mode="pooled", throughput_rps=30_000.0),
    ]
    text = summary_table(rows, [_hist(95, 100), _hist(240, 250), None])
    (headline,) = [line for line in text.splitlines() if line.startswith("pyperf-sequential ")]
    assert "100.0 us per request reused, 250.0 us with a new connection" in headline
    assert "reuse saves 150.0 us per request" in headline and "mean = 1e6 / req/s" in headline
    assert "p50 95 vs 240 us" in headline
    assert "saves" not in summary_table(rows[:1] + rows[2:])  # no unpooled twin: no headline


def test_progress_estimates_from_measured_cells() -> None:
    cells = build(quick=True, servers="uvloop").cells()
    now = [100.0]
    stream = io.StringIO()
    progress = Progress(cells, 10.0, stream=stream, clock=lambda: now[0])
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


def test_pinned_self_restores_the_previous_mask() -> None:
    before = os.sched_getaffinity(0)
    core = min(before)
    with pinned_self(core):
        assert os.sched_getaffinity(0) == {core}
    assert os.sched_getaffinity(0) == before
    with pinned_self(-1):
        assert os.sched_getaffinity(0) == before


def test_killed_clients_leave_no_hidden_files(tmp_path: Path) -> None:
    output = tmp_path / "001-cell.json"
    parts = tmp_path / ".001-cell.json.parts.abc"
    parts.mkdir()
    (parts / "worker-1.json").write_text("{}")
    (tmp_path / ".001-cell.json.x1y2.tmp").write_text("half")
    (tmp_path / "001-cell.client.log").write_text("log")
    remove_client_leftovers(output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["001-cell.client.log"]


def test_result_files_are_readable_by_everyone(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    write_atomic(path, "x\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_locust_run_time_is_rounded_up_and_the_window_set_exactly(tmp_path: Path) -> None:
    """Locust's --run-time takes whole seconds: 2 + 0.5 must not become 2 (banker's rounding)."""
    config = ClientConfig(
        kind=ClientKind.LOCUST_FASTHTTP, url="http://127.0.0.1:1", mode=Mode.POOLED,
        concurrency=2, duration_s=2.0, warmup_s=0.5, output=tmp_path / "r.json",
    )  # fmt: skip
    argv = config.command()
    assert argv[argv.index("-t") + 1] == "3s"
    assert argv[argv.index("--kab-duration") + 1] == "2.0"
    assert argv[argv.index("--kab-warmup") + 1] == "0.5"


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
        "run: python -m benchmarks.records.schema --update results/README.md"
    )
    assert set(COLUMN_DOCS) == set(COLUMNS)


# --- ceiling: the raw pyperf client against wrk ------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["--rounds", "0"], ["--warmup", "nan"], ["--warmup", "inf"], ["--duration", "0"],
     ["--duration", "1.5"], ["--connections", "0"], ["--keepalive-max", "-1"]],
)  # fmt: skip
def test_ceiling_bad_input_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        ceiling.parse_config(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{ceiling.PROG}: error:")


def test_ceiling_report_is_the_ratio_of_the_medians() -> None:
    config = ceiling.parse_config(["--rounds", "3"])
    rounds = [
        ceiling.Round(1, 100_000.0, 92_000.0, ""),
        ceiling.Round(2, 110_000.0, 93_000.0, ""),
        ceiling.Round(3, 120_000.0, None, "pyperf-concurrent-raw failed (status 1): x"),
    ]
    assert [r.first for r in rounds] == ["wrk", "pyperf-concurrent-raw", "wrk"]  # alternating
    assert ceiling.medians(rounds) == (105_000.0, 92_500.0, pytest.approx(92_500 / 105_000))
    text = ceiling.format_report(config, rounds)
    assert "0.92" in text and "0.85" in text and "failed (status 1)" in text
    assert text.splitlines()[-1].endswith("target >= 0.9 not met")
    fast = [ceiling.Round(1, 100_000.0, 95_000.0, "")]
    assert ceiling.format_report(config, fast).endswith("target >= 0.9 met")
    assert ceiling.medians([rounds[2]]) == (None, None, None)


def test_ceiling_needs_two_cores_and_a_writable_results_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ceiling, "find_wrk", lambda: "/usr/bin/wrk")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    config = ceiling.parse_config(["--results-dir", str(a_file)])
    monkeypatch.setattr(ceiling, "choose_cores", lambda: Cores(-1, -1))
    assert "needs two cores" in str(ceiling.preflight(config, FP))
    monkeypatch.setattr(ceiling, "choose_cores", lambda: Cores(1, 0))
    assert str(ceiling.preflight(config, FP)).startswith(f"--results-dir {a_file}:")
    good = ceiling.parse_config(["--results-dir", str(tmp_path)])
    checked = ceiling.preflight(good, FP)
    assert not isinstance(checked, str), checked  # a str is the reason it cannot run
    cores, path = checked
    assert cores == Cores(1, 0) and path.parent == tmp_path / "host1"
    assert path.name.startswith("ceiling-") and path.name.endswith("-abc1234.json")


def test_kill_tree_reaps_a_child_orphaned_by_its_client(tmp_path: Path) -> None:
    """The client dies on SIGTERM at once, its child 0.3 s later (as a pyperf worker may): the
    child is orphaned, adopted by the harness and reaped by kill_tree, so no /proc entry of it
    (not even a zombie waiting for init) is left when kill_tree returns."""
    script = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import signal, sys, time; "
        "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(0.3), sys.exit(0))); "
        "print(1, flush=True); time.sleep(60)']); time.sleep(60)"
    )
    with procs.adopting_orphans(), (tmp_path / "log").open("wb") as log:
        client = ClientProcess([sys.executable, "-c", script], core=-1, log=log)
        deadline = time.monotonic() + 10
        while (tmp_path / "log").read_text() == "" and time.monotonic() < deadline:
            time.sleep(0.05)
        (root, child) = client.remember_tree()
        client.kill_tree()
        assert not child.is_running(), child.status()  # is_running: a zombie is running
        assert client.proc.returncode == -signal.SIGTERM


def test_descendants_walks_the_tree_parents_first() -> None:
    """The monitor's per-sample tree walk (/proc/PID/task/TID/children), against real processes."""
    from benchmarks.harness.procs import descendants

    script = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'input()'])"
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            pids = descendants(proc.pid)
            if pids is None:
                pytest.skip("the kernel has no /proc/PID/task/TID/children")
            if len(pids) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert pids[0] == proc.pid and len(pids) == 2
        assert psutil.Process(pids[1]).ppid() == proc.pid
    finally:
        proc.communicate(b"\n", timeout=30)
    assert descendants(proc.pid) == []


def test_tls_handshakes_must_be_the_kind_the_client_claims() -> None:
    def judge(resuming: bool, mode: Mode, handshakes: int, resumed: int, client: int = -1):
        return rules.judge_tls(
            resuming=resuming, mode=mode, load_processes=3, handshakes=handshakes,
            resumed=resumed, client_resumed=client,
        )  # fmt: skip

    assert judge(False, Mode.UNPOOLED, 500, 0).valid
    assert "not the full handshakes" in judge(False, Mode.UNPOOLED, 500, 1).reason
    assert judge(True, Mode.UNPOOLED, 500, 497, client=497).valid  # each process's first: full
    assert "were not resumed" in judge(True, Mode.UNPOOLED, 500, 400, client=400).reason
    assert "the server 497" in judge(True, Mode.UNPOOLED, 500, 497, client=0).reason
    assert judge(True, Mode.POOLED, 5, 2, client=2).valid  # reconnects after the max resume
