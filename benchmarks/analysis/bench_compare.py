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

`--scenario pageload` does the same for the page-load scenario (`make bench-compare
SCENARIO=pageload`): its flags instead of the harness's (benchmarks.pageload.rounds), one
`python -m benchmarks pageload` per side and round, and the page-load rows judged as compare
judges them (benchmarks.pageload.compare: page_load_p50_ms and page_load_p90_ms, the noise floor
of noise-pageload-*.json), so a commit that slows page loads is caught.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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


BENCH, PAGELOAD = "bench", "pageload"
SCENARIOS = (BENCH, PAGELOAD)


@dataclass(frozen=True)
class Runner:
    """How one scenario's rounds run: the refusal check, one round, its rows."""

    check: Callable[[Side, Sequence[str]], None]
    run_round: Callable[[Side, Sequence[str], Path], list[Path]]
    read_all: Callable[[Sequence[Path]], list[Any]]
    args: Callable[[argparse.Namespace], list[str]]


def runner_for(scenario: str) -> Runner:
    """`make bench` rows (benchmarks.analysis.rounds) or page loads (benchmarks.pageload)."""
    if scenario == PAGELOAD:
        from benchmarks.pageload import rounds as pages

        return Runner(pages.check_scenario, pages.run_round, pages.read_all, pages.scenario_args)
    return Runner(rounds.check_harness, rounds.run_round, rounds.read_all, rounds.bench_args)


def run_interleaved(
    sides: list[Side], bench_args: list[str], n_rounds: int, alternate: bool, out_root: Path,
    runner: Runner | None = None,
) -> dict[str, list[Path]]:  # fmt: skip
    """Run the sides round by round in schedule order; the CSVs each side wrote."""
    runner = runner or runner_for(BENCH)
    for side in sides:
        runner.check(side, bench_args)
    written: dict[str, list[Path]] = {side.name: [] for side in sides}
    plan = rounds.schedule(sides, n_rounds, alternate)
    for step, (r, side) in enumerate(plan, start=1):
        print(
            f"bench-compare: [{step}/{len(plan)}] round {r}: {side.name} ({side.tree})",
            file=sys.stderr,
            flush=True,
        )
        out_dir = out_root / side.name / f"round-{r:03d}"
        written[side.name] += runner.run_round(side, bench_args, out_dir)
    return written


def scenario_of(argv: Sequence[str]) -> str:
    """`--scenario` before the full parse: it decides which flags the parser has."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--scenario", choices=SCENARIOS, default=BENCH)
    known, _ = pre.parse_known_args(list(argv))
    return str(known.scenario)


def build_parser(scenario: str = BENCH) -> argparse.ArgumentParser:
    """The bench-compare CLI: the ref, rounds and order, --save, the scenario's and the rule's
    flags."""
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
        help="also write base.csv and new.csv here (pageload-base.csv and pageload-new.csv for "
        "the page-load scenario), for a later `compare`",
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default=BENCH,
        help="bench (default): `python -m benchmarks run` rows; pageload: `python -m "
        "benchmarks pageload` rows, with its flags (see --scenario pageload --help)",
    )
    if scenario == PAGELOAD:
        from benchmarks.pageload import rounds as pages

        pages.add_arguments(parser)
    else:
        rounds.add_bench_arguments(parser)
    add_rule_arguments(parser)
    add_noise_arguments(parser)
    return parser


def measure_in_worktree(
    args: argparse.Namespace, repo: Path, commit: str, tmp: Path, runner: Runner | None = None
) -> tuple[list[Any], list[Any], bool]:
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
        runner = runner or runner_for(BENCH)
        bench = runner.args(args)
        written = run_interleaved(sides, bench, args.rounds, alternate, tmp / "runs", runner)
        return runner.read_all(written["base"]), runner.read_all(written["new"]), same_deps
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


def judge_pages(args: argparse.Namespace, base: list[Any], new: list[Any], same_deps: bool) -> int:
    """The page-load rows judged as `compare` judges them; `packages` ignored with own venv."""
    from benchmarks.pageload import compare as pages

    if not same_deps and "packages" not in args.ignore_fingerprint.split(","):
        print(
            "bench-compare: the base has its own venv, so package versions differ by design: "
            "ignoring the packages fingerprint",
            file=sys.stderr,
        )
        args.ignore_fingerprint = ",".join(filter(None, [args.ignore_fingerprint, "packages"]))
    return pages.judge(base, new, args, "bench-compare")


def save_rows(scenario: str, folder: Path, base: list[Any], new: list[Any]) -> None:
    """base.csv and new.csv (bench rows), or pageload-base.csv and pageload-new.csv."""
    if scenario == PAGELOAD:
        from benchmarks.pageload.rows import write_rows as write_pages

        write_pages(folder / "pageload-base.csv", base)
        write_pages(folder / "pageload-new.csv", new)
        return
    write_rows(folder / "base.csv", base)
    write_rows(folder / "new.csv", new)


def main(argv: list[str]) -> int:
    """Validate everything cheap first, then measure, save if asked, and judge."""
    scenario = scenario_of(argv)
    parser = build_parser(scenario)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        rule = rule_from_args(args)
        if args.noise not in ("auto", "none"):
            read_noise_file(Path(args.noise))  # a bad file fails now, not after the rounds
        repo = Path(git(REPO_ROOT, "rev-parse", "--show-toplevel"))
        commit = resolve(repo, args.base)
        runner = runner_for(scenario)
        with tempfile.TemporaryDirectory(prefix="kab-bench-compare-") as tmp:
            base, new, same_deps = measure_in_worktree(args, repo, commit, Path(tmp), runner)
        if args.save:
            save_rows(scenario, args.save, base, new)
        if scenario == PAGELOAD:
            return judge_pages(args, base, new, same_deps)
        return judge(args, base, new, rule_for_venvs(rule, same_deps))
    except (RoundError, UsageError) as exc:
        return print_error("bench-compare", exc)
    except KeyboardInterrupt:
        sys.stderr.write("bench-compare: interrupted; the worktree was removed\n")
        return 130
