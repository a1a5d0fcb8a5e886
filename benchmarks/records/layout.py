"""Where a run writes: one new CSV per run per machine, artifacts in a folder named after it.

    results/<host_id>/<UTC timestamp>-<commit>.csv      the rows (benchmarks.records.schema)
    results/<host_id>/<UTC timestamp>-<commit>/         client JSONs, pyperf JSONs, logs

Like asv, results are grouped per machine (numbers from two machines never mix by accident) and
an existing file is never rewritten: the name has a timestamp to the second and a suffix is added
if it is taken. The CSV is rewritten atomically after every cell, so a crash or Ctrl-C keeps
everything measured so far.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.records.schema import ResultRow, write_rows


def utc_stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def utc_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_paths(results_dir: Path, host_id: str, stamp: str, commit: str) -> tuple[Path, Path]:
    """(csv path, artifacts folder) that do not exist yet; the folder is created."""
    base = results_dir / host_id
    base.mkdir(parents=True, exist_ok=True)
    stem = f"{stamp}-{commit}"
    for n in range(1000):
        name = stem if n == 0 else f"{stem}-{n}"
        csv_path, folder = base / f"{name}.csv", base / name
        if not csv_path.exists() and not folder.exists():
            try:
                folder.mkdir()
            except FileExistsError:  # another run took it between the check and now
                continue
            return csv_path, folder
    raise FileExistsError(f"{base}: no free file name for {stem}")


class RunWriter:
    """Accumulates rows and rewrites the run's CSV atomically after each one.

    `rows` are the rows on disk: when a write fails (OSError) the row is not added and the file
    keeps the previous rows, whole."""

    def __init__(self, csv_path: Path) -> None:
        self.path = csv_path
        self.rows: list[ResultRow] = []

    def add(self, row: ResultRow) -> None:
        write_rows(self.path, [*self.rows, row])
        self.rows.append(row)


def keep_artifacts(paths: list[str], folder: Path, relative_to: Path) -> list[Path]:
    """Copy client artifacts (e.g. pyperf JSON) into the run's folder unless already there."""
    kept = []
    for name in paths:
        src = Path(name)
        if not src.is_absolute():
            src = relative_to / src
        if not src.is_file():
            continue
        dest = src if src.parent.resolve() == folder.resolve() else folder / src.name
        if dest != src:
            shutil.copy2(src, dest)
        kept.append(dest)
    return kept


def remove_client_leftovers(output: Path) -> None:
    """Hidden files a killed client leaves beside its result (`.<name>.parts.*` directories of
    pyperf workers' tallies, `.<name>.*.tmp` of an interrupted atomic write)."""
    for path in output.parent.glob(f".{output.name}.*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def discard_run_folder(folder: Path) -> bool:
    """Remove the artifacts folder of a run that recorded no row: its logs belong to no row.
    False when it could not be removed (the caller says it was kept)."""
    shutil.rmtree(folder, ignore_errors=True)
    return not folder.exists()
