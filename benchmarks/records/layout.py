"""Where a run writes: one new CSV per run per machine, artifacts in a folder named after it.

    results/<host_id>/<UTC timestamp>-<commit>.csv      the rows (benchmarks.records.schema)
    results/<host_id>/<UTC timestamp>-<commit>/         client JSONs, pyperf JSONs, logs

Like asv, results are grouped per machine (numbers from two machines never mix by accident) and
an existing file is never rewritten: the name has a timestamp to the second and a suffix is added
if it is taken. The CSV is rewritten atomically after every cell, so a crash or Ctrl-C keeps
everything measured so far.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
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


NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How a client's or server's log says it: a traceback's `OSError: [Errno 28] No space left ...`.
NO_SPACE_TEXT = re.compile(r"No space left on device|Disk quota exceeded|\bENOSPC\b|\bEDQUOT\b")
SPACE_PROBE_BYTES = 64 * 1024  # a cell writes about 10 KB (logs, two JSONs, the pyperf parts)


def is_no_space(exc: BaseException) -> bool:
    """The disk (or the user's quota) is full: no later cell can write its results either."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


def no_space_left(folder: Path) -> str:
    """The error (`No space left on device`) when `folder` cannot take one more cell's files,
    else "". A real write, fsynced: free blocks from statvfs say nothing of quotas, of root's
    reserved blocks or of a network file system that fails only on flush."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".space-probe.")
    except OSError as exc:
        return _no_space_reason(exc)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(bytes(SPACE_PROBE_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        return _no_space_reason(exc)
    finally:
        with contextlib.suppress(OSError):
            Path(name).unlink(missing_ok=True)
    return ""


def _no_space_reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)) if is_no_space(exc) else ""


def free_space(folder: Path) -> str:
    """`12 KiB free`, for the message that says the disk is full."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "free space unknown"
    return f"{free // 1024:,} KiB free" if free < 1 << 30 else f"{free / (1 << 30):.1f} GiB free"


def no_space_in(log: Path, tail_bytes: int = 64 * 1024) -> str:
    """What the end of a log says about a full disk (`No space left on device`), or "": the
    traceback of a pyperf worker, say, that the client's own last line sums up as `worker
    failed`."""
    try:
        with log.open("rb") as fh:
            fh.seek(max(0, log.stat().st_size - tail_bytes))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    found = NO_SPACE_TEXT.search(text)
    return found.group(0) if found else ""
