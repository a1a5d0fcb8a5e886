"""`make conformance-report` (benchmarks/conformance/cli.py, tests/conformance_outcomes.py): the
table from outcomes, the plugin on one real case, and bad input. The full report against nginx
and Node is not run here (minutes; a report, not a gate)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.conformance import cli
from benchmarks.conformance.cli import Outcome, cell, render, row_order

REPO = Path(__file__).resolve().parent.parent


def _o(server: str, case: str, outcome: str = "passed", **kw: object) -> Outcome:
    fields: dict[str, object] = {"subcase": "", "tls": False, "message": "", "header": ""}
    fields.update(kw)
    return Outcome(server=server, case=case, outcome=outcome, **fields)  # type: ignore[arg-type]


def test_cells() -> None:
    assert cell([_o("nginx", "KA-01")]) == "pass"
    assert cell([_o("nginx", "KA-01", header="timeout=1")]) == "pass*"
    assert cell([_o("aiohttp", "PIPE-02", "xfailed")]) == "deviation"
    subcases = [_o("node", "ERR-08", subcase=v) for v in ("HTTP/1", "HTTP/1.2")]
    subcases[1] = _o("node", "ERR-08", "failed", subcase="HTTP/1.2")
    assert cell(subcases) == "**differs** [HTTP/1.2]"
    assert cell([_o("node", "KA-01", "error")]) == "error"


def test_rows_in_spec_order_tls_after_plain() -> None:
    rows = ["ROB-01", "KA-02", "KA-01 (TLS)", "IDLE-01", "KA-01", "MAX-04"]
    assert sorted(rows, key=row_order) == [
        "KA-01", "KA-01 (TLS)", "KA-02", "MAX-04", "IDLE-01", "ROB-01",
    ]  # fmt: skip


def test_render_table_and_notes() -> None:
    outcomes = [
        _o("uvloop", "KA-01"),
        _o("nginx", "KA-01", header="timeout=1"),
        _o("uvloop", "IDLE-01", tls=True),
        _o("nginx", "IDLE-01", tls=True, test="test_a"),
        _o(
            "nginx", "IDLE-01", "failed", tls=True, message="closed after 2.00 s | x", test="test_b"
        ),
    ]
    text = render(outcomes, ["uvloop", "nginx"])
    lines = text.splitlines()
    assert lines[:4] == [
        "| case | uvloop | nginx |",
        "| --- | --- | --- |",
        "| KA-01 | pass | pass* |",
        "| IDLE-01 (TLS) | pass | **differs** |",
    ]
    assert "Rows passed as the spec says: uvloop 2/2, nginx 1/2." in text
    assert "it sent `timeout=1`" in text
    assert "- IDLE-01 (TLS) (test_b): closed after 2.00 s \\| x" in text  # two tests, one row


def test_bad_servers_is_one_line_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "conformance-report", "--servers", "apache"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "unknown 'apache'" in done.stderr


def test_plugin_records_one_real_case(tmp_path: Path) -> None:
    out = tmp_path / "outcomes.json"
    env = {**os.environ, "KAB_TEST_SERVERS": "uvloop", "KAB_CONFORMANCE_OUTCOMES": str(out)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conformance_outcomes",
         "-p", "no:cacheprovider", "tests/test_conformance_persistence.py",
         "-k", "ka01 or ka02"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    records = json.loads(out.read_text())
    assert sorted((r["server"], r["case"], r["outcome"]) for r in records) == [
        ("uvloop", "KA-01", "passed"), ("uvloop", "KA-02", "passed"),
    ]  # fmt: skip
    assert [Outcome.of(r).row for r in records]  # the report reads what the plugin writes
    assert cli.DEFAULT_SERVERS[-2:] == ("nginx", "node")
