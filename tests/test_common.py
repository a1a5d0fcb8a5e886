"""benchmarks.common: the one-line usage error, subsets of names, output checks, atomic writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import (
    REPO_ROOT,
    OneLineParser,
    UsageError,
    check_output_file,
    choose_subset,
    write_atomic,
)
from benchmarks.records.schema import SchemaError
from servers.options import OptionsError


def test_repo_root_is_the_checkout() -> None:
    assert (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "benchmarks").is_dir()


def test_parser_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    parser = OneLineParser(prog="prog")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--n", "x"])
    assert info.value.code == 2
    assert capsys.readouterr().err == "prog: error: argument --n: invalid int value: 'x'\n"


def test_the_specific_bad_input_errors_are_usage_errors() -> None:
    assert issubclass(SchemaError, UsageError) and issubclass(OptionsError, UsageError)


@pytest.mark.parametrize(
    ("values", "chosen"),
    [(["c,a"], ("a", "c")), (["b", "a,a"], ("a", "b")), ([" a , b "], ("a", "b"))],
)
def test_choose_subset_keeps_the_choices_order(values: list[str], chosen: tuple[str]) -> None:
    assert choose_subset(values, ("a", "b", "c"), "--x") == chosen


@pytest.mark.parametrize("values", [["a,d"], [","], []])
def test_choose_subset_refuses_unknown_and_empty(values: list[str]) -> None:
    with pytest.raises(UsageError, match=r"--x: unknown .*; choose from a, b, c"):
        choose_subset(values, ("a", "b", "c"), "--x")


def test_check_output_file(tmp_path: Path) -> None:
    check_output_file(tmp_path / "new" / "deeper" / "out.json", "--json")  # folders come later
    with pytest.raises(UsageError, match="is a directory"):
        check_output_file(tmp_path, "--json")
    with pytest.raises(UsageError, match="--json: cannot write in /proc"):
        check_output_file(Path("/proc/keepalive-bench/out.json"), "--json")


def test_write_atomic_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.txt"
    write_atomic(path, "one")
    write_atomic(path, "two")
    assert path.read_text() == "two" and sorted(p.name for p in path.parent.iterdir()) == ["x.txt"]
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "argv",
    [
        ["doctor", "http://127.0.0.1:1/", "--max-idle", "-1"],
        ["doctor", "ftp://x/"],
        ["fuzz", "--servers", "nginx"],
        ["serverperf", "--servers", "apache"],
        ["compare", "--alpha", "2", "a.csv", "b.csv"],
    ],
)
def test_commands_refuse_bad_input_in_one_line(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *argv],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and ": error: " in done.stderr, done.stderr
