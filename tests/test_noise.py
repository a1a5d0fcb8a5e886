"""noise: spread statistics, A/A splits and the false-positive replay, on hand-made rounds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.analysis import noise
from benchmarks.analysis import rule as ruleconfig
from benchmarks.analysis.compare import Rule
from benchmarks.records.schema import read_rows
from tests.rowfactory import reps, row, write


def test_spread():
    cv, max_min = noise.spread([90.0, 100.0, 110.0])
    assert cv == pytest.approx(0.1) and max_min == pytest.approx(110 / 90)
    assert all(math.isnan(v) for v in noise.spread([5.0]))


def test_splits_count_each_partition_once():
    assert len(noise.splits(4)) == 3  # C(4,2) / 2
    assert len(noise.splits(5)) == 10  # C(5,2): the halves differ in size, no mirrors
    assert len(noise.splits(6)) == 10
    assert len(noise.splits(16, limit=50)) == 50
    assert noise.splits(16, limit=50) == noise.splits(16, limit=50)  # reproducible
    assert noise.splits(1) == []


def test_splits_of_given_sizes_are_disjoint_and_skip_mirrors():
    pairs = noise.splits(6, 2, 2, limit=1000)
    assert len(pairs) == 45  # C(6,2) * C(4,2) / 2
    assert all(not set(b) & set(n) and len(b) == len(n) == 2 for b, n in pairs)
    assert len({frozenset((b, n)) for b, n in pairs}) == 45  # no (A, B) and (B, A)
    assert noise.splits(6, 5, 5) == []  # needs 10 rounds
    assert len(noise.splits(6, 2, 3, limit=1000)) == 60  # unequal sizes: no mirrors


def test_huge_round_counts_are_sampled_not_listed():
    pairs = noise.splits(40, 10, 10, limit=30)
    assert len(pairs) == 30 and len(set(pairs)) == 30
    assert pairs == noise.splits(40, 10, 10, limit=30)


def rounds_of(values: list[float]) -> list[list]:
    return [[row(repetition=1, run_id=f"r{i}", throughput_rps=v)] for i, v in enumerate(values)]


def test_quiet_machine_has_no_false_positives():
    per_round = rounds_of([100.0, 101.0, 99.0, 100.5, 99.5, 100.2])
    fp = noise.replay(per_round, Rule())
    tp = fp["throughput_rps"]
    assert fp["splits"] == 10 and tp["decided"] == 10 and tp["flagged"] == 0
    assert tp["false_positive_rate"] == 0.0 and fp["splits_with_regression"] == 0.0
    assert tp["suggested_threshold"] == 0.02  # the floor: never suggest below 2%


def test_drifting_machine_shows_false_positives_and_a_higher_suggestion():
    per_round = rounds_of([100.0, 100.0, 100.0, 70.0, 70.0, 70.0])  # a step halfway through
    fp = noise.replay(per_round, Rule())
    tp = fp["throughput_rps"]
    assert tp["flagged"] >= 1
    assert tp["suggested_threshold"] > 0.10
    # the halves that put all 100s on one side: 1 split of 10 gives a regression (100 -> 70)
    assert fp["splits_with_regression"] == pytest.approx(0.1)


def test_replay_at_two_against_two_and_a_skipped_size():
    per_round = rounds_of([100.0, 100.0, 100.0, 70.0, 70.0, 70.0])
    two = noise.replay(per_round, Rule(), 2, 2, "make bench")
    assert (two["base_reps"], two["new_reps"], two["splits"]) == (2, 2, 45)
    # 2 of the 100s against 2 of the 70s, in that direction: C(3,2) * C(3,2) = 9 of 45 splits
    assert two["splits_with_regression"] == pytest.approx(9 / 45)
    five = noise.replay(per_round, Rule(), 5, 5, "bench-compare")
    assert five == {
        "base_reps": 5, "new_reps": 5, "used_by": "bench-compare",
        "splits": 0, "skipped": "needs 10 rounds, have 6",
    }  # fmt: skip


def test_summary_is_strict_json_with_version_commit_bench_and_replays(tmp_path):
    per_round = [reps([100.0 + i], run_id=f"r{i}") for i in range(4)]
    argv = ["--servers", "uvloop", "--duration", "5", "--repeat", "1"]
    summary = noise.summarize(per_round, Rule(), argv)
    data = json.loads(json.dumps(summary, allow_nan=False))
    assert data["format_version"] == ruleconfig.FORMAT_VERSION == 1
    assert data["git_commit"] == "abc1234" and data["fingerprint"]["kernel"] == "6.1.0"
    assert data["bench"]["argv"] == argv and data["bench"]["rounds"] == 4
    assert data["bench"]["window_s"] == 5.0 and len(data["bench"]["cells"]) == 1
    assert [(r["base_reps"], r["new_reps"]) for r in data["replays"]] == [(2, 2), (5, 5)]
    assert data["false_positives"]["splits"] == 3
    out = noise.format_summary(summary)
    assert "throughput_rps" in out and "suggested" in out
    assert "2 + 2 (make bench: 2 repetitions a side): 3 splits" in out
    assert "5 + 5 (bench-compare default rounds): skipped, needs 10 rounds, have 4" in out
    path = noise.output_path(tmp_path, "host1", now=0)
    assert path == tmp_path / "host1" / "noise-19700101T000000Z.json"


def test_saved_file_keeps_the_rows_and_is_read_back_as_a_floor(tmp_path):
    per_round = [reps([100.0 + i], run_id=f"r{i}", started_utc=f"2026-01-01T00:0{i}:00Z")
                 for i in range(4)]  # fmt: skip
    summary = noise.summarize(per_round, Rule(), [])
    path = noise.save(summary, per_round, tmp_path)
    data = ruleconfig.read_noise_file(path)
    assert data["rows_csv"] == path.with_suffix(".csv").name
    assert len(read_rows(path.with_suffix(".csv"))) == 4
    assert ruleconfig.machine_mismatch(data, per_round[0], ()) == ""
    assert ruleconfig.machine_mismatch(data, [row(kernel="6.9")], ()) == "kernel differ"
    assert ruleconfig.machine_mismatch(data, [row(kernel="6.9")], ("kernel",)) == ""
    fp = summary["false_positives"]
    assert ruleconfig.floors_of(data) == {
        m: fp[m]["suggested_threshold"] for m in ruleconfig.floors_of(data)
    }
    assert ruleconfig.floors_of(data)["throughput_rps"] == 0.02  # 100..103: 1-2% apart


def test_from_csv_reanalyses_saved_rows(tmp_path, capsys):
    rows = [r for i in range(4) for r in reps([100.0 + i], run_id=f"r{i}",
            started_utc=f"2026-01-01T00:0{i}:00Z")]  # fmt: skip
    csv_path = write(tmp_path / "noise-x.csv", rows)
    assert noise.main(["--from-csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("A/A noise over 4 rounds on host host1")
    assert list(tmp_path.iterdir()) == [csv_path]  # re-analysis writes nothing


def test_from_csv_with_one_run_is_a_one_line_error(tmp_path, capsys):
    csv_path = write(tmp_path / "one.csv", reps([100.0, 101.0]))
    assert noise.main(["--from-csv", str(csv_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 run(s); an A/A replay needs at least 2" in err


def test_committed_version_0_file_still_reads():
    path = Path(__file__).parent.parent / "results" / "115bf00763b5" / "noise-20261125T183407Z.json"
    data = ruleconfig.read_noise_file(path)
    assert "format_version" not in data  # version 0 by definition
    assert ruleconfig.machine_mismatch(data, [row(host_id="115bf00763b5")], ()) == ""
    assert ruleconfig.machine_mismatch(data, [row()], ()) == "host_id differ"
