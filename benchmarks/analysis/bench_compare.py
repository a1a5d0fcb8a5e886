"""`python -m benchmarks bench-compare --base REF [bench flags]`: REF against the work tree, now.

Comparing against a CSV committed last week mixes the code change with everything else that
changed since (kernel, load, thermal state). This command measures both sides in the same
session instead: REF is checked out in a temporary `git worktree`, and the two trees run
interleaved, one repetition per round, so drift lands on both. The rows per side are then judged
with compare's rule.

Interpreter: when REF's pyproject.toml is byte-identical to the work tree's, this venv is reused
(dependencies are the same; PYTHONPATH points each run at its own tree's code). Otherwise the
worktree gets its own .venv via `make install`, so a dependency change is really measured; the
`packages` fingerprint then differs by construction and is ignored (said on stderr), since the
dependency change is what is being measured. The worktree is removed afterwards, also on error
and Ctrl-C.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from benchmarks.analysis import rounds
from benchmarks.analysis.compare import compare_rows, report
from benchmarks.analysis.rounds import RoundError, Side
from benchmarks.analysis.rule import (
    Rule,
    add_noise_arguments,
    add_rule_arguments,
    read_noise_file,
    resolve_floor,
    rule_from_args,
    thresholds_line,
    with_noise_floor,
)
from benchmarks.common import REPO_ROOT, OneLineParser, UsageError, print_error
from benchmarks.records.schema import ResultRow, write_rows


def git(repo: Path, *args: str) -> str:
    """Run git in `repo`, return its stdout; RoundError with git's last stderr line on failure."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise RoundError(f"git {' '.join(args)}: {detail}")
    return proc.stdout.strip()


def resolve(repo: Path, ref: str) -> str:
    """The full commit a ref names, so the report says exactly what was measured."""
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except RoundError:
        raise RoundError(f"unknown git ref {ref!r}") from None


def worktree_add_command(repo: Path, path: Path, commit: str) -> list[str]:
    """Detached, so no branch is created or locked in the user's repository."""
    return ["git", "-C", str(repo), "worktree", "add", "--detach", str(path), commit]


def worktree_remove_command(repo: Path, path: Path) -> list[str]:
    """--force: the worktree has untracked files (.venv, results) that must go with it."""
    return ["git", "-C", str(repo), "worktree", "remove", "--force", str(path)]


def same_dependencies(repo: Path, commit: str) -> bool:
    """True when REF's pyproject.toml equals the work tree's, byte for byte."""
    try:
        theirs = git(repo, "show", f"{commit}:pyproject.toml")
    except RoundError:
        return False
    return theirs.strip() == (repo / "pyproject.toml").read_text().strip()


def base_python(worktree: Path, same_deps: bool) -> tuple[Path, str]:
    """The interpreter for REF, and a sentence saying which one and why."""
    if same_deps:
        return Path(sys.executable), "pyproject.toml identical: reusing this venv"
    proc = subprocess.run(["make", "install", f"PYTHON={sys.executable}"], cwd=worktree)
    if proc.returncode != 0:
        raise RoundError(f"`make install` failed in the worktree (exit {proc.returncode})")
    return worktree / ".venv" / "bin" / "python", "pyproject.toml differs: own venv (make install)"


def rule_for_venvs(rule: Rule, same_deps: bool) -> Rule:
    """With its own venv the base's package versions differ by design: ignore `packages`.

    Otherwise every cell would be "machine differs: packages" and the run would decide nothing.
    """
    if same_deps or "packages" in rule.ignore_fingerprint:
        return rule
    print(
        "bench-compare: the base has its own venv, so package versions differ by design: "
        "ignoring the packages fingerprint",
        file=sys.stderr,
    )
    return replace(rule, ignore_fingerprint=(*rule.ignore_fingerprint, "packages"))


def run_interleaved(
    sides: list[Side], bench_args: list[str], n_rounds: int, alternate: bool, out_root: Path
) -> dict[str, list[Path]]:
    """Run the sides round by round in schedule order; the CSVs each side wrote."""
    for side in sides:
        rounds.check_harness(side, bench_args)
    written: dict[str, list[Path]] = {side.name: [] for side in sides}
    plan = rounds.schedule(sides, n_rounds, alternate)
    for step, (r, side) in enumerate(plan, start=1):
        print(
            f"bench-compare: [{step}/{len(plan)}] round {r}: {side.name} ({side.tree})",
            file=sys.stderr,
            flush=True,
        )
        out_dir = out_root / side.name / f"round-{r:03d}"
        written[side.name] += rounds.run_round(side, bench_args, out_dir)
    return written


def build_parser() -> argparse.ArgumentParser:
    """The bench-compare CLI: the ref, rounds and order, --save, bench and rule flags."""
    parser = OneLineParser(
        prog="python -m benchmarks bench-compare",
        description="Bench a git ref and the work tree interleaved, then compare them. "
        "Exit 1 on any regression, 0 otherwise, 2 on bad input or a failed run.",
    )
    parser.add_argument("--base", required=True, metavar="REF", help="git ref to compare against")
    parser.add_argument(
        "--rounds",
        type=int,
        default=rounds.BENCH_COMPARE_ROUNDS,
        help=f"rounds per side (default {rounds.BENCH_COMPARE_ROUNDS})",
    )
    parser.add_argument(
        "--order",
        choices=("alternate", "fixed"),
        default="alternate",
        help="alternate: AB BA AB ... (cancels linear drift); fixed: AB AB ...",
    )
    parser.add_argument(
        "--save",
        type=Path,
        metavar="DIR",
        help="also write base.csv and new.csv here, for a later `compare`",
    )
    rounds.add_bench_arguments(parser)
    add_rule_arguments(parser)
    add_noise_arguments(parser)
    return parser


def measure_in_worktree(
    args: argparse.Namespace, repo: Path, commit: str, tmp: Path
) -> tuple[list[ResultRow], list[ResultRow], bool]:
    """Base rows, work-tree rows, and whether both used the same dependencies.

    The worktree exists only inside this function: it is removed on success, error and Ctrl-C.
    """
    worktree = tmp / "base"
    proc = subprocess.run(
        worktree_add_command(repo, worktree, commit), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RoundError(f"git worktree add: {proc.stderr.strip()}")
    try:
        same_deps = same_dependencies(repo, commit)
        python, why = base_python(worktree, same_deps)
        print(f"bench-compare: base {args.base} = {commit[:12]}; {why}", file=sys.stderr)
        sides = [Side("base", worktree, python), Side("new", repo, Path(sys.executable))]
        alternate = args.order == "alternate"
        bench = rounds.bench_args(args)
        written = run_interleaved(sides, bench, args.rounds, alternate, tmp / "runs")
        return rounds.read_all(written["base"]), rounds.read_all(written["new"]), same_deps
    finally:
        subprocess.run(worktree_remove_command(repo, worktree), capture_output=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)


def judge(args: argparse.Namespace, base: list[ResultRow], new: list[ResultRow], rule: Rule) -> int:
    """compare's rule on the two sides, with the same noise floor compare would use."""
    floor = resolve_floor(args.noise, args.results_dir, base + new, rule.ignore_fingerprint)
    print(thresholds_line(rule.thresholds, floor), file=sys.stderr)
    effective = replace(rule, thresholds=with_noise_floor(rule.thresholds, floor))
    comparison = compare_rows(base, new, effective)
    return report(comparison, effective, args.json, args.fail_on_inconclusive, floor)


def main(argv: list[str]) -> int:
    """Validate everything cheap first, then measure, save if asked, and judge."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        rule = rule_from_args(args)
        if args.noise not in ("auto", "none"):
            read_noise_file(Path(args.noise))  # a bad file fails now, not after the rounds
        repo = Path(git(REPO_ROOT, "rev-parse", "--show-toplevel"))
        commit = resolve(repo, args.base)
        with tempfile.TemporaryDirectory(prefix="kab-bench-compare-") as tmp:
            base, new, same_deps = measure_in_worktree(args, repo, commit, Path(tmp))
        if args.save:
            write_rows(args.save / "base.csv", base)
            write_rows(args.save / "new.csv", new)
        return judge(args, base, new, rule_for_venvs(rule, same_deps))
    except (RoundError, UsageError) as exc:
        return print_error("bench-compare", exc)
    except KeyboardInterrupt:
        sys.stderr.write("bench-compare: interrupted; the worktree was removed\n")
        return 130
