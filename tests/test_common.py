"""benchmarks.common (the one-line usage error, names, URLs, output checks, atomic writes) and
the pieces of servers.launch every launcher uses (READY wait, group stop, control client)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.common import (
    REPO_ROOT,
    HttpTarget,
    OneLineParser,
    UsageError,
    check_output_file,
    choose_subset,
    number_type,
    split_http_url,
    write_atomic,
)
from benchmarks.records.schema import SchemaError
from servers.launch import ControlClient, ControlError, ServerStartError, read_ready, terminate
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
        ["fuzz", "--servers", "apache"],
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


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("http://h", ("http", "h", 80, "/")),
        ("https://[::1]:8443/a?b=1", ("https", "::1", 8443, "/a?b=1")),
        ("http://127.0.0.1:8080/", ("http", "127.0.0.1", 8080, "/")),
    ],
)
def test_split_http_url(url: str, parts: tuple[str, str, int, str]) -> None:
    assert split_http_url(url) == parts


@pytest.mark.parametrize("url", ["ftp://x/", "h:80", "http://", "http://h:99999/", "http://u@h/"])
def test_split_http_url_refuses(url: str) -> None:
    with pytest.raises(UsageError):
        split_http_url(url)


def test_host_header_leaves_out_the_default_port() -> None:
    assert HttpTarget("https", "::1", 443, "/").host_header == "[::1]"
    assert HttpTarget("http", "h", 8080, "/x").url == "http://h:8080/x"


@pytest.mark.parametrize(
    ("kind", "low", "high", "above", "text", "error"),
    [
        (int, 0, 65535, False, "99999", "must be between 0 and 65535, got 99999"),
        (int, 1, 64, False, "two", "must be an integer, got 'two'"),
        (float, 0, None, True, "0", "must be > 0, got 0"),
        (float, 0, None, True, "nan", "must be > 0, got nan"),
    ],
)
def test_number_type_refuses_in_one_line(
    kind: type, low: float, high: float | None, above: bool, text: str, error: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"^{re.escape(error)}$"):
        number_type(kind, low, high, above=above)(text)
    assert number_type(kind, low, high, above=above)("7") == 7


def _child(code: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[call-overload]
    )


def test_read_ready_parses_the_line_and_names_a_child_that_died() -> None:
    line = "READY http://127.0.0.1:1 control=- pid=1 server=x"
    proc = _child(f"print({line!r}, flush=True)")
    assert read_ready(proc, "x").url == "http://127.0.0.1:1"
    terminate(proc)
    proc = _child("import sys; sys.exit(3)")
    with pytest.raises(ServerStartError, match="^x exited with status 3 before READY$"):
        read_ready(proc, "x")
    terminate(proc)


def test_terminate_stops_the_whole_group() -> None:
    """A forked worker outliving its leader is stopped with it (KILL after the grace)."""
    code = (
        "import os, signal, subprocess, sys, time; "
        "w = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); "
        "print(w.pid, flush=True); time.sleep(60)"
    )
    proc = _child(code, start_new_session=True)
    assert proc.stdout is not None
    worker = int(proc.stdout.readline())
    terminate(proc, 0.5, group=True)
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ", 1)[1][0] != "Z"


def test_control_client_refuses_what_is_not_a_control_url() -> None:
    with pytest.raises(ControlError, match="not a control URL"):
        ControlClient("-").counters()
