"""Where a run writes: two files per run per machine, the rows and one bundle of artifacts.

    results/<host_id>/<UTC timestamp>-<commit>.csv                  the rows (records.schema)
    results/<host_id>/<UTC timestamp>-<commit>.artifacts.tar.gz     every cell's client JSON
        (with its histogram) and pyperf JSON; the client and server logs of failed or invalid
        cells only. Its members sit in a folder named like the run, so `tar -xzf` beside the CSV
        gives back the folder that runs wrote before issue 9.

Like asv, results are grouped per machine (numbers from two machines never mix by accident) and
an existing run is never rewritten: the name has a timestamp to the second and a suffix is added
if it is taken. Both files are rewritten atomically after every cell, so a crash or Ctrl-C keeps
everything measured so far. While the run goes on, the cells write into a hidden working folder
beside them (`.<name>.partial/`, which also reserves the name); what a cell leaves there is moved
into the bundle once its row is written, and the folder is removed at the end, or by the next run
after a crash (its pid file names a process that is gone). Logs of cells that ran fine are
dropped: committed, they were 2 files of 3 per cell and nobody read them.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import RESULT_FILE_MODE, write_atomic
from benchmarks.records.schema import ResultRow, write_rows

BUNDLE_SUFFIX = ".artifacts.tar.gz"
PARTIAL_SUFFIX = ".partial"
PID_FILE = "pid"
LOG_SUFFIX = ".log"  # <cell>.client.log, <cell>.server.log

# Folders under results/ that hold no run: scratch and the report's plots.
NOT_RUNS = frozenset({"tmp", "plots"})
# What new_run_paths names a run's CSV: `<UTC stamp>-<commit>[-n].csv`. Every other CSV under
# results/ is something else (noise-*, slowstart-*, race-*, ports-*: other formats or several
# runs) and is never read as one run.
RUN_CSV_NAME = re.compile(r"^\d{8}T\d{6}Z-[^/]+\.csv$")


def utc_stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def utc_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp_mtime(name: str) -> int:
    """Seconds since the epoch of the UTC stamp a run's name starts with (0 if it has none):
    the time bundle members carry, so a bundle's bytes depend on its content only."""
    try:
        return int(datetime.strptime(name[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp())
    except ValueError:
        return 0


@dataclass(frozen=True)
class RunPaths:
    """The files of one run; `work` exists (it reserves the name), the others not yet."""

    csv: Path
    bundle: Path
    work: Path

    @property
    def name(self) -> str:
        return self.csv.stem


def bundle_of(csv_path: Path) -> Path:
    """The artifact bundle that belongs to a run CSV."""
    return csv_path.with_name(csv_path.stem + BUNDLE_SUFFIX)


def _taken(base: Path, name: str) -> bool:
    """Any file of a run called `name`, in today's layout or the folder of older runs."""
    candidates = (f"{name}.csv", f"{name}{BUNDLE_SUFFIX}", name, f".{name}{PARTIAL_SUFFIX}")
    return any((base / c).exists() for c in candidates)


def new_run_paths(results_dir: Path, host_id: str, stamp: str, commit: str) -> RunPaths:
    """Paths of a run that no other run uses; the working folder is created (with our pid)."""
    base = results_dir / host_id
    base.mkdir(parents=True, exist_ok=True)
    remove_stale_work(base)
    stem = f"{stamp}-{commit}"
    for n in range(1000):
        name = stem if n == 0 else f"{stem}-{n}"
        if _taken(base, name):
            continue
        work = base / f".{name}{PARTIAL_SUFFIX}"
        try:
            work.mkdir()
        except FileExistsError:  # another run took it between the check and now
            continue
        (work / PID_FILE).write_text(f"{os.getpid()}\n")
        return RunPaths(base / f"{name}.csv", base / f"{name}{BUNDLE_SUFFIX}", work)
    raise FileExistsError(f"{base}: no free file name for {stem}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_work(base: Path) -> list[Path]:
    """Working folders of runs that died without cleaning up (SIGKILL, power loss): their pid
    file names no live process. A folder without a readable pid is left alone (not ours)."""
    removed = []
    for work in base.glob(f".*{PARTIAL_SUFFIX}"):
        try:
            pid = int((work / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(work, ignore_errors=True)
            removed.append(work)
    return removed


def keeps_logs(row: ResultRow) -> bool:
    """Full logs are worth keeping only where something went wrong."""
    return row.status != "ok" or not row.valid


def cell_files(work: Path, slug: str) -> list[Path]:
    """What one cell left in the working folder: `<slug>.json`, `<slug>.json.pyperf.json`, its
    logs (hidden leftovers of a killed client are not included)."""
    return sorted(p for p in work.glob(f"{slug}.*") if p.is_file())


def bundle_bytes(folder: str, members: Mapping[str, bytes], mtime: int = 0) -> bytes:
    """A gzipped tar of `members` (file name -> content) under `folder/`, byte-for-byte the same
    for the same input: sorted names, fixed owner, mode, mtime, and no time in the gzip header,
    so packing a committed run again changes nothing in git."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mode, info.mtime = len(data), RESULT_FILE_MODE, mtime
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


class BundleError(ValueError):
    """A bundle that cannot be read as one; the message is one line."""


def read_bundle(path: Path) -> dict[str, bytes]:
    """File name -> content of every member of a bundle (the folder part dropped)."""
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for info in tar:
                name = info.name.rsplit("/", 1)[-1]
                handle = tar.extractfile(info) if info.isfile() else None
                if handle is None or not name or name.startswith("."):
                    raise BundleError(f"{path}: unexpected member {info.name!r}")
                members[name] = handle.read()
    except (tarfile.TarError, EOFError, gzip.BadGzipFile) as exc:
        raise BundleError(f"{path}: not an artifact bundle ({exc})") from None
    return members


def run_artifacts(csv_path: Path) -> dict[str, bytes]:
    """Every artifact of a run, whichever layout it was written in: the bundle beside the CSV,
    or (runs before issue 9, or a bundle unpacked by hand) the folder of the same name. Both
    exist only while `python -m benchmarks pack` folds one into the other: the folder wins."""
    found: dict[str, bytes] = {}
    bundle = bundle_of(csv_path)
    if bundle.is_file():
        found.update(read_bundle(bundle))
    folder = csv_path.with_suffix("")
    if folder.is_dir():
        found.update({p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()})
    return found


class RunWriter:
    """Rewrites the run's CSV and its bundle atomically after each cell.

    `rows` are the rows on disk: when a write fails (OSError) the row is not added, and the
    files on disk keep the previous cells, whole. The bundle is written first, so a row in the
    CSV always has its artifacts in the bundle."""

    def __init__(self, paths: RunPaths) -> None:
        self.paths = paths
        self.path = paths.csv
        self.rows: list[ResultRow] = []
        self.members: dict[str, bytes] = {}

    def add(self, row: ResultRow, slug: str) -> None:
        """Write `row`, and move what cell `slug` left in the working folder into the bundle."""
        files = cell_files(self.paths.work, slug)
        logs = keeps_logs(row)
        new = {p.name: p.read_bytes() for p in files if logs or not p.name.endswith(LOG_SUFFIX)}
        members = {**self.members, **new}
        data = bundle_bytes(self.paths.name, members, stamp_mtime(self.paths.name))
        write_atomic(self.paths.bundle, data)
        write_rows(self.path, [*self.rows, row])
        self.members = members
        self.rows.append(row)
        for path in files:
            path.unlink(missing_ok=True)

    def close(self) -> bool:
        """Remove the working folder; False when it could not be removed (the caller says so)."""
        shutil.rmtree(self.paths.work, ignore_errors=True)
        return not self.paths.work.exists()


def keep_artifacts(paths: list[str], folder: Path, relative_to: Path) -> list[Path]:
    """Copy client artifacts (e.g. pyperf JSON) into the working folder unless already there."""
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
