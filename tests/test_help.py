"""Every command explains itself: `--help` exits 0 with a usage line and no traceback.

argparse expands `%` in help strings, so a stray percent sign crashes `--help` only when it is
asked for; this runs all of them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks.__main__ import COMMANDS

MODULES = [
    ["-m", "servers"],
    ["-m", "benchmarks"],
    *(["-m", "benchmarks", name] for name in COMMANDS),
    ["-m", "benchmarks.clients.pyperf_sequential"],
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
