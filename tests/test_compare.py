"""compare: matching cells, the two-part rule, and the CLI's exit codes and messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import compare
from benchmarks.cells import METRICS, cell_key, fingerprint_diff
from benchmarks.compare import (
    IMPROVEMENT,
    INCONCLUSIVE,
    NO_CHANGE,
    REGRESSION,
    Rule,
    compare_rows,
    decide,
    min_exact_p,
    rank_test_usable,
)
from tests.rowfactory import reps, row, write

THROUGHPUT = METRICS[0]
CPU = next(m for m in METRICS if m.column == "server_cpu_us_per_req")
STEADY = [100_000.0, 101_000.0, 99_000.0, 100_500.0, 99_500.0]
LABEL = "uvloop/pyperf-concurrent-raw/pooled c=50 kt=5 km=100"


def run_cli(tmp_path: Path, base: list, new: list, *flags: str) -> int:
    b, n = write(tmp_path / "base.csv", base), write(tmp_path / "new.csv", new)
    return compare.main([str(b), str(n), *flags])


def verdicts(base: list, new: list, **rule: object) -> dict[str, str]:
    result = compare_rows(base, new, Rule(**rule))  # type: ignore[arg-type]
    return {v.metric: v.decision.verdict for v in result.verdicts}


def test_planted_regression_is_flagged_and_named(tmp_path, capsys):
    slower = [v * 0.8 for v in STEADY]
    assert run_cli(tmp_path, reps(STEADY), reps(slower)) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("REGRESSION"))
    assert "throughput" in line and LABEL in line and "0.800" in line and "U p=" in line
    assert "summary: 1 regression" in out


def test_identical_run_passes(tmp_path, capsys):
    assert run_cli(tmp_path, reps(STEADY), reps(STEADY)) == 0
    out = capsys.readouterr().out
    assert "REGRESSION" not in out and "4 no change" in out


def test_improvement_is_not_a_failure(tmp_path, capsys):
    assert run_cli(tmp_path, reps(STEADY), reps([v * 1.3 for v in STEADY])) == 0
    assert "1 improvement" in capsys.readouterr().out


def test_lower_is_better_metric(tmp_path):
    base = reps([5.0, 5.1, 4.9, 5.05], column="server_cpu_us_per_req")
    new = reps([6.0, 6.1, 5.9, 6.05], column="server_cpu_us_per_req")
    assert verdicts(base, new)["server_cpu_us_per_req"] == REGRESSION


@pytest.mark.parametrize(
    "bad",
    [{"client_bound": 1}, {"valid": 0}, {"status": "server-died"}],
    ids=["client-bound", "invalid", "failed"],
)
def test_untrustworthy_rows_are_inconclusive_on_either_side(bad):
    slower = [v * 0.5 for v in STEADY]
    for base, new in ((reps(STEADY, **bad), reps(slower)), (reps(STEADY), reps(slower, **bad))):
        result = compare_rows(base, new, Rule())
        assert {v.decision.verdict for v in result.verdicts} == {INCONCLUSIVE}
        assert all(v.decision.ratio is not None for v in result.verdicts)  # still shown


def test_one_bad_repetition_taints_the_cell():
    new = reps(STEADY)
    new[2] = row(repetition=3, throughput_rps=STEADY[2], client_bound=1)
    result = compare_rows(reps(STEADY), new, Rule())
    assert "client-bound (new 1/5 rows)" in result.verdicts[0].decision.reason


@pytest.mark.parametrize("field", ["kernel", "cpu_model", "python_version", "packages", "host_id"])
def test_changed_fingerprint_is_inconclusive(field):
    slower = [v * 0.8 for v in STEADY]
    result = compare_rows(reps(STEADY), reps(slower, **{field: "other"}), Rule())
    assert {v.decision.verdict for v in result.verdicts} == {INCONCLUSIVE}
    assert f"machine differs: {field}" in result.verdicts[0].decision.reason


def test_ignored_fingerprint_field_allows_a_verdict(tmp_path, capsys):
    slower = [v * 0.8 for v in STEADY]
    args = ("--ignore-fingerprint", "packages")
    assert run_cli(tmp_path, reps(STEADY), reps(slower, packages="uvloop=0.20"), *args) == 1


def test_fingerprint_diff_sees_a_mixed_baseline():
    mixed = [row(kernel="6.1.0"), row(kernel="6.5.0")]
    assert fingerprint_diff(mixed, [row()]) == ["kernel"]


def test_noise_level_change_is_not_flagged(tmp_path, capsys):
    # medians 4% apart, inside the 10% threshold: no change
    assert verdicts(reps(STEADY), reps([v * 0.96 for v in STEADY]))["throughput_rps"] == NO_CHANGE
    # 15% apart on medians but the samples overlap: the noise test withholds the verdict
    noisy_base = [100_000.0, 60_000.0, 140_000.0, 80_000.0, 120_000.0]
    noisy_new = [85_000.0, 130_000.0, 55_000.0, 70_000.0, 95_000.0]
    assert run_cli(tmp_path, reps(noisy_base), reps(noisy_new)) == 0
    assert verdicts(reps(noisy_base), reps(noisy_new))["throughput_rps"] == INCONCLUSIVE


def test_small_change_in_a_noisy_cell_is_not_a_pass():
    noisy = [100.0, 60.0, 140.0, 80.0, 120.0]  # spread 80%, over 2 x the 10% threshold
    d = decide(noisy, [v * 1.05 for v in noisy], THROUGHPUT, 0.10, 0.05)
    assert d.verdict == INCONCLUSIVE and "too noisy" in d.reason


def test_small_samples_fall_back_to_the_baseline_range():
    base = [100.0, 104.0, 96.0]
    assert not rank_test_usable(3, 3, 0.05)  # exact U cannot go below p = 0.1 at 3 + 3
    d = decide(base, [80.0, 82.0, 81.0], THROUGHPUT, 0.10, 0.05)
    assert (d.verdict, d.test) == (REGRESSION, "range p=0.1")
    d = decide(base, [80.0, 97.0, 85.0], THROUGHPUT, 0.10, 0.05)  # one value inside the range
    assert (d.verdict, d.test) == (INCONCLUSIVE, "range p=0.1")
    d = decide([100.0], [50.0], THROUGHPUT, 0.10, 0.05)
    assert d.verdict == INCONCLUSIVE and "spread unknown" in d.reason
    assert decide([100.0], [99.0], THROUGHPUT, 0.10, 0.05).verdict == NO_CHANGE


def test_rank_test_threshold_follows_alpha():
    assert min_exact_p(4, 4) == pytest.approx(2 / 70)
    assert rank_test_usable(4, 4, 0.05) and rank_test_usable(3, 5, 0.05)
    assert not rank_test_usable(3, 4, 0.05) and not rank_test_usable(2, 10, 0.05)
    assert not rank_test_usable(4, 4, 0.01) and rank_test_usable(5, 5, 0.01)


def test_degenerate_values():
    assert decide([0.0, 0.0], [0.0, 0.0], CPU, 0.1, 0.05).verdict == NO_CHANGE
    assert decide([0.0, 0.0], [1.0, 1.0], CPU, 0.1, 0.05).verdict == INCONCLUSIVE
    assert decide([float("nan")], [1.0], CPU, 0.1, 0.05).verdict == INCONCLUSIVE
    assert decide([1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], CPU, 0.1, 0.05).verdict == REGRESSION


def test_improvement_direction_for_lower_is_better():
    d = decide([5.0, 5.1, 4.9, 5.0], [3.0, 3.1, 2.9, 3.0], CPU, 0.1, 0.05)
    assert d.verdict == IMPROVEMENT and d.ratio == pytest.approx(0.6)


def test_threshold_flag_changes_the_verdict(tmp_path):
    slower = [v * 0.8 for v in STEADY]
    assert run_cli(tmp_path, reps(STEADY), reps(slower), "--threshold-throughput", "25%") == 0


def test_cells_match_on_configuration_not_duration():
    base = reps(STEADY, duration_s=5.0)
    new = reps([v * 0.8 for v in STEADY], duration_s=30.0) + [row(concurrency=10)]
    result = compare_rows(base + [row(mode="unpooled")], new, Rule())
    assert result.count(REGRESSION) == 1
    assert [k.concurrency for k in result.only_new] == [10]
    assert [k.mode for k in result.only_base] == ["unpooled"]
    assert cell_key(row(duration_s=1.0)) == cell_key(row(duration_s=9.0))


def test_one_sided_cells_are_listed_and_strict_mode_fails(tmp_path, capsys):
    base, new = reps(STEADY), reps(STEADY) + [row(server="aiohttp")]
    assert run_cli(tmp_path, base, new) == 0
    assert "only in candidate: aiohttp/" in capsys.readouterr().out
    assert run_cli(tmp_path, base, new, "--fail-on-inconclusive") == 1


def test_json_output(tmp_path, capsys):
    assert run_cli(tmp_path, reps(STEADY), reps([v * 0.8 for v in STEADY]), "--json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["regression"] == 1
    hit = next(v for v in data["verdicts"] if v["verdict"] == REGRESSION)
    assert hit["label"] == LABEL and hit["metric"] == "throughput_rps"


def _assert_one_line_error(capsys, code: int, *needles: str) -> None:
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    for needle in needles:
        assert needle in captured.err


def test_missing_file(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    code = compare.main([str(good), str(tmp_path / "nope.csv")])
    _assert_one_line_error(capsys, code, "nope.csv", "cannot read")


def test_foreign_csv(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    _assert_one_line_error(capsys, compare.main([str(other), str(good)]), "not a results CSV")


def test_corrupt_file(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    lines = good.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([lines[0], lines[1].replace("100000", "fast", 1)]) + "\n")
    _assert_one_line_error(capsys, compare.main([str(good), str(bad)]), "bad.csv:2", "bad value")


def test_binary_garbage(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"\x00\x01\x02PK\x03\x04")
    _assert_one_line_error(capsys, compare.main([str(good), str(junk)]))


def test_unknown_schema_version(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    text = good.read_text().splitlines()
    future = tmp_path / "future.csv"
    future.write_text(text[0] + "\n" + text[1].replace("1,", "99,", 1) + "\n")
    code = compare.main([str(future), str(good)])
    _assert_one_line_error(capsys, code, "unknown schema_version '99'")


def test_empty_results_file(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    empty = write(tmp_path / "empty.csv", [])
    _assert_one_line_error(capsys, compare.main([str(good), str(empty)]), "no result rows")


def test_unknown_fingerprint_field(tmp_path, capsys):
    code = run_cli(tmp_path, reps(STEADY), reps(STEADY), "--ignore-fingerprint", "colour")
    _assert_one_line_error(capsys, code, "colour")
