"""Running `python -m benchmarks pageload` round by round, for bench-compare and noise.

What benchmarks.analysis.rounds does for `make bench` rows, for the page-load scenario: its
flags are accepted as they are and handed on unchanged, one repetition per round unless
`--repeat` says otherwise, every round into a scratch directory (never the committed results/)
with no plot, and a tree whose scenario cannot take a flag is refused in one line before its
first round. The flag list is the scenario's own parser, so a flag added there is forwarded
here without a second list to keep in step.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.analysis.rounds import RoundError, Side, side_env
from benchmarks.pageload.rows import FILE_PREFIX, PageLoadRow, RowsError, read_rows

COMMAND = "pageload"
# The runner sets these itself: where rows go, and no PNG per round.
OUTPUT_FLAG = "--results-dir"
NO_PLOT = "--no-plot"
OWN_FLAGS = frozenset({OUTPUT_FLAG, NO_PLOT, "-h", "--help"})


def forwarded() -> list[tuple[str, bool, str]]:
    """(flag, takes a value, its help) for each flag of `python -m benchmarks pageload` we
    pass on."""
    from benchmarks.pageload.cli import build_parser

    out = []
    for action in build_parser()._actions:
        flags = [f for f in action.option_strings if f.startswith("--")]
        if flags and flags[0] not in OWN_FLAGS:
            out.append((flags[0], action.nargs != 0, action.help or ""))
    return out


def _dest(flag: str) -> str:
    return "pageload_" + flag.removeprefix("--").replace("-", "_")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scenario's flags (each takes its one comma-separated value, as there)."""
    group = parser.add_argument_group("page-load flags (passed to `python -m benchmarks pageload`)")
    for flag, takes_value, text in forwarded():
        if takes_value:
            group.add_argument(flag, dest=_dest(flag), metavar="VALUE", help=text)
        else:
            group.add_argument(flag, dest=_dest(flag), action="store_true", help=text)


def scenario_args(args: argparse.Namespace) -> list[str]:
    """The scenario's flags in argv form from parsed arguments; one repetition by default."""
    argv: list[str] = []
    for flag, takes_value, _ in forwarded():
        value = getattr(args, _dest(flag), None)
        if takes_value and value is not None:
            argv += [flag, str(value)]
        elif not takes_value and value:
            argv.append(flag)
    if "--repeat" not in argv:
        argv += ["--repeat", "1"]
    return argv


def run_command(side: Side, args: Sequence[str], out_dir: Path) -> list[str]:
    """The argv of one round: the side's interpreter, its scenario, our directory, no plot."""
    return [
        str(side.python), "-m", "benchmarks", COMMAND, *args, OUTPUT_FLAG, str(out_dir), NO_PLOT,
    ]  # fmt: skip


def check_scenario(side: Side, args: Sequence[str] = ()) -> None:
    """RoundError (one line) unless this tree's `python -m benchmarks pageload` exists and takes
    every flag of `args`, and the two the runner adds: a ref from before the scenario (or from
    before one of its flags) fails at once, not after the other side's first round."""
    proc = subprocess.run(
        [str(side.python), "-m", "benchmarks", COMMAND, "--help"],
        cwd=side.tree, env=side_env(side), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RoundError(
            f"{side.name}: `python -m benchmarks {COMMAND} --help` failed in {side.tree} "
            "(no page-load scenario at that commit?)"
        )
    known = set(re.findall(r"--[A-Za-z0-9][A-Za-z0-9-]*", proc.stdout))
    wanted = [*(a for a in args if a.startswith("--")), OUTPUT_FLAG, NO_PLOT]
    missing = [a for a in dict.fromkeys(wanted) if a not in known]
    if missing:
        raise RoundError(
            f"{side.name}: `python -m benchmarks {COMMAND}` in {side.tree} does not take "
            f"{', '.join(missing)} (that commit predates it)"
        )


def result_csvs(root: Path) -> list[Path]:
    """The page-load CSVs a round wrote under `root` (results/<host_id>/pageload-*.csv)."""
    return sorted(root.rglob(f"{FILE_PREFIX}*.csv")) if root.is_dir() else []


def run_round(side: Side, args: Sequence[str], out_dir: Path) -> list[Path]:
    """Run one round into `out_dir`; the CSVs it wrote (RoundError when none). Its progress
    and summary go to our stderr: stdout is the verdict's."""
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        run_command(side, args, out_dir), cwd=side.tree, env=side_env(side), stdout=sys.stderr
    )
    written = result_csvs(out_dir)
    if not written:
        raise RoundError(f"{side.name}: the page-load run wrote no CSV (exit {proc.returncode})")
    return written


def read_all(paths: Sequence[Path]) -> list[PageLoadRow]:
    """Every row of a round's CSVs; a bad CSV is a failed round (RoundError, one line)."""
    rows: list[PageLoadRow] = []
    for path in paths:
        try:
            rows += read_rows(path)
        except RowsError as exc:
            raise RoundError(str(exc)) from None
    return rows
