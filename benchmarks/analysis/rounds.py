"""Running `python -m benchmarks run` round by round, for bench-compare and noise.

Both commands need the same thing: run the harness once per round with the user's bench flags
and one repetition, in a given tree with a given interpreter, keep each round's CSV out of the
committed results/ directory, and hand back the rows. The flag parsing, interleaving order and
command construction are pure functions so they can be tested without running a benchmark.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from benchmarks.matrix import flag_dest, forwarded
from benchmarks.records.layout import NOT_RUNS, RUN_CSV_NAME
from benchmarks.records.schema import ResultRow, SchemaError, read_rows

# The harness's matrix and run flags (benchmarks.matrix), passed through unchanged. Value flags
# take one or more tokens so both `--servers a,b` and `--servers a b` survive the round trip.
SWITCH_FLAGS = tuple(flag for flag, takes_value in forwarded() if not takes_value)
VALUE_FLAGS = tuple(flag for flag, takes_value in forwarded() if takes_value)
# Where `run` writes its CSV: every harness has taken it, since the first.
OUTPUT_FLAG = "--results-dir"
BENCH_COMPARE_ROUNDS = 5  # bench-compare's default; noise replays A/A splits at this size
T = TypeVar("T")  # what is scheduled: a Side here, a client's name in harness.ceiling


class RoundError(RuntimeError):
    """A round produced no CSV; the message is one line."""


@dataclass(frozen=True)
class Side:
    """A tree to benchmark: where to run and with which interpreter."""

    name: str
    tree: Path
    python: Path


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The harness's matrix flags, accepted as they are so they can be handed on unchanged."""
    group = parser.add_argument_group("bench flags (passed to `python -m benchmarks run`)")
    for flag in SWITCH_FLAGS:
        group.add_argument(flag, action="store_true")
    for flag in VALUE_FLAGS:
        group.add_argument(flag, nargs="+", metavar="VALUE")


def bench_args(args: argparse.Namespace) -> list[str]:
    """Rebuild the bench flags in argv form from parsed arguments; one repetition by default."""
    argv: list[str] = [flag for flag in SWITCH_FLAGS if getattr(args, flag_dest(flag))]
    for flag in VALUE_FLAGS:
        values = getattr(args, flag_dest(flag))
        if values:
            argv += [flag, *values]
    if "--repeat" not in argv:
        argv += ["--repeat", "1"]
    return argv


def schedule(sides: Sequence[T], rounds: int, alternate: bool = True) -> list[tuple[int, T]]:
    """The run order: interleaved round by round so slow drift (thermal, other load) hits both.

    With `alternate`, every other round reverses the order (A B, B A, A B, ...): with a fixed
    order the second side always runs just after the first and a linear drift would bias it.
    """
    return [(r, side) for r in range(1, rounds + 1) for side in round_order(sides, r, alternate)]


def round_order(sides: Sequence[T], r: int, alternate: bool = True) -> list[T]:
    """The order of round `r` (from 1) in `schedule`: as given, reversed in even rounds."""
    return list(sides) if not alternate or r % 2 else list(reversed(sides))


def run_command(side: Side, args: Sequence[str], out_dir: Path) -> list[str]:
    """The argv of one round: the side's interpreter, its harness, our output directory."""
    return [str(side.python), "-m", "benchmarks", "run", *args, OUTPUT_FLAG, str(out_dir)]


def side_env(side: Side) -> dict[str, str]:
    """PYTHONPATH first, so the tree's packages win over an editable install of another tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(side.tree), env.get("PYTHONPATH")]))
    return env


def check_harness(side: Side, args: Sequence[str] = ()) -> None:
    """RoundError (one line) unless this tree has a `python -m benchmarks run` that takes
    --results-dir and every flag of `args` (a round's flags): before its first round, so that
    a ref from before the harness, or from before a flag (`--rtt`), fails at once."""
    proc = subprocess.run(
        [str(side.python), "-m", "benchmarks", "run", "--help"],
        cwd=side.tree, env=side_env(side), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RoundError(
            f"{side.name}: `python -m benchmarks run --help` failed in {side.tree} "
            "(no harness at that commit?)"
        )
    known = set(re.findall(r"--[A-Za-z0-9][A-Za-z0-9-]*", proc.stdout))
    if OUTPUT_FLAG not in known:
        raise RoundError(
            f"{side.name}: `python -m benchmarks run` in {side.tree} has no {OUTPUT_FLAG}"
        )
    missing = [a for a in args if a.startswith("--") and a not in known]
    if missing:
        raise RoundError(
            f"{side.name}: `python -m benchmarks run` in {side.tree} does not take "
            f"{', '.join(missing)} (that commit predates it)"
        )
    # A flag that took no value there and takes one here (`--tls` before `--tls 1.2,1.3`).
    switches = set(re.findall(r"\[(--[A-Za-z0-9-]+)\]", proc.stdout))
    valueless = [a for a in args if a in VALUE_FLAGS and a in switches]
    if valueless:
        raise RoundError(
            f"{side.name}: `python -m benchmarks run` in {side.tree} takes "
            f"{', '.join(valueless)} without a value (that commit predates its values)"
        )


def result_csvs(root: Path) -> set[Path]:
    """Run CSVs under `root`: not in scratch or plot folders, nor in a run's artifacts folder
    (results/<host>/<stamp>-<commit>/ beside results/<host>/<stamp>-<commit>.csv, as trees
    before issue 9 write it and as a bundle unpacked by hand gives it back; today's runs write
    one .artifacts.tar.gz instead), and named as a run names its CSV (layout.RUN_CSV_NAME):
    not the rows `noise` keeps beside its JSON (noise-<stamp>.csv: several runs, not one) nor
    the scenarios' and `net slowstart`'s files (other formats)."""
    if not root.is_dir():
        return set()
    found = set()
    for path in root.rglob("*.csv"):
        folders = path.relative_to(root).parents
        if NOT_RUNS & {f.name for f in folders} or not RUN_CSV_NAME.match(path.name):
            continue
        if any((root / f).with_name(f"{f.name}.csv").is_file() for f in folders if f.name):
            continue
        found.add(path)
    return found


def run_round(side: Side, args: Sequence[str], out_dir: Path) -> list[Path]:
    """Run one round into `out_dir` (never the committed results/); the CSVs it wrote."""
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = run_command(side, args, out_dir)
    # The harness's own table goes to our stderr: stdout is reserved for the verdict (or JSON).
    proc = subprocess.run(argv, cwd=side.tree, env=side_env(side), stdout=sys.stderr)
    written = sorted(result_csvs(out_dir))
    if not written:
        raise RoundError(f"{side.name}: the run wrote no CSV (exit {proc.returncode})")
    return written


def read_all(paths: Sequence[Path]) -> list[ResultRow]:
    """Every row of a round's CSVs; a bad CSV is a failed round (RoundError, one line)."""
    rows: list[ResultRow] = []
    for path in paths:
        try:
            rows += read_rows(path)
        except SchemaError as exc:
            raise RoundError(str(exc)) from None
    return rows
