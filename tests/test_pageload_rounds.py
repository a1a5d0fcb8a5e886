"""The page-load scenario in bench-compare and noise: the orchestration, with a fake scenario.

No page is loaded here (`bench-compare --scenario pageload` for real is in the README, run by
hand): a fake `python -m benchmarks pageload` copies committed rows into its --results-dir, so
the flag forwarding, the one-line refusals, the interleaved rounds, the judging (compare's rule
and noise floor) and the A/A noise file are checked as they run.
"""

from __future__ import annotations

import json
import stat
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from benchmarks.analysis import bench_compare as benchcompare
from benchmarks.analysis import noise as bench_noise
from benchmarks.analysis import rule as ruleconfig
from benchmarks.analysis.compare import main as compare_main
from benchmarks.analysis.rounds import RoundError, Side
from benchmarks.pageload import compare as pages
from benchmarks.pageload import noise as page_noise
from benchmarks.pageload import rounds
from benchmarks.pageload.rows import PageLoadRow, read_rows, write_rows
from benchmarks.records.keys import PAGE_METRICS

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = sorted((ROOT / "results").glob("*/pageload-*.csv"))


def committed_rows() -> list[PageLoadRow]:
    assert COMMITTED, "a committed page-load run"
    return read_rows(COMMITTED[-1])


def parse(argv: list[str]) -> Any:
    return benchcompare.build_parser("pageload").parse_args(["--base", "HEAD", *argv])


def test_the_scenarios_flags_pass_through_with_one_repetition_by_default() -> None:
    flags = [f for f, _, _ in rounds.forwarded()]
    assert {"--quick", "--rtt", "--clients", "--resources", "--tls", "--repeat"} <= set(flags)
    assert not {"--results-dir", "--no-plot", "--help"} & set(flags)
    argv = rounds.scenario_args(parse(["--quick", "--clients", "python", "--rtt", "20,50"]))
    assert argv == ["--quick", "--clients", "python", "--rtt", "20,50", "--repeat", "1"]
    assert rounds.scenario_args(parse(["--repeat", "3"])) == ["--repeat", "3"]
    cmd = rounds.run_command(Side("new", Path("/t"), Path("/py")), argv, Path("/o"))
    assert cmd[:4] == ["/py", "-m", "benchmarks", "pageload"]
    assert cmd[-3:] == ["--results-dir", "/o", "--no-plot"]


FAKE_SCENARIO = """#!{python}
# Stands in for `python -m benchmarks pageload`: --help lists {flags}; a run copies rows.
import shutil, sys
from pathlib import Path
args = sys.argv[4:]
if "--help" in args:
    print("usage: pageload {flags}")
    sys.exit(0)
dest = Path(args[args.index("--results-dir") + 1]) / "host"
dest.mkdir(parents=True, exist_ok=True)
shutil.copy({source!r}, dest / "pageload-20260101T000000Z-fake.csv")
"""


def fake_side(tmp_path: Path, name: str, flags: str, rows: list[PageLoadRow]) -> Side:
    folder = tmp_path / name
    folder.mkdir()
    source = folder / "rows.csv"
    write_rows(source, rows)
    exe = folder / "fakepython"
    exe.write_text(FAKE_SCENARIO.format(python=sys.executable, flags=flags, source=str(source)))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return Side(name, folder, exe)


ALL_FLAGS = "--quick --clients --rtt --repeat --results-dir --no-plot"


def test_a_ref_whose_scenario_lacks_a_flag_is_refused_in_one_line(tmp_path: Path) -> None:
    rows = committed_rows()
    side = fake_side(tmp_path, "base", ALL_FLAGS, rows)
    rounds.check_scenario(side, ["--quick", "--rtt", "50"])
    with pytest.raises(RoundError, match=r"does not take --loads \(that commit predates it\)$"):
        rounds.check_scenario(side, ["--loads", "3"])
    old = fake_side(tmp_path, "old", "--quick --results-dir", rows)  # before --no-plot
    with pytest.raises(RoundError, match="does not take --no-plot"):
        rounds.check_scenario(old, [])
    none = tmp_path / "false"
    none.write_text("#!/bin/sh\nexit 2\n")
    none.chmod(0o755)
    with pytest.raises(RoundError, match="no page-load scenario at that commit"):
        rounds.check_scenario(Side("base", tmp_path, none), [])
    with pytest.raises(RoundError, match="wrote no CSV"):
        rounds.run_round(Side("base", tmp_path, none), [], tmp_path / "out")


def slower(rows: list[PageLoadRow], factor: float) -> list[PageLoadRow]:
    return [replace(r, page_load_p50_ms=r.page_load_p50_ms * factor,
                    page_load_p90_ms=r.page_load_p90_ms * factor) for r in rows]  # fmt: skip


def test_interleaved_rounds_of_a_slower_tree_are_a_regression(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Three rounds a side through the page-load runner; the candidate's pages load 30%
    slower in every cell and round: every valid cell regresses, exit 1."""
    base_rows = [r for r in committed_rows() if r.repetition == 1 and r.client == "python"]
    sides = [
        fake_side(tmp_path, "base", ALL_FLAGS, base_rows),
        fake_side(tmp_path, "new", ALL_FLAGS, slower(base_rows, 1.3)),
    ]
    runner = benchcompare.runner_for("pageload")
    written = benchcompare.run_interleaved(
        sides, ["--quick", "--repeat", "1"], 3, True, tmp_path / "runs", runner
    )
    assert [len(written[s.name]) for s in sides] == [3, 3]
    assert "round 2: new" in capfd.readouterr().err  # a round's output goes to stderr
    base, new = runner.read_all(written["base"]), runner.read_all(written["new"])
    args = parse(["--noise", "none"])
    assert pages.judge(base, new, args, "bench-compare") == 1
    out = capfd.readouterr().out
    valid_cells = len(pages.cells([r for r in base_rows if r.valid]))
    assert out.count("REGRESSION") == 2 * valid_cells
    assert pages.judge(base, base, args, "bench-compare") == 0


def test_bench_compare_main_judges_and_saves_page_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main's page-load path after the rounds: the rows saved under names compare recognises,
    the packages fingerprint ignored (and said) when the base had its own venv."""
    rows = committed_rows()
    new = [replace(r, packages="other") for r in slower(rows, 1.3)]
    monkeypatch.setattr(benchcompare, "measure_in_worktree", lambda *a, **k: (rows, new, False))
    argv = ["--scenario", "pageload", "--base", "HEAD", "--quick", "--save", str(tmp_path),
            "--noise", "none"]  # fmt: skip
    assert benchcompare.main(argv) == 1
    out, err = capsys.readouterr()
    assert "REGRESSION" in out and "ignoring the packages fingerprint" in err
    assert "thresholds: p50 10%, p90 20%" in err
    saved = tmp_path / "pageload-new.csv"
    assert pages.is_pageload_csv(saved) and len(read_rows(saved)) == len(rows)
    renamed = tmp_path / "new.csv"
    saved.rename(renamed)
    assert pages.is_pageload_csv(renamed)  # by its header


def noisy_rounds(rows: list[PageLoadRow], n: int) -> list[list[PageLoadRow]]:
    """n A/A rounds of the first repetition, each cell off by a fixed +-2% pattern."""
    first = [r for r in rows if r.repetition == 1]
    moves = [1.0, 1.02, 0.99, 1.01, 0.98, 1.0]
    return [
        [replace(r, run_id=f"run-{i}", started_utc=f"2026-01-01T00:00:0{i}Z")
         for r in slower(first, moves[i % len(moves)])]
        for i in range(n)
    ]  # fmt: skip


def test_page_load_noise_floor_is_written_and_used_by_compare_per_client_for_page_rows_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    per_round = noisy_rounds(committed_rows(), 4)
    rule = ruleconfig.Rule(thresholds={m.column: m.default_threshold for m in PAGE_METRICS})
    summary: dict[str, Any] = page_noise.summarize(per_round, rule, ["--quick"])
    assert summary["scenario"] == "pageload" and summary["rounds"] == 4
    floor = summary["false_positives"]["page_load_p50_ms"]["suggested_threshold"]
    assert 0.02 <= floor <= 0.05  # the rounds move by at most 4% between each other
    assert "page_load_p90_ms" in page_noise.format_summary(summary)
    host = per_round[0][0].host_id
    results = tmp_path / "results"
    path = page_noise.save(summary, per_round, results)
    assert path.parent == results / host and path.name.startswith("noise-pageload-")
    assert len(page_noise.rounds_from_csv(path.with_suffix(".csv"))) == 4
    # compare finds it for page-load rows (a floor raised above 10% shows as "(floor)") ...
    data = json.loads(path.read_text())
    assert set(data["by_client"]) == {"chromium", "python"}
    data["false_positives"]["page_load_p50_ms"]["suggested_threshold"] = 0.15
    data["by_client"]["chromium"]["false_positives"]["page_load_p90_ms"]["suggested_threshold"] = (
        0.4
    )
    path.write_text(json.dumps(data))
    base_csv, new_csv = tmp_path / "pageload-a.csv", tmp_path / "pageload-b.csv"
    write_rows(base_csv, per_round[0] + per_round[1])
    write_rows(new_csv, per_round[2] + per_round[3])
    assert compare_main([str(base_csv), str(new_csv), "--results-dir", str(results)]) == 0
    err = capsys.readouterr().err
    assert f"noise: {path}" in err or path.name in err
    assert "thresholds: p50 15% (floor), p90 20%;" in err  # the file's, for other clients
    assert "chromium: p50 10%, p90 40% (floor); python: p50 10%, p90 20%" in err  # their own
    # each cell against its client's floor: Chromium's 40% p90 floor is not the Python client's
    floor = ruleconfig.resolve_floor(str(path), results, per_round[0], (), PAGE_METRICS,
                                     "pageload")  # fmt: skip
    two = slower(per_round[0], 1.3)
    verdicts, _, _ = pages.compare_pages(per_round[0] + per_round[1], two + two, None, floor)
    p90: dict[str, set[str]] = {}
    for v in verdicts:
        if v.metric.column == "page_load_p90_ms" and v.cell.resources == 70:
            p90.setdefault(v.cell.client, set()).add(v.decision.verdict)
    assert p90 == {"python": {"regression"}, "chromium": {"no change"}}
    # ... and the bench rows' lookup passes it by: another scenario's floor is no floor there
    bench_rows: Any = per_round[0]
    found = ruleconfig.newest_matching(results, bench_rows, ())
    assert found.source == "" and found.floors == {}
    with pytest.raises(ruleconfig.SchemaError, match="a noise file of pageload runs"):
        ruleconfig.resolve_floor(str(path), results, bench_rows, ())


def test_noise_main_rereads_a_page_load_noise_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    per_round = noisy_rounds(committed_rows(), 4)
    csv_path = tmp_path / "noise-pageload-x.csv"
    write_rows(csv_path, [r for rs in per_round for r in rs])
    assert bench_noise.main(["--scenario", "pageload", "--from-csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("A/A page-load noise over 4 rounds") and "suggested" in out
