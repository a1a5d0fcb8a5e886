"""Every command explains itself: `--help` exits 0 with a usage line and no traceback.

argparse expands `%` in help strings, so a stray percent sign crashes `--help` only when it is
asked for; this runs all of them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import COMMANDS

MODULES = [
    ["-m", "servers"],
    ["-m", "benchmarks"],
    *(["-m", "benchmarks", name] for name in COMMANDS),
    ["-m", "benchmarks.clients.pyperf_sequential"],
    ["-m", "benchmarks.clients.pyperf_sequential_resume"],
    ["-m", "benchmarks.clients.pyperf_concurrent"],
    ["-m", "benchmarks.serverperf.bare"],
    ["-m", "benchmarks.demo"],
    ["-m", "benchmarks.ui"],
]


@pytest.mark.parametrize("argv", MODULES, ids=lambda a: " ".join(a[1:]))
def test_help_exits_0_without_traceback(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, *argv, "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-1000:]
    assert "Traceback" not in done.stderr
    assert "usage" in done.stdout.lower()


def test_top_level_help_lists_every_command_on_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"], capture_output=True, text=True, timeout=60
    )
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)


# Commands whose make target has another name, or none: `run` is `make bench`, `pack` a one-off,
# `net` runs a client's own command line (python -m benchmarks net run ... -- CLIENT ARGS).
MAKE_NAMES = {"run": "bench", "pack": None, "net": None}


def test_every_command_has_a_make_target_of_its_name() -> None:
    """And a renamed target keeps its old name as an alias (servers-perf)."""
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    wanted = {MAKE_NAMES.get(name, name) for name in COMMANDS} - {None}
    assert wanted <= targets, wanted - targets
    assert "servers-perf: serverperf" in makefile
    for name in COMMANDS:
        if MAKE_NAMES.get(name, name) is not None:
            assert f"$(PY) -m benchmarks {name} " in makefile, name
