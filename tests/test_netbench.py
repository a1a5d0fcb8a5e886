"""The harness over the delay line (issue 10): --rtt/--loss/--bandwidth, schema 2's link columns,
version-1 files read as loopback rows.

The end-to-end cell needs root, /dev/net/tun and `ip`; without them it is skipped with the
reason. Only lower bounds of physics are asserted: a request over a 20 ms round trip never takes
less than 20 ms.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness import config as cfgmod
from benchmarks.matrix import CellKey, by_column
from benchmarks.records.schema import COLUMNS, SCHEMA_VERSION, format_rows, read_rows
from tests.rowfactory import row
from tests.test_net import needs_line

ROOT = Path(__file__).resolve().parent.parent
V2_ONLY = (
    "rtt_ms", "loss_pct", "bandwidth_mbit", "link_lateness_p50_us", "link_lateness_p99_us",
    "link_packets", "link_drops",
)  # fmt: skip
V3_ONLY = ("connect_p50_ms", "tls_p50_ms", "ttfb_p50_ms", "connections_opened_run", "relay_cpu_pct")


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rtt", "abc"], "--rtt: bad value 'abc'"),
        (["--rtt", "-5"], "--rtt must be `none` or a number of ms >= 0, got -5"),
        (["--rtt", "20,"], "--rtt: empty value"),
        (["--loss", "1"], "--loss needs --rtt (the delay line), not loopback"),
        (["--bandwidth", "10"], "--bandwidth needs --rtt (the delay line), not loopback"),
        (["--rtt", "20", "--loss", "-1"], "--loss must be a number of % >= 0, got -1"),
        (["--rtt", "20", "--bandwidth", "x"], "--bandwidth: bad value 'x'"),
    ],
)
def test_bad_link_flags_are_one_line_exit_2(args, message):
    proc = _run(*args)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert message in last and "Traceback" not in proc.stderr


def test_rtt_values_none_is_loopback_and_zero_is_the_line():
    config = cfgmod.build(quick=True, rtt="none,0,20", loss="0,1", servers="uvloop",
                          clients="pyperf-sequential", modes="pooled")  # fmt: skip
    keys = [c.key for c in config.cells()]
    # loopback has no loss: its two loss values collapse into one cell
    assert [(k.rtt_ms, k.loss_pct) for k in keys] == [
        (None, 0.0), (0.0, 0.0), (0.0, 1.0), (20.0, 0.0), (20.0, 1.0),
    ]  # fmt: skip
    assert config.uses_line
    loopback, line = keys[0], keys[3]
    assert "rtt" not in loopback.label() and "rtt" not in loopback.slug()
    assert line.label().endswith("rtt=20") and line.slug().endswith("-rtt20")
    assert by_column("rtt_ms").parse("NONE") is None


def _older_text(rows_text: str, version: int) -> str:
    """A schema-3 CSV as an older version wrote it: without the columns added since."""
    reader = csv.DictReader(io.StringIO(rows_text))
    dropped = V3_ONLY if version == 2 else (*V2_ONLY, *V3_ONLY)
    columns = [c for c in COLUMNS if c not in dropped]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in reader:
        writer.writerow({**record, "schema_version": str(version)})
    return out.getvalue()


def _v1_text(rows_text: str) -> str:
    """A CSV as version 1 wrote it: no link columns, version 1."""
    return _older_text(rows_text, 1)


def test_versions_1_and_2_read_with_their_run_wide_count_and_no_phases(tmp_path):
    """Before schema 3 `connections_opened` counted the client's whole run: it reads into
    connections_opened_run too; the phases and the relay's CPU were not measured (empty)."""
    for version in (1, 2):
        path = tmp_path / f"v{version}.csv"
        path.write_text(_older_text(format_rows([row(connections_opened=6207)]), version))
        (back,) = read_rows(path)
        assert (back.connections_opened, back.connections_opened_run) == (6207, 6207)
        assert (back.connect_p50_ms, back.tls_p50_ms, back.ttfb_p50_ms) == (None, None, None)
        assert back.relay_cpu_pct is None and back.schema_version == SCHEMA_VERSION


def test_schema_3_file_without_its_phase_columns_is_refused(tmp_path):
    text = _older_text(format_rows([row()]), 2).replace("\n2,", "\n3,")
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(Exception, match="schema 3 file without its connect_p50_ms"):
        read_rows(path)


def test_version_1_file_reads_as_loopback_rows(tmp_path):
    path = tmp_path / "v1.csv"
    path.write_text(_v1_text(format_rows([row(), row(repetition=2)])))
    rows = read_rows(path)
    assert len(rows) == 2
    for r in rows:
        assert r.key.rtt_ms is None and r.key.loss_pct == 0.0 and r.key.bandwidth_mbit == 0.0
        assert r.link_packets is None and r.link_lateness_p50_us is None
        assert r.schema_version == SCHEMA_VERSION
    assert rows[0].key == row().key  # the same cell as a loopback row of today


def test_schema_2_round_trips_link_columns(tmp_path):
    path = tmp_path / "v2.csv"
    r = row(rtt_ms=20.0, loss_pct=1.0, link_packets=10, link_drops=1, link_lateness_p50_us=40.0,
            link_lateness_p99_us=300.0)  # fmt: skip
    path.write_text(format_rows([r, row()]))
    text = path.read_text().splitlines()
    header = text[0].split(",")
    at = header.index("link_lateness_p50_us")
    assert header[at : at + 6] == [
        "link_lateness_p50_us", "link_lateness_p99_us", "link_packets", "link_drops",
        "relay_cpu_pct", "client_bound",
    ]  # fmt: skip
    assert text[2].split(",")[at : at + 5] == ["", "", "", "", ""]  # loopback: empty
    back = read_rows(path)
    assert back == [r, row()]
    assert isinstance(back[0].key, CellKey) and back[0].key.rtt_ms == 20.0


def test_schema_2_file_without_link_columns_is_refused(tmp_path):
    text = _v1_text(format_rows([row()])).replace("\n1,", "\n2,")
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(Exception, match="schema 2 file without its link_"):
        read_rows(path)


@needs_line
def test_a_cell_at_rtt_20_through_the_harness(tmp_path):
    proc = _run(
        "--quick", "--rtt", "20", "--servers", "uvloop", "--clients", "pyperf-sequential",
        "--modes", "pooled", "--duration", "0.5", "--warmup", "0.2", "--results-dir",
        str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    [csv_path] = [p for p in tmp_path.glob("*/*.csv")]
    [r] = read_rows(csv_path)
    assert r.status == "ok", r.note
    assert r.key.rtt_ms == 20.0
    assert r.link_packets is not None and r.link_packets > 0
    assert r.latency_p50_ms >= 20.0  # a round trip is the lower bound of a request
    assert "delay line: relay on" in r.note


@needs_line
def test_a_tls_cell_at_rtt_20_resumes_and_pays_its_round_trips(tmp_path):
    """TLS 1.3 over the line, a new connection per request resuming the last session: the
    server (bound to the namespace's address, its certificate naming it) resumed them as the
    client claims (else the note would say so), and each request took at least its three round
    trips: TCP's handshake, TLS's (resumed or not, one under 1.3), the request itself."""
    proc = _run(
        "--quick", "--tls", "1.3", "--rtt", "20", "--servers", "uvloop", "--clients",
        "pyperf-sequential-resume", "--modes", "unpooled", "--duration", "0.5", "--warmup",
        "0.2", "--results-dir", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    [csv_path] = [p for p in tmp_path.glob("*/*.csv")]
    [r] = read_rows(csv_path)
    assert r.status == "ok", r.note
    assert (r.key.tls, r.key.rtt_ms) == ("1.3", 20.0)
    assert "resum" not in r.note, r.note  # judge_tls found the handshakes as claimed
    assert r.connections_opened >= r.requests > 0
    assert r.latency_p50_ms >= 3 * 20.0
