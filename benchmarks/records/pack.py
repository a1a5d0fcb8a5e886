"""`python -m benchmarks pack`: fold each run's artifact folder into one bundle, as runs now write.

Runs before issue 9 wrote a folder per run beside its CSV: per cell a client JSON, a pyperf JSON
and two logs, 84 files for a full run. This turns each such folder into the run's
`<name>.artifacts.tar.gz` (records.layout): the JSONs all kept, the logs only of cells whose row
failed or is invalid (and of any cell whose row cannot be told). The CSVs are not touched, so
compare, report and bench-compare read every run as before.

Each bundle is written atomically and read back before its folder is removed; packing the same
folder again gives the same bytes, and a folder already packed is gone, so running it twice is
harmless. A folder holding anything but a cell's files (a subfolder, a hidden leftover) is left
as it is, with one line saying why. Exit status: 0 everything packed (or nothing to do), 1 some
folder left as it was, 2 bad input.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.records.layout import (
    LOG_SUFFIX,
    BundleError,
    bundle_bytes,
    bundle_of,
    keeps_logs,
    read_bundle,
    stamp_mtime,
    write_bytes_atomic,
)
from benchmarks.records.schema import ResultRow, SchemaError, read_rows
from servers.options import OneLineParser

PROG = "python -m benchmarks pack"
SKIP_DIRS = {"tmp", "plots"}  # scratch and report output under results/, never a machine


@dataclass(frozen=True)
class Pack:
    """What packing one run's folder means: the bundle's members and the logs left out."""

    csv: Path
    members: dict[str, bytes]
    dropped: tuple[str, ...]
    files: int  # in the folder


def run_folders(results_dir: Path) -> list[Path]:
    """Run CSVs that still have an artifact folder beside them, per machine, oldest first."""
    found = []
    for csv_path in sorted(results_dir.glob("*/*.csv")):
        if csv_path.parent.name in SKIP_DIRS:
            continue
        if csv_path.with_suffix("").is_dir():
            found.append(csv_path)
    return found


def row_of(slug: str, rows: list[ResultRow]) -> ResultRow | None:
    """The row of cell `NNN-server-client-mode-...`: the run's NNN-th row, if it is that cell."""
    index, _, rest = slug.partition("-")
    if not index.isdigit() or not 1 <= int(index) <= len(rows):
        return None
    row = rows[int(index) - 1]
    return row if rest.startswith(f"{row.server}-{row.client}-{row.mode}-") else None


def wants_logs(name: str, rows: list[ResultRow]) -> bool:
    """Keep a cell's log when its row failed or is invalid, or when no row can be matched."""
    row = row_of(name.split(".", 1)[0], rows)
    return row is None or keeps_logs(row)


def plan(csv_path: Path) -> Pack | str:
    """The bundle for `csv_path`'s folder (merged with a bundle already there), or why not."""
    folder = csv_path.with_suffix("")
    try:
        rows = read_rows(csv_path)
    except SchemaError as exc:
        return f"{folder}: left as it is: {exc}"
    entries = sorted(folder.iterdir())
    odd = next((p.name for p in entries if not p.is_file() or p.name.startswith(".")), None)
    if odd is not None:
        return f"{folder}: left as it is: {odd} is not a file of a cell"
    members: dict[str, bytes] = {}
    bundle = bundle_of(csv_path)
    if bundle.is_file():
        try:
            members.update(read_bundle(bundle))
        except BundleError as exc:
            return f"{folder}: left as it is: {exc}"
    dropped = []
    for path in entries:
        if path.name.endswith(LOG_SUFFIX) and not wants_logs(path.name, rows):
            dropped.append(path.name)
        else:
            members[path.name] = path.read_bytes()
    return Pack(csv_path, members, tuple(dropped), len(entries))


def apply(pack: Pack) -> None:
    """Write the bundle atomically, check it reads back whole, then remove the folder."""
    bundle, folder = bundle_of(pack.csv), pack.csv.with_suffix("")
    write_bytes_atomic(bundle, bundle_bytes(folder.name, pack.members, stamp_mtime(folder.name)))
    if read_bundle(bundle) != pack.members:
        raise BundleError(f"{bundle}: does not read back as written; {folder} kept")
    shutil.rmtree(folder)


def describe(pack: Pack) -> str:
    logs = sum(name.endswith(LOG_SUFFIX) for name in pack.members)
    return (
        f"{pack.csv.with_suffix('')}/: {pack.files} files -> {bundle_of(pack.csv).name} "
        f"({len(pack.members)} files, {logs} logs of failed or invalid cells; "
        f"{len(pack.dropped)} logs of cells that ran fine dropped)"
    )


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument(
        "--results-dir", type=Path, default=Path("results"), help="default: results/"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would be packed, change nothing"
    )
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.results_dir.is_dir():
        parser.error(f"--results-dir {args.results_dir}: not a directory")
    failed = 0
    csvs = run_folders(args.results_dir)
    for csv_path in csvs:
        pack = plan(csv_path)
        if isinstance(pack, str):
            failed += 1
            sys.stderr.write(f"{PROG}: {pack}\n")
            continue
        try:
            if not args.dry_run:
                apply(pack)
        except (OSError, BundleError) as exc:
            failed += 1
            sys.stderr.write(f"{PROG}: {csv_path.with_suffix('')}: {exc}\n")
            continue
        print(("would pack " if args.dry_run else "") + describe(pack))
    if not csvs:
        print(f"nothing to pack: no run folder under {args.results_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
