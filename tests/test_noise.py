"""noise: spread statistics, A/A splits and the false-positive replay, on hand-made rounds."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import noise
from benchmarks.compare import Rule
from tests.rowfactory import reps, row


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


def rounds_of(values: list[float]) -> list[list]:
    return [[row(repetition=1, run_id=f"r{i}", throughput_rps=v)] for i, v in enumerate(values)]


def test_quiet_machine_has_no_false_positives():
    per_round = rounds_of([100.0, 101.0, 99.0, 100.5, 99.5, 100.2])
    fp = noise.false_positives(per_round, Rule())
    tp = fp["throughput_rps"]
    assert fp["splits"] == 10 and tp["decided"] == 10 and tp["flagged"] == 0
    assert tp["false_positive_rate"] == 0.0
    assert tp["suggested_threshold"] == 0.02  # the floor: never suggest below 2%


def test_drifting_machine_shows_false_positives_and_a_higher_suggestion():
    per_round = rounds_of([100.0, 100.0, 100.0, 70.0, 70.0, 70.0])  # a step halfway through
    tp = noise.false_positives(per_round, Rule())["throughput_rps"]
    assert tp["flagged"] >= 1
    assert tp["suggested_threshold"] > 0.10


def test_summary_is_strict_json_and_printable(tmp_path):
    per_round = [reps([100.0 + i]) for i in range(4)]
    summary = noise.summarize(per_round, Rule())
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text)["rounds"] == 4
    out = noise.format_summary(summary)
    assert "throughput_rps" in out and "suggested" in out
    path = noise.output_path(tmp_path, "host1", now=0)
    assert path == tmp_path / "host1" / "noise-19700101T000000Z.json"
