"""`python -m benchmarks bench-compare --base REF [bench flags]`: REF against the work tree, now.

Comparing against a CSV committed last week mixes the code change with everything else that
changed since (kernel, load, thermal state). This command measures both sides in the same
session instead: REF is checked out in a temporary `git worktree`, and the two trees run
interleaved, one repetition per round, so drift lands on both. The rows per side are then judged
with compare's rule.

Interpreter: when REF's pyproject.toml is byte-identical to the work tree's, this venv is reused
(dependencies are the same; PYTHONPATH points each run at its own tree's code). Otherwise the
worktree gets its own .venv via `make install`, so a dependency change is really measured. The
worktree is removed afterwards, also on error and Ctrl-C.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import rounds
from benchmarks.clientspec import REPO_ROOT
from benchmarks.compare import add_rule_arguments, compare_rows, report, rule_from_args
from benchmarks.rounds import RoundError, Side
from benchmarks.schema import SchemaError, write_rows
from servers.options import OneLineParser


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise RoundError(f"git {' '.join(args)}: {detail}")
    return proc.stdout.strip()


def resolve(repo: Path, ref: str) -> str:
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


def base_python(repo: Path, worktree: Path, commit: str) -> tuple[Path, str]:
    """The interpreter for REF, and a sentence saying which one and why."""
    if same_dependencies(repo, commit):
        return Path(sys.executable), "pyproject.toml identical: reusing this venv"
    proc = subprocess.run(["make", "install", f"PYTHON={sys.executable}"], cwd=worktree)
    if proc.returncode != 0:
        raise RoundError(f"`make install` failed in the worktree (exit {proc.returncode})")
    return worktree / ".venv" / "bin" / "python", "pyproject.toml differs: own venv (make install)"


def run_interleaved(
    sides: list[Side], bench_args: list[str], n_rounds: int, alternate: bool, out_root: Path
) -> dict[str, list[Path]]:
    flags = {side.name: rounds.detect_output_flag(side) for side in sides}
    written: dict[str, list[Path]] = {side.name: [] for side in sides}
    plan = rounds.schedule(sides, n_rounds, alternate)
    for step, (r, side) in enumerate(plan, start=1):
        print(
            f"bench-compare: [{step}/{len(plan)}] round {r}: {side.name} ({side.tree})",
            file=sys.stderr,
            flush=True,
        )
        out_dir = out_root / side.name / f"round-{r:03d}"
        written[side.name] += rounds.run_round(side, bench_args, out_dir, flags[side.name])
    return written


def main(argv: list[str]) -> int:
    parser = OneLineParser(
        prog="python -m benchmarks bench-compare",
        description="Bench a git ref and the work tree interleaved, then compare them. "
        "Exit 1 on any regression, 0 otherwise, 2 on bad input or a failed run.",
    )
    parser.add_argument("--base", required=True, metavar="REF", help="git ref to compare against")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side (default 5)")
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
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        rule = rule_from_args(args)
        repo = Path(git(REPO_ROOT, "rev-parse", "--show-toplevel"))
        commit = resolve(repo, args.base)
    except (RoundError, SchemaError) as exc:
        sys.stderr.write(f"bench-compare: error: {exc}\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="kab-bench-compare-") as tmp:
        worktree = Path(tmp) / "base"
        try:
            subprocess.run(
                worktree_add_command(repo, worktree, commit),
                check=True,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as exc:
            sys.stderr.write(f"bench-compare: error: git worktree add: {exc.stderr.strip()}\n")
            return 2
        try:
            python, why = base_python(repo, worktree, commit)
            print(f"bench-compare: base {args.base} = {commit[:12]}; {why}", file=sys.stderr)
            sides = [Side("base", worktree, python), Side("new", repo, Path(sys.executable))]
            written = run_interleaved(
                sides,
                rounds.bench_args(args),
                args.rounds,
                args.order == "alternate",
                Path(tmp) / "runs",
            )
            base, new = rounds.read_all(written["base"]), rounds.read_all(written["new"])
        except RoundError as exc:
            sys.stderr.write(f"bench-compare: error: {exc}\n")
            return 2
        except KeyboardInterrupt:
            sys.stderr.write("bench-compare: interrupted; removing the worktree\n")
            return 130
        finally:
            subprocess.run(worktree_remove_command(repo, worktree), capture_output=True)
            subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)
    if args.save:
        write_rows(args.save / "base.csv", base)
        write_rows(args.save / "new.csv", new)
    return report(compare_rows(base, new, rule), rule, args.json, args.fail_on_inconclusive)
