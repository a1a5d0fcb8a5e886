"""What the wrapped third-party servers (nginx, Node) share: finding the binary, a private work
directory, TLS files, and making sure no child outlives the wrapper.

`python -m servers nginx|node` must look to the harness and the tests exactly like a reference
server (same options, READY line, control listener, stop on SIGTERM), so everything a foreign
binary needs that our servers keep in memory (a certificate and key as files, a config file, an
access log) lives in one temporary directory that is removed on exit and, after a crash, by the
next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from servers.options import OptionsError, ServerName, ServerOptions

INSTALL_HINTS = {
    ServerName.NGINX: "apt-get install nginx",
    ServerName.NODE: "apt-get install nodejs",
}
# Binaries under sbin are not on every user's PATH.
_CANDIDATES = {
    ServerName.NGINX: ("nginx", "/usr/sbin/nginx"),
    ServerName.NODE: ("node", "nodejs"),
}
OWNER_FILE = "owner.pid"
_PR_SET_PDEATHSIG = 1


def find_binary(name: ServerName) -> str | None:
    """The executable that serves `name`, or None when it is not installed."""
    for candidate in _CANDIDATES.get(name, ()):
        found = shutil.which(candidate)
        if found is not None:
            return found
    return None


def missing_reason(name: ServerName) -> str | None:
    """One line saying how to install `name`'s binary; None when it is installed (or ours)."""
    if name not in INSTALL_HINTS or find_binary(name) is not None:
        return None
    return f"{name} is not installed ({INSTALL_HINTS[name]})"


def require_binary(name: ServerName) -> str:
    """The binary, or an OptionsError (one line, exit 2) that says how to install it."""
    binary = find_binary(name)
    if binary is None:
        raise OptionsError(missing_reason(name) or f"{name} is not installed")
    return binary


def workdir_prefix(kind: str) -> str:
    return f"keepalive-bench-{kind}-server-"


def make_workdir(kind: str) -> Path:
    """A fresh directory for one run, readable by nginx's unprivileged worker (0755), with the
    owner's pid in it so that a later start can tell a crashed run's leftovers from a live one."""
    path = Path(tempfile.mkdtemp(prefix=workdir_prefix(kind)))
    path.chmod(0o755)
    (path / OWNER_FILE).write_text(f"{os.getpid()}\n")
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def sweep_stale(kind: str, cleanup: Callable[[Path], None] | None = None) -> None:
    """Remove the work directories of runs whose owner died (SIGKILL, a crash): `cleanup`
    first stops what they may have left running (nginx's process group)."""
    for path in Path(tempfile.gettempdir()).glob(workdir_prefix(kind) + "*"):
        owner = _read_pid(path / OWNER_FILE)
        if owner is None or pid_alive(owner):
            continue
        if cleanup is not None:
            with contextlib.suppress(OSError):
                cleanup(path)
        shutil.rmtree(path, ignore_errors=True)


def kill_group_of(pid_file: Path, marker: str) -> None:
    """SIGKILL the process group led by the pid in `pid_file`, if that process still runs with
    `marker` (its work directory) on its command line: never a stranger that reused the pid."""
    pid = _read_pid(pid_file)
    if pid is None or not pid_alive(pid):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return
    if marker in cmdline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the wrapper dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass(frozen=True)
class TlsFiles:
    """Certificate chain and key as files (foreign servers read files), and the CA clients trust
    when the certificate was generated here (None for --certfile/--keyfile)."""

    cert: Path
    key: Path
    ca: Path | None

    def server_context(self) -> ssl.SSLContext:
        """An SSLContext with the same files: loading it checks a user's pair in one line."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise OptionsError(f"cannot load certificate: {exc}") from None
        return ctx


def tls_files(options: ServerOptions, directory: Path) -> TlsFiles | None:
    """The TLS files for `options` (None without --tls); a generated pair goes in `directory`."""
    if not options.tls:
        return None
    if options.certfile is not None and options.keyfile is not None:
        files = TlsFiles(options.certfile, options.keyfile, None)
        files.server_context()  # a bad pair is one line here, not a foreign server's log
        return files
    import trustme  # only needed for the generated certificate

    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost", "::1")
    ca_path = directory / "ca.pem"
    files = TlsFiles(directory / "cert.pem", directory / "key.pem", ca_path)
    files.key.touch(mode=0o600)
    issued.private_key_pem.write_to_path(str(files.key))
    with files.cert.open("wb") as fh:
        for pem in issued.cert_chain_pems:
            fh.write(pem.bytes())
    ca.cert_pem.write_to_path(str(ca_path))
    ca_path.chmod(0o644)
    return files
