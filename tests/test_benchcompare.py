"""bench-compare and the round runner: the deterministic parts, with a fake harness."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

import pytest

from benchmarks.analysis import bench_compare as benchcompare
from benchmarks.analysis import noise, rounds
from benchmarks.analysis.compare import REGRESSION, Rule, compare_rows
from benchmarks.analysis.rounds import RoundError, Side
from tests.rowfactory import reps, write

A, B = Side("base", Path("/a"), Path("/py")), Side("new", Path("/b"), Path("/py"))
STEADY = [100_000.0, 101_000.0, 99_000.0, 100_500.0, 99_500.0]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    rounds.add_bench_arguments(parser)
    return parser.parse_args(argv)


def test_schedule_alternates_to_cancel_drift():
    order = [(r, s.name) for r, s in rounds.schedule([A, B], 3)]
    assert order == [(1, "base"), (1, "new"), (2, "new"), (2, "base"), (3, "base"), (3, "new")]


def test_schedule_fixed_order():
    names = [s.name for _, s in rounds.schedule([A, B], 3, alternate=False)]
    assert names == ["base", "new"] * 3


def test_bench_flags_pass_through_unchanged_with_one_repetition_by_default():
    argv = ["--quick", "--servers", "uvloop,aiohttp", "--clients", "pyperf-concurrent-raw",
            "--duration", "1", "--tls", "1.2,1.3", "--keepalive-max", "0",
            "--workers", "2"]  # fmt: skip
    out = rounds.bench_args(parse(argv))
    assert out[0] == "--quick" and out[1] == "--servers"  # switches first
    for flag, value in [("--servers", "uvloop,aiohttp"), ("--duration", "1"), ("--tls", "1.2,1.3"),
                        ("--keepalive-max", "0"), ("--workers", "2")]:  # fmt: skip
        assert out[out.index(flag) + 1] == value
    assert out[-2:] == ["--repeat", "1"]
    assert rounds.bench_args(parse(["--repeat", "3"])) == ["--repeat", "3"]
    assert rounds.bench_args(parse(["--servers", "a", "b"]))[:3] == ["--servers", "a", "b"]


def test_run_command_and_environment():
    cmd = rounds.run_command(A, ["--quick", "--repeat", "1"], Path("/tmp/o"))
    assert cmd == ["/py", "-m", "benchmarks", "run", "--quick", "--repeat", "1",
                   "--results-dir", "/tmp/o"]  # fmt: skip
    assert rounds.side_env(A)["PYTHONPATH"].split(os.pathsep)[0] == "/a"


def test_worktree_commands():
    repo, path = Path("/repo"), Path("/tmp/x/base")
    assert benchcompare.worktree_add_command(repo, path, "abc") == [
        "git", "-C", "/repo", "worktree", "add", "--detach", "/tmp/x/base", "abc"]  # fmt: skip
    assert benchcompare.worktree_remove_command(repo, path) == [
        "git", "-C", "/repo", "worktree", "remove", "--force", "/tmp/x/base"]  # fmt: skip


FAKE_HARNESS = """#!{python}
# Stands in for `python -m benchmarks run`: --help lists {flag}; a run writes one CSV.
import shutil, sys
from pathlib import Path
args = sys.argv[4:]
if "--help" in args:
    print("usage: run [--quick] {flag} RESULTS_DIR")
    sys.exit(0)
dest = Path(args[args.index("{flag}") + 1]) if "{flag}" in args else Path("results")
(dest / "host").mkdir(parents=True, exist_ok=True)
n = len(list((dest / "host").glob("*.csv")))
shutil.copy({source!r}, dest / "host" / f"20260101T00000{{n}}Z-fake.csv")
(dest / "host" / f"20260101T00000{{n}}Z-fake").mkdir()
(dest / "host" / f"20260101T00000{{n}}Z-fake" / "20260101T000000Z-x.csv").write_text("no\\n")
"""


def fake_side(tmp_path: Path, flag: str) -> Side:
    source = write(tmp_path / "source.csv", reps([100.0]))
    exe = tmp_path / "fakepython"
    exe.write_text(FAKE_HARNESS.format(python=sys.executable, flag=flag, source=str(source)))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    tree = tmp_path / "tree"
    tree.mkdir()
    return Side("new", tree, exe)


def test_run_round_with_output_flag(tmp_path):
    side = fake_side(tmp_path, "--results-dir")
    rounds.check_harness(side)
    written = rounds.run_round(side, ["--repeat", "1"], tmp_path / "out")
    assert [p.name for p in written] == ["20260101T000000Z-fake.csv"]  # not the folder's CSV
    assert len(rounds.read_all(written)) == 1
    assert not (side.tree / "results").exists()


def test_a_run_without_results_dir_is_no_harness(tmp_path):
    with pytest.raises(RoundError, match="has no --results-dir"):
        rounds.check_harness(fake_side(tmp_path, "--nothing-like-it"))


def test_run_round_without_csv_is_an_error(tmp_path):
    exe = tmp_path / "false"
    exe.write_text("#!/bin/sh\nexit 1\n")
    exe.chmod(0o755)
    with pytest.raises(RoundError, match="wrote no CSV"):
        rounds.run_round(Side("base", tmp_path, exe), [], tmp_path / "out")
    with pytest.raises(RoundError, match="no harness"):
        rounds.check_harness(Side("base", tmp_path, exe))


def test_unknown_ref_is_a_one_line_error(capsys):
    assert benchcompare.main(["--base", "no-such-ref-xyz", "--rounds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown git ref 'no-such-ref-xyz'" in err


def test_own_venv_ignores_the_packages_fingerprint_and_says_so(capsys):
    rule = benchcompare.rule_for_venvs(Rule(), same_deps=False)
    assert rule.ignore_fingerprint == ("packages",)
    assert "ignoring the packages fingerprint" in capsys.readouterr().err
    # then a dependency change no longer makes every cell inconclusive
    slower = reps([v * 0.8 for v in STEADY], packages="uvloop=0.21")
    assert compare_rows(reps(STEADY), slower, rule).count(REGRESSION) == 1


def test_shared_venv_keeps_the_rule(capsys):
    rule = Rule(ignore_fingerprint=("kernel",))
    assert benchcompare.rule_for_venvs(rule, same_deps=True) is rule
    already = Rule(ignore_fingerprint=("packages",))
    assert benchcompare.rule_for_venvs(already, same_deps=False) is already
    assert capsys.readouterr().err == ""


def test_bad_noise_file_fails_before_any_round(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe")
    assert benchcompare.main(["--base", "HEAD", "--noise", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a noise file" in err


def test_noise_rows_beside_the_json_are_not_run_csvs(tmp_path):
    write(tmp_path / "host" / "20260101T000000Z-abc.csv", reps([1.0]))
    write(tmp_path / "host" / "noise-20260101T000000Z.csv", reps([1.0]))
    assert rounds.result_csvs(tmp_path) == {tmp_path / "host" / "20260101T000000Z-abc.csv"}


def test_bench_compare_default_rounds_match_the_noise_replay():
    args = benchcompare.build_parser().parse_args(["--base", "HEAD"])
    assert args.rounds == rounds.BENCH_COMPARE_ROUNDS
    assert (rounds.BENCH_COMPARE_ROUNDS,) * 2 in [(a, b) for a, b, _ in noise.REPLAYS]


def test_a_ref_without_a_new_flag_is_refused_in_one_line(tmp_path):
    side = fake_side(tmp_path, "--results-dir")
    rounds.check_harness(side, ["--quick"])  # a flag it lists passes
    with pytest.raises(RoundError, match=r"does not take --rtt \(that commit predates it\)$"):
        rounds.check_harness(side, ["--rtt", "50", "--quick"])


def test_a_ref_where_a_flag_took_no_value_is_refused_in_one_line(tmp_path):
    """`--tls` was a switch before it took versions: `--tls 1.2` cannot run there."""
    side = fake_side(tmp_path, "[--tls] --results-dir")
    with pytest.raises(RoundError, match=r"takes --tls without a value \(that commit predates"):
        rounds.check_harness(side, ["--tls", "1.2", "--quick"])
