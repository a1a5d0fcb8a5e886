"""compare: matching cells, the two-part rule, and the CLI's exit codes and messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.analysis import compare
from benchmarks.analysis import rule as ruleconfig
from benchmarks.analysis.compare import (
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
from benchmarks.records.keys import METRICS, cell_key, fingerprint_diff
from benchmarks.records.schema import COLUMNS, SCHEMA_VERSION, read_rows
from tests.rowfactory import noise_file, reps, row, write

THROUGHPUT = METRICS[0]
CPU = next(m for m in METRICS if m.column == "server_cpu_us_per_req")
STEADY = [100_000.0, 101_000.0, 99_000.0, 100_500.0, 99_500.0]
LABEL = "uvloop/pyperf-concurrent-raw/pooled c=50 kt=5 km=100"
FIXTURE = Path(__file__).parent / "fixtures" / "handwritten.csv"
COMMITTED_NOISE = (
    Path(__file__).parent.parent / "results" / "115bf00763b5" / "noise-20261125T183407Z.json"
)


def run_cli(tmp_path: Path, base: list, new: list, *flags: str) -> int:
    """compare's CLI on two hand-made CSVs; no noise floor unless the test asks for one."""
    b, n = write(tmp_path / "base.csv", base), write(tmp_path / "new.csv", new)
    if not any(f.startswith("--noise") or f == "--results-dir" for f in flags):
        flags = (*flags, "--noise", "none")
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
    assert "within the baseline's range" in d.reason


@pytest.mark.parametrize("new", [[50.0], [99.0], [100.0]], ids=["-50%", "-1%", "same"])
@pytest.mark.parametrize("base", [[100.0], [100.0, 101.0]], ids=["1+1", "2+1"])
def test_one_repetition_on_a_side_is_inconclusive_whatever_the_ratio(base, new):
    """One value has no spread: neither "regression" nor "no change" can be claimed."""
    d = decide(base, new, THROUGHPUT, 0.10, 0.05)
    assert d.verdict == INCONCLUSIVE and "spread unknown" in d.reason
    assert d.ratio is not None  # still shown
    assert decide(new, base, THROUGHPUT, 0.10, 0.05).verdict == INCONCLUSIVE


def test_one_repetition_reasons_name_the_side():
    assert decide([100.0, 101.0], [50.0], THROUGHPUT, 0.1, 0.05).reason == (
        "1 new repetition: spread unknown"
    )
    assert decide([100.0], [50.0], THROUGHPUT, 0.1, 0.05).reason == (
        "1 baseline repetition and 1 new repetition: spread unknown"
    )


def test_two_against_two_uses_the_range_with_every_new_value_outside_it():
    base = [100.0, 102.0]
    assert not rank_test_usable(2, 2, 0.05)
    d = decide(base, [80.0, 81.0], THROUGHPUT, 0.10, 0.05)
    assert (d.verdict, d.test) == (REGRESSION, "range p=0.33")
    # the median is 15% down but one value is inside the baseline's range: no verdict
    d = decide(base, [70.0, 101.0], THROUGHPUT, 0.10, 0.05)
    assert (d.verdict, d.test) == (INCONCLUSIVE, "range p=0.33")
    assert decide(base, [99.0, 100.0], THROUGHPUT, 0.10, 0.05).verdict == NO_CHANGE


def test_committed_shape_two_reps_against_one_has_no_regression(tmp_path, capsys):
    """The reviewer's case: 2 repetitions against 1, 10-20% apart, used to give REGRESSIONs."""
    base = reps([79_676.0, 80_100.0])
    new = reps([71_037.0])
    assert run_cli(tmp_path, base, new) == 0
    out = capsys.readouterr().out
    assert "REGRESSION" not in out and "1 new repetition: spread unknown" in out
    assert "0 regression, 0 improvement, 4 inconclusive, 0 no change" in out


def test_rank_test_threshold_follows_alpha():
    assert min_exact_p(4, 4) == pytest.approx(2 / 70)
    assert rank_test_usable(4, 4, 0.05) and rank_test_usable(3, 5, 0.05)
    assert not rank_test_usable(3, 4, 0.05) and not rank_test_usable(2, 7, 0.05)
    assert rank_test_usable(2, 8, 0.05)  # 2 / C(10, 2) = 0.044: reachable
    assert not rank_test_usable(1, 100, 0.05)  # one value has no spread
    assert not rank_test_usable(4, 4, 0.01) and rank_test_usable(5, 5, 0.01)


def test_degenerate_values():
    nan = float("nan")
    assert decide([0.0, 0.0], [0.0, 0.0], CPU, 0.1, 0.05).verdict == NO_CHANGE
    assert decide([0.0, 0.0], [1.0, 1.0], CPU, 0.1, 0.05).verdict == INCONCLUSIVE
    assert decide([nan], [1.0], CPU, 0.1, 0.05).verdict == INCONCLUSIVE
    d = decide([1.0, nan], [2.0, 2.0], CPU, 0.1, 0.05)  # a NaN is not a repetition
    assert d.verdict == INCONCLUSIVE and "1 baseline repetition" in d.reason
    assert decide([1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], CPU, 0.1, 0.05).verdict == REGRESSION


def test_improvement_direction_for_lower_is_better():
    d = decide([5.0, 5.1, 4.9, 5.0], [3.0, 3.1, 2.9, 3.0], CPU, 0.1, 0.05)
    assert d.verdict == IMPROVEMENT and d.ratio == pytest.approx(0.6)


def test_threshold_flag_changes_the_verdict(tmp_path):
    slower = [v * 0.8 for v in STEADY]
    assert run_cli(tmp_path, reps(STEADY), reps(slower), "--threshold-throughput", "25%") == 0


def test_cells_match_on_configuration_and_nearby_windows_compare():
    base = reps(STEADY, duration_s=5.0)
    new = reps([v * 0.8 for v in STEADY], duration_s=5.9) + [row(concurrency=10)]
    result = compare_rows(base + [row(mode="unpooled")], new, Rule())
    assert result.count(REGRESSION) == 1  # 5.0 s vs 5.9 s: within 25%
    assert [k.concurrency for k in result.only_new] == [10]
    assert [k.mode for k in result.only_base] == ["unpooled"]
    assert cell_key(row(duration_s=1.0)) == cell_key(row(duration_s=9.0))


def test_different_windows_are_inconclusive(tmp_path, capsys):
    """A QUICK run (1 s windows) against a 5 s run: matched, shown, but never judged."""
    base = reps(STEADY, duration_s=5.0)
    new = reps([v * 0.5 for v in STEADY], duration_s=1.0)
    result = compare_rows(base, new, Rule())
    assert {v.decision.verdict for v in result.verdicts} == {INCONCLUSIVE}
    assert "window differs: 5.0 s vs 1.0 s" in result.verdicts[0].decision.reason
    assert run_cli(tmp_path, base, new) == 0
    assert "window differs: 5.0 s vs 1.0 s" in capsys.readouterr().out


def test_failed_rows_do_not_count_as_a_window():
    new = reps(STEADY, duration_s=5.0) + [row(repetition=6, status="server-died", duration_s=0.0)]
    reason = compare_rows(reps(STEADY), new, Rule()).verdicts[0].decision.reason
    assert "status server-died" in reason and "window" not in reason


def test_one_sided_cells_are_listed_and_strict_mode_fails(tmp_path, capsys):
    base, new = reps(STEADY), reps(STEADY) + [row(server="aiohttp")]
    assert run_cli(tmp_path, base, new) == 0
    assert "only in candidate: aiohttp/" in capsys.readouterr().out
    assert run_cli(tmp_path, base, new, "--fail-on-inconclusive") == 1


def _strict_json(text: str) -> object:
    """json.loads that refuses NaN and Infinity, which Python's json accepts by default."""

    def refuse(name: str) -> None:
        raise AssertionError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_output(tmp_path, capsys):
    assert run_cli(tmp_path, reps(STEADY), reps([v * 0.8 for v in STEADY]), "--json") == 1
    data = _strict_json(capsys.readouterr().out)
    assert data["summary"]["regression"] == 1
    hit = next(v for v in data["verdicts"] if v["verdict"] == REGRESSION)
    assert hit["label"] == LABEL and hit["metric"] == "throughput_rps"


def test_json_has_null_for_nan_and_the_table_counts_only_finite_values(tmp_path, capsys):
    nan = float("nan")
    base = reps(STEADY[:3], column="latency_p99_ms")
    new = reps([1.0, nan, 1.0], column="latency_p99_ms")
    run_cli(tmp_path, base, new, "--json")
    data = _strict_json(capsys.readouterr().out)
    p99 = next(v for v in data["verdicts"] if v["metric"] == "latency_p99_ms")
    assert p99["new"] == [1.0, None, 1.0]
    run_cli(tmp_path, base, new)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.split()[1] == "p99")
    assert " 3/2 " in line


def _assert_one_line_error(capsys, code: int, *needles: str) -> str:
    """Exit 2, nothing on stdout, one line on stderr holding every needle; returns that line."""
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    for needle in needles:
        assert needle in captured.err
    return captured.err


def test_missing_file(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    code = compare.main([str(good), str(tmp_path / "nope.csv")])
    _assert_one_line_error(capsys, code, "nope.csv", "cannot read")


def test_foreign_csv(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    code = compare.main([str(other), str(good)])
    _assert_one_line_error(
        capsys,
        code,
        "other.csv: not a results CSV (no header with schema_version; found 2 columns)",
    )


def test_a_header_missing_columns_names_a_few_not_all(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    header, first = good.read_text().splitlines()[:2]
    cut = tmp_path / "cut.csv"
    keep = 10  # the fingerprint columns only
    cut.write_text(",".join(header.split(",")[:keep]) + "\n" + ",".join(first.split(",")[:keep]))
    code = compare.main([str(cut), str(good)])
    expected = f"header has 10 columns, schema {SCHEMA_VERSION} has {len(COLUMNS)}"
    err = _assert_one_line_error(capsys, code, expected, "+28 more")  # tls may be missing: none
    assert len(err) < 200


def test_rows_with_missing_or_extra_fields_name_their_line(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    lines = good.read_text().splitlines()
    for name, broken in (("short", lines[2].rsplit(",", 1)[0]), ("long", lines[2] + ",extra")):
        bad = tmp_path / f"{name}.csv"
        bad.write_text("\n".join([lines[0], lines[1], broken, lines[3]]) + "\n")
        code = compare.main([str(good), str(bad)])
        n = len(COLUMNS) + (-1 if name == "short" else 1)
        expected = f"{name}.csv:3: {n} fields, the header has {len(COLUMNS)}"
        _assert_one_line_error(capsys, code, expected)


def test_non_utf8_file_is_a_one_line_error(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"\xff\xfeschema_version,run_id\r\n\xe9t\xe9,1\r\n")
    code = compare.main([str(good), str(latin)])
    _assert_one_line_error(capsys, code, "latin.csv: not a results CSV (not UTF-8 text: byte 0xff")


def test_corrupt_file(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    lines = good.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([lines[0], lines[1].replace("100000", "fast", 1)]) + "\n")
    code = compare.main([str(good), str(bad)])
    _assert_one_line_error(capsys, code, "bad.csv:2: bad value for throughput_rps: 'fast'")


def test_binary_garbage(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"\x00\x01\x02PK\x03\x04")
    _assert_one_line_error(capsys, compare.main([str(good), str(junk)]))


def test_unknown_schema_version(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    text = good.read_text().splitlines()
    future = tmp_path / "future.csv"
    future.write_text(text[0] + "\n" + text[1].replace(f"{SCHEMA_VERSION},", "99,", 1) + "\n")
    code = compare.main([str(future), str(good)])
    _assert_one_line_error(capsys, code, "unknown schema_version '99'")


def test_empty_results_file(tmp_path, capsys):
    good = write(tmp_path / "good.csv", reps(STEADY))
    empty = write(tmp_path / "empty.csv", [])
    _assert_one_line_error(capsys, compare.main([str(good), str(empty)]), "no result rows")


def test_unknown_fingerprint_field(tmp_path, capsys):
    code = run_cli(tmp_path, reps(STEADY), reps(STEADY), "--ignore-fingerprint", "colour")
    _assert_one_line_error(capsys, code, "colour")


def test_handwritten_fixture_is_read(capsys):
    """A CSV typed by hand, not by write_rows: catches the reader drifting from the format."""
    from benchmarks.records.schema import read_rows

    rows = read_rows(FIXTURE)
    assert [r.repetition for r in rows] == [1, 1, 2]
    first, failed, second = rows
    assert first.cpu_model == "Example CPU, 2 cores @ 2.0GHz"  # quoted comma
    assert first.key.keepalive_timeout_s == 5.0 and first.throughput_rps == 80_000.0  # "5", "80000"
    assert first.note == "hand-written, not by write_rows" and second.note == ""
    assert (failed.status, failed.valid, failed.throughput_rps) == ("server-died", 0, 0.0)
    assert compare.main([str(FIXTURE), str(FIXTURE), "--noise", "none"]) == 0
    assert "4 no change" in capsys.readouterr().out


# The A/A noise floor: found, matched to the machine, and raising (never lowering) thresholds.

FLOORS = {"throughput_rps": 0.15, "latency_p99_ms": 0.05}
TWELVE_DOWN = [v * 0.88 for v in STEADY]  # beyond 10%, within a 15% floor


def test_noise_floor_raises_a_threshold(tmp_path, capsys):
    results = tmp_path / "results"
    noise_file(results / "host1" / "noise-20260101T000000Z.json", FLOORS)
    flags = ("--results-dir", str(results))
    assert run_cli(tmp_path, reps(STEADY), reps(TWELVE_DOWN), *flags) == 0
    captured = capsys.readouterr()
    assert "REGRESSION" not in captured.out
    line = captured.err.strip()
    assert line.startswith("noise: ") and "noise-20260101T000000Z.json" in line
    assert "throughput 15% (floor)" in line
    assert line.endswith("p99 20%")  # a 5% floor never lowers the 20% threshold
    assert "version 0 has no fingerprint" in line
    assert run_cli(tmp_path, reps(STEADY), reps(TWELVE_DOWN), "--noise", "none") == 1


def test_newest_matching_noise_file_wins(tmp_path, capsys):
    results = tmp_path / "results"
    fp = {"host_id": "host1", "kernel": "6.1.0", "cpu_model": "Test CPU @ 3GHz"}
    noise_file(results / "host1" / "noise-20260101T000000Z.json", {"throughput_rps": 0.15})
    noise_file(
        results / "host1" / "noise-20260301T000000Z.json",
        {"throughput_rps": 0.30},
        format_version=1,
        fingerprint={**fp, "kernel": "6.9.0"},  # another kernel: not this machine any more
    )
    noise_file(
        results / "host1" / "noise-20260201T000000Z.json",
        {"throughput_rps": 0.20},
        format_version=1,
        fingerprint=fp,
    )
    run_cli(tmp_path, reps(STEADY), reps(STEADY), "--results-dir", str(results))
    err = capsys.readouterr().err
    assert "noise-20260201T000000Z.json (newest match, format 1" in err
    assert "throughput 20% (floor)" in err


def test_no_noise_file_says_so(tmp_path, capsys):
    assert run_cli(tmp_path, reps(STEADY), reps(STEADY), "--results-dir", str(tmp_path)) == 0
    err = capsys.readouterr().err
    assert err.startswith("noise: none (no matching noise-*.json in")
    assert "thresholds: throughput 10%, cpu 10%, p50 10%, p99 20%" in err


def test_explicit_noise_file_of_another_machine_is_refused(tmp_path, capsys):
    other = noise_file(tmp_path / "n.json", FLOORS, host_id="elsewhere")
    code = run_cli(tmp_path, reps(STEADY), reps(STEADY), "--noise", str(other))
    _assert_one_line_error(capsys, code, "n.json: noise file of another machine (host_id differ)")


@pytest.mark.parametrize(
    "content, needle",
    [(b"\xff\xfe{}", "not UTF-8 JSON"), (b"[1, 2]", "no false_positives"),
     (b'{"format_version": 99, "false_positives": {}}', "unknown noise format_version 99")],
    ids=["binary", "foreign", "future"],
)  # fmt: skip
def test_bad_noise_file_is_a_one_line_error(tmp_path, capsys, content, needle):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    code = run_cli(tmp_path, reps(STEADY), reps(STEADY), "--noise", str(bad))
    _assert_one_line_error(capsys, code, needle)


def test_committed_version_0_noise_file_is_read():
    data = ruleconfig.read_noise_file(COMMITTED_NOISE)
    floors = ruleconfig.floors_of(data)
    assert set(floors) == {m.column for m in METRICS}
    assert all(0.02 <= f < 1 for f in floors.values())


def test_noise_json_in_json_output(tmp_path, capsys):
    results = tmp_path / "results"
    noise_file(results / "host1" / "noise-20260101T000000Z.json", FLOORS)
    run_cli(tmp_path, reps(STEADY), reps(STEADY), "--json", "--results-dir", str(results))
    data = _strict_json(capsys.readouterr().out)
    assert data["noise"]["floors"] == FLOORS
    assert data["rule"]["thresholds"]["throughput_rps"] == 0.15  # the effective rule


def test_rows_of_two_targets_are_never_one_cell(tmp_path):
    """target_url is part of the cell key: two servers at two URLs (or commands) stay apart in
    compare, and a file written before the column existed reads with it empty (ours)."""
    one = reps(STEADY, server="target", target_url="http://127.0.0.1:8080/")
    other = reps([v * 0.5 for v in STEADY], server="target", target_url="http://127.0.0.1:9090/")
    result = compare_rows(one, other, Rule())
    assert result.verdicts == [] and len(result.only_base) == len(result.only_new) == 1
    assert result.only_base[0].target_url != result.only_new[0].target_url
    assert "target=http://127.0.0.1:8080/" in one[0].key.label()
    assert "/" not in one[0].key.slug() and ":" not in one[0].key.slug()
    path = write(tmp_path / "old.csv", reps(STEADY))
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    at = header.index("target_url")
    # after the committed columns, which keep their order; only rate_rps was added after it
    assert header[at - 1] == "note" and header[at + 1 :] == ["rate_rps"]
    path.write_text("\n".join(line.rsplit(",", 2)[0] for line in lines) + "\n")
    assert {r.key.target_url for r in read_rows(path)} == {""}
