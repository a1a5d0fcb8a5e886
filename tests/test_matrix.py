"""benchmarks.matrix: every place a dimension reaches is derived from its one definition.

The flags of `run`, the make variables, what bench-compare and noise forward, the CSV columns and
their order, compare's cell key and labels, and the server and client options of a cell.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.analysis import rounds
from benchmarks.analysis.rounds import result_csvs
from benchmarks.clients.contract import ClientKind, Mode
from benchmarks.harness import cli
from benchmarks.harness.config import build
from benchmarks.matrix import (
    DIMENSION_COLUMNS,
    DIMENSIONS,
    RUN_SETTINGS,
    CellKey,
    Reach,
    flag_make_var,
    forwarded,
)
from benchmarks.records import schema
from benchmarks.records.schema import COLUMNS, SchemaError, read_rows
from servers.options import ServerName, TlsVersion
from tests.server_pool import REPO

# The header of every committed CSV: a dimension must never reorder or rename them.
COMMITTED_HEADER = (
    "schema_version,run_id,started_utc,git_commit,host_id,cpu_model,cpu_count,kernel,"
    "python_version,packages,server,client,mode,tls,concurrency,keepalive_timeout_s,"
    "keepalive_max,rtt_ms,loss_pct,bandwidth_mbit,duration_s,repetition,server_core,client_core,requests,errors,throughput_rps,"
    "latency_p50_ms,latency_p90_ms,latency_p99_ms,latency_p999_ms,latency_max_ms,"
    "client_cpu_pct,server_cpu_s,server_cpu_us_per_req,server_cpu_pct,connections_opened,"
    "requests_per_connection,peak_open_connections,open_sockets,time_wait_sockets,"
    "link_lateness_p50_us,link_lateness_p99_us,link_packets,link_drops,"
    "client_bound,valid,status,note"
)
KEY = CellKey("uvloop", "pyperf-concurrent-raw", "pooled", "none", 16, 5.0, 100)


# Columns added since, at the end (older files read without them)
ADDED_COLUMNS = ("target_url", "rate_rps")
# Schema 3's columns, each beside its kind (phases by the latencies, the run-wide count by the
# window's, the relay's CPU by the link's figures); files of schema 1 and 2 read without them.
SCHEMA_3_COLUMNS = {
    "latency_max_ms": ("connect_p50_ms", "tls_p50_ms", "ttfb_p50_ms"),
    "connections_opened": ("connections_opened_run",),
    "link_drops": ("relay_cpu_pct",),
}


def test_columns_are_the_committed_ones_in_order() -> None:
    expected: list[str] = []
    for name in [*COMMITTED_HEADER.split(","), *ADDED_COLUMNS]:
        expected += [name, *SCHEMA_3_COLUMNS.get(name, ())]
    assert ",".join(COLUMNS) == ",".join(expected)


def test_every_committed_run_still_reads() -> None:
    csvs = sorted(result_csvs(REPO / "results"))
    assert csvs, "no committed runs found"
    for path in csvs:
        assert read_rows(path), path


def _make_lists() -> dict[str, list[str]]:
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    found = dict(re.findall(r"^(BENCH_VALUES|BENCH_SWITCHES)\s*:=\s*(.*)$", text, re.M))
    return {name: value.split() for name, value in found.items()}


def test_the_makefile_lists_every_forwarded_flag() -> None:
    lists = _make_lists()
    values = [flag_make_var(f) for f, takes in forwarded() if takes]
    switches = [flag_make_var(f) for f, takes in forwarded() if not takes]
    assert [d.make_var for d in DIMENSIONS] == [flag_make_var(d.flag) for d in DIMENSIONS]
    assert sorted(lists["BENCH_VALUES"]) == sorted(values)
    assert sorted(lists["BENCH_SWITCHES"]) == sorted(switches)


def test_make_turns_each_variable_into_its_flag() -> None:
    assigned = {flag_make_var(f): "7" for f, _ in forwarded()}
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "bench", *(f"{k}={v}" for k, v in assigned.items())],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    command = done.stdout.strip().splitlines()[-1]
    for flag, takes_value in forwarded():
        assert f" {flag} 7" in command if takes_value else f" {flag}" in command, flag
    assert command.count(" --") == len(forwarded())


def test_run_bench_compare_and_noise_take_the_same_flags() -> None:
    """Every forwarded flag is one of run's, and rounds forwards exactly them."""
    run_flags = {a for action in cli.build_parser()._actions for a in action.option_strings}
    assert {flag for flag, _ in forwarded()} <= run_flags
    assert set(rounds.SWITCH_FLAGS) | set(rounds.VALUE_FLAGS) == {f for f, _ in forwarded()}
    assert [s.flag for s in RUN_SETTINGS] == [f for f, _ in forwarded()][len(DIMENSIONS) :]


def test_a_dimension_flag_reaches_the_cell_key() -> None:
    args, config = cli.parse_config(
        ["--servers", "aiohttp", "--clients", "pyperf-sequential", "--keepalive-max", "0,7",
         "--keepalive-timeout", "1.5", "--tls", "1", "--modes", "pooled"]
    )  # fmt: skip
    keys = [c.key for c in config.cells()]
    assert (
        keys
        == [
            CellKey("aiohttp", "pyperf-sequential", "pooled", "1.3", 1, 1.5, 0),
            CellKey("aiohttp", "pyperf-sequential", "pooled", "1.3", 1, 1.5, 7),
        ]
        * 2
    )  # two repetitions; the sequential client holds one connection: concurrency 1
    assert keys[0].label() == "aiohttp/pyperf-sequential/pooled tls=1.3 c=1 kt=1.5 km=0"


def test_cells_vary_the_mode_fastest() -> None:
    cells = build(quick=True, servers="uvloop", concurrency="1,2").cells()
    assert [(c.key.concurrency, c.mode) for c in cells[:4]] == [
        (1, Mode.POOLED), (1, Mode.UNPOOLED), (2, Mode.POOLED), (2, Mode.UNPOOLED),
    ]  # fmt: skip


def test_labels_slugs_and_options() -> None:
    assert KEY.label() == "uvloop/pyperf-concurrent-raw/pooled c=16 kt=5 km=100"
    assert KEY.slug() == "uvloop-pyperf-concurrent-raw-pooled-c16-kt5-km100"
    on = replace(KEY, tls="1.2", keepalive_max=1_000_000)
    assert on.label() == "uvloop/pyperf-concurrent-raw/pooled tls=1.2 c=16 kt=5 km=1000000"
    assert on.slug() == "uvloop-pyperf-concurrent-raw-pooled-tls1.2-c16-kt5-km1000000"
    assert on.options(Reach.SERVER)["tls_version"] is TlsVersion.TLS12
    assert KEY.settings(only=["keepalive_timeout_s"]) == "kt=5"
    assert KEY.options(Reach.SERVER) == {
        "name": ServerName.UVLOOP, "tls": False, "tls_version": None, "keepalive_timeout_s": 5.0,
        "keepalive_max": 100,
    }  # fmt: skip
    assert KEY.options(Reach.CLIENT) == {
        "kind": ClientKind.PYPERF_CONCURRENT_RAW, "mode": Mode.POOLED, "concurrency": 16,
        "rate_rps": 0.0,
    }  # fmt: skip
    assert type(KEY.options(Reach.SERVER)["name"]) is ServerName  # a CSV's text -> the enum


def test_every_dimension_is_a_column_with_a_flag_and_a_default() -> None:
    for d in DIMENSIONS:
        assert d.column in COLUMNS and d.flag.startswith("--") and d.doc
        assert d.default(), d.column
    assert tuple(d.column for d in DIMENSIONS) == DIMENSION_COLUMNS


ANALYSIS = (
    "benchmarks.analysis.compare", "benchmarks.analysis.noise", "benchmarks.analysis.rule",
    "benchmarks.analysis.rounds", "benchmarks.analysis.bench_compare",
    "benchmarks.analysis.plots", "benchmarks.records.schema", "benchmarks.records.keys",
    "benchmarks.records.layout", "benchmarks.records.pack", "benchmarks.matrix",
)  # fmt: skip


def test_the_analysis_never_imports_servers() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {ANALYSIS!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'servers')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--servers", "apache"],
            "--servers: unknown 'apache' (choose from stdlib, aiohttp, uvloop, nginx, node)",
        ),
        (["--keepalive-max", "-1"], "--keepalive-max must be >= 0, got -1"),
        (["--concurrency", "2,x"], "--concurrency: bad value 'x'"),
    ],
)
def test_a_bad_item_is_named_by_its_dimension(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_config(argv)
    assert info.value.code == 2
    assert capsys.readouterr().err == f"python -m benchmarks run: error: {message}\n"


def test_a_csv_older_than_a_dimension_reads_with_its_before_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a new dimension's `before=` buys: the committed runs, written without its column,
    still read (here keepalive_max plays the new dimension). Without it, such a file is
    refused."""
    with (REPO / "tests" / "fixtures" / "handwritten.csv").open(newline="") as fh:
        records = list(csv.reader(fh))
    at = records[0].index("keepalive_max")
    path = tmp_path / "old.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([f for i, f in enumerate(r) if i != at] for r in records)
    with pytest.raises(SchemaError, match="missing: keepalive_max"):
        read_rows(path)
    monkeypatch.setitem(schema._BEFORE, "keepalive_max", 100)
    assert {r.key.keepalive_max for r in read_rows(path)} == {100}


def test_tls_is_a_list_of_versions_and_old_switch_values_read_as_before(tmp_path: Path) -> None:
    """`--tls none,1.2,1.3`; 0 and 1 (the switch's values, in committed CSVs and `TLS=1`) mean
    none and 1.3, so older rows still group with new ones."""
    _, config = cli.parse_config(["--servers", "uvloop", "--tls", "none,1.2,1.3,1,0"])
    assert config.values("tls") == ("none", "1.2", "1.3")
    with (REPO / "tests" / "fixtures" / "handwritten.csv").open(newline="") as fh:
        records = list(csv.reader(fh))
    at = records[0].index("tls")
    records[1][at], records[2][at] = "0", "1"
    path = tmp_path / "switch.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(records[:3])
    assert [r.key.tls for r in read_rows(path)] == ["none", "1.3"]
    records[1][at] = "1.1"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(records[:3])
    with pytest.raises(SchemaError, match="bad value for tls: '1.1'"):
        read_rows(path)


def test_a_rate_reaches_the_open_loop_client_only() -> None:
    """RATE is one dimension: open-loop cells at each rate (1000/s when none is given), closed-loop
    cells once, at 0; the cell's ClientConfig options carry it, its label shows it."""
    clients = "pyperf-openloop,pyperf-concurrent-raw"
    cells = build(quick=True, servers="uvloop", modes="pooled", clients=clients,
                  rate="500,3000").cells()  # fmt: skip
    keys = [(c.key.client, c.key.rate_rps) for c in cells]
    assert keys == [("pyperf-openloop", 500.0), ("pyperf-openloop", 3000.0),
                    ("pyperf-concurrent-raw", 0.0)]  # fmt: skip
    assert cells[0].key.options(Reach.CLIENT)["rate_rps"] == 500.0
    assert cells[0].key.label().endswith("rate=500") and "rate" not in cells[2].key.label()
    (default,) = build(quick=True, servers="uvloop", modes="pooled",
                       clients="pyperf-openloop").cells()  # fmt: skip
    assert default.key.rate_rps == 1000.0
