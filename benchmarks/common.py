"""What every command shares: the repository root, atomic writes, and the one-line usage error.

Stdlib only and cheap to import: the servers, the clients (under gevent too) and the analysis all
import it, and none of them may pay for another's dependencies through it.

Bad input is one line on stderr and exit status 2, never a traceback: `OneLineParser` does that
for argparse's own errors, `UsageError` is what a check after parsing raises (its subclasses name
the few cases a caller catches apart), and `print_error` writes the line.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_FILE_MODE = 0o644  # results are shared and committed; mkstemp's 0600 is for secrets
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad input: shown to the user as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; every command here prints one line, then exits 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def print_error(prog: str, message: object, status: int = EXIT_USAGE) -> int:
    """`PROG: error: MESSAGE` on stderr; returns `status` for `return print_error(...)`."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    return status


def sigterm_as_interrupt() -> None:
    """From now on SIGTERM (make or CI stopping us) unwinds like Ctrl-C, so every `finally`
    stops what the command started. Only the main thread may set handlers: elsewhere (a test
    calling main() from a thread) nothing changes."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def choose_subset(values: Iterable[str], choices: Sequence[str], flag: str) -> tuple[str, ...]:
    """Names given comma- or space-separated, as a subset of `choices` in their order.

    UsageError names what is unknown and lists the choices; an empty list is refused too.
    """
    given = list(values)
    names = [n.strip() for v in given for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in choices]
    if unknown or not names:
        raise UsageError(
            f"{flag}: unknown {unknown or ' '.join(given)!r}; choose from {', '.join(choices)}"
        )
    return tuple(c for c in choices if c in names)


def check_writable(folder: Path) -> None:
    """OSError if `folder` cannot hold a new file, so a bad output path fails before a run
    spends minutes measuring. A real probe: permission bits say nothing for root or on /proc."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def check_output_file(path: Path, flag: str) -> None:
    """UsageError now, not after minutes of measuring, when `path` cannot be written: the
    nearest existing folder is probed, since write_atomic creates the missing ones."""
    if path.is_dir():
        raise UsageError(f"{flag}: {path} is a directory")
    parent = next((p for p in path.absolute().parents if p.exists()), Path("/"))
    try:
        check_writable(parent)
    except OSError as exc:
        raise UsageError(f"{flag}: cannot write in {parent}: {exc.strerror}") from None


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, fsync, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, RESULT_FILE_MODE)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
