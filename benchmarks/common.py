"""What every command shares: the repository root, atomic writes, and the one-line usage error.

Stdlib only and cheap to import: the servers, the clients (under gevent too) and the analysis all
import it, and none of them may pay for another's dependencies through it.

Bad input is one line on stderr and exit status 2, never a traceback: `OneLineParser` does that
for argparse's own errors, `UsageError` is what a check after parsing raises (its subclasses name
the few cases a caller catches apart), and `print_error` writes the line.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn, TypeVar
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_FILE_MODE = 0o644  # results are shared and committed; mkstemp's 0600 is for secrets
EXIT_USAGE = 2
N = TypeVar("N", int, float)
T = TypeVar("T")
DEFAULT_PORTS = {"http": 80, "https": 443}


class UsageError(ValueError):
    """Bad input: shown to the user as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; every command here prints one line, then exits 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def number_type(
    kind: Callable[[str], N],
    low: float | None = None,
    high: float | None = None,
    *,
    above: bool = False,
) -> Callable[[str], N]:
    """An argparse `type`: a finite `kind` (int or float) in [low, high], or above `low` with
    `above=True`. A bad value is refused at parse time, in one line, before anything starts."""
    noun = "an integer" if kind is int else "a number"
    if low is not None and high is not None:
        bounds = f"between {low:g} and {high:g}"
    elif low is not None:
        bounds = f"{'>' if above else '>='} {low:g}"
    else:
        bounds = f"<= {high:g}" if high is not None else "finite"

    def convert(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {noun}, got {text!r}") from None
        number = float(value)
        if (
            not math.isfinite(number)
            or (low is not None and (number <= low if above else number < low))
            or (high is not None and number > high)
        ):
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    return convert


def seconds_text(value: float) -> str:
    """`5` rather than `5.0`, and never an exponent (`:g` turns 1234567 into 1.23457e+06).

    Used for argv, so that options round-trip exactly.
    """
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


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


def parse_list(text: str, flag: str, convert: Callable[[str], T]) -> tuple[T, ...]:
    """`a,b,c` -> each item converted, de-duplicated, in the given order. UsageError (one line)
    names an empty item or one `convert` refuses (its own UsageError message, or "bad value"
    for a ValueError)."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise UsageError(f"{flag}: empty value in {text!r} (use a comma-separated list)")
    out: list[T] = []
    for item in items:
        try:
            value = convert(item)
        except UsageError:
            raise
        except ValueError:
            raise UsageError(f"{flag}: bad value {item!r}") from None
        if value not in out:
            out.append(value)
    return tuple(out)


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


def split_http_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of an http:// or https:// URL; UsageError if it is
    anything else. The port defaults to the scheme's, the target (path and query) to `/`;
    the host is as written (brackets of an IPv6 literal removed): it names the TLS server and
    goes in the Host header (`HttpTarget.host_header`)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"malformed URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"URL must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise UsageError(f"URL has no host: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"URL with user info is not supported: {url!r}")
    if any(c in url for c in " \r\n\t"):
        raise UsageError(f"URL contains whitespace: {url!r}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme], target


@dataclass(frozen=True)
class HttpTarget:
    """Where requests go: scheme, host (as written), port and request target. The clients and
    the doctor extend it with what they need (a CA; the resolved address)."""

    scheme: str
    host: str  # as written in the URL: Host header and TLS server name
    port: int
    path: str  # request target: path and query

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        """The Host field: brackets around an IPv6 literal, no default port."""
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == DEFAULT_PORTS[self.scheme] else f"{name}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path}"


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


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename: never a half-written file
    (a reader sees the old one or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, RESULT_FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_section(text: str, begin: str, end: str, body: str) -> str:
    """`text` with what lies between the markers `begin` and `end` replaced by `body`: how the
    column tables of results/README.md are kept generated. UsageError when a marker is missing."""
    head, sep, rest = text.partition(begin)
    _, sep2, tail = rest.partition(end)
    if not sep or not sep2:
        raise UsageError(f"README has no {begin!r} ... {end!r} section")
    return f"{head}{begin}\n{body}\n{end}{tail}"


def generated_table_main(
    prog: str, argv: list[str] | None, table: Callable[[], str], begin: str, end: str
) -> int:
    """`prog [--update README]`: print `table()`, or rewrite README's generated section with it
    (atomically); a bad path or a README without the markers is one line, exit 2."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--update":
        path = Path(args[1])
        try:
            write_atomic(path, replace_section(path.read_text(), begin, end, table()))
        except (OSError, UsageError) as exc:
            sys.stderr.write(f"{prog}: error: {exc}\n")
            return 2
        return 0
    if args:
        sys.stderr.write(f"usage: {prog} [--update results/README.md]\n")
        return 2
    print(table())
    return 0
