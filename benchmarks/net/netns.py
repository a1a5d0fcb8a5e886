"""Network namespaces of ours: names, preconditions, entering one, creating and removing them.

Every name starts with `kab<pid>`, the pid of the process that owns the line, so parallel test
workers never collide and a crashed owner's leftovers can be told from a live one's: a
namespace (or a device) of ours whose pid is dead is stale, and every start removes the stale
ones first (`python -m benchmarks net cleanup` does only that).

The namespaces are named (`ip netns add`, a bind mount under /run/netns) so that `ip netns exec`
and `ip -n` reach them, and so that a crash leaves something a later run can find.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from servers.launch import pid_alive

NETNS_DIR = Path("/run/netns")
TUN_PATH = Path("/dev/net/tun")
PREFIX = "kab"
IFNAMSIZ = 16  # a device name is at most 15 characters
CLONE_NEWNET = 0x40000000
# `kab<pid>` then an optional letter (the owner's second, third... line), then the role.
NAME_RE = re.compile(rf"^{PREFIX}(\d+)([a-z]?)(s|c\d+)$")
IP_TIMEOUT_S = 10.0

_libc = ctypes.CDLL(None, use_errno=True)


class NetError(RuntimeError):
    """The line cannot be set up or used; the message is one line for the user."""


def check_preconditions() -> None:
    """Root, /dev/net/tun and iproute2, or one line saying which is missing."""
    if os.geteuid() != 0:
        raise NetError("the delay line needs root (network namespaces and TUN devices)")
    if not TUN_PATH.exists():
        raise NetError(f"no {TUN_PATH}: this kernel (or container) offers no TUN devices")
    if shutil.which("ip") is None:
        raise NetError("the delay line needs the 'ip' command (iproute2)")


def namespace_name(pid: int, seq: int, role: str) -> str:
    """`kab<pid>s`, `kab<pid>c0`; a process's later lines get a letter: `kab<pid>ac0`.

    The same string names the namespace and its TUN device, so it must fit IFNAMSIZ.
    """
    if not 0 <= seq <= 26:
        raise NetError("at most 27 delay lines at once in one process")
    tag = "" if seq == 0 else chr(ord("a") + seq - 1)
    name = f"{PREFIX}{pid}{tag}{role}"
    if len(name) >= IFNAMSIZ:
        raise NetError(f"device name {name!r} is longer than {IFNAMSIZ - 1} characters")
    return name


def owner_pid(name: str) -> int | None:
    """The pid a name of ours carries, or None when the name is not ours."""
    match = NAME_RE.match(name)
    return int(match.group(1)) if match else None


def ip(
    *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; a failure becomes a NetError with ip's own one-line complaint."""
    proc = subprocess.run(
        ["ip", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=IP_TIMEOUT_S,
        check=False,
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise NetError(f"ip {' '.join(args)}: {detail[0] if detail else 'failed'}")
    return proc


def list_namespaces() -> list[str]:
    """Every named namespace (ours or not): the entries of /run/netns."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def our_namespaces(pid: int | None = None) -> list[str]:
    """Namespaces of ours, of one owner when `pid` is given."""
    names = [n for n in list_namespaces() if owner_pid(n) is not None]
    return [n for n in names if pid is None or owner_pid(n) == pid]


def create_namespace(name: str) -> None:
    ip("netns", "add", name)


def namespace_pids(name: str) -> list[int]:
    """The processes whose network namespace is `name`, read from /proc as `ip netns pids`
    reads it, but without its failure when a process exits during the scan (every process
    vanishing mid-scan is skipped, not an error that empties the answer)."""
    try:
        want = os.stat(NETNS_DIR / name)
    except OSError:
        return []
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ns = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        if (ns.st_dev, ns.st_ino) == (want.st_dev, want.st_ino):
            pids.append(int(entry.name))
    return pids


def kill_namespace_processes(name: str, grace_s: float = 2.0) -> None:
    """SIGTERM whatever still runs in the namespace, SIGKILL what is left after `grace_s`.

    After a crash of the owner these are the servers and clients it started (their parent-death
    signal covers direct children only, not what a shell script spawned).
    """
    pids = [p for p in namespace_pids(name) if p != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if pid_alive(p) and not _is_zombie(p)]
            time.sleep(0.02)
        if not pids:
            return


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def delete_namespace(name: str) -> None:
    """Stop its processes, then unmount it; the kernel frees it (and its devices) once unused."""
    if not (NETNS_DIR / name).exists():
        return
    kill_namespace_processes(name)
    proc = ip("netns", "del", name, check=False)
    if proc.returncode != 0 and (NETNS_DIR / name).exists():
        raise NetError(f"cannot remove namespace {name}: {proc.stderr.strip()}")


def our_root_devices() -> list[str]:
    """Devices of ours in the root namespace (none normally: ours live inside our namespaces)."""
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return []
    return sorted(n for n in names if owner_pid(n) is not None)


def cleanup_stale() -> list[str]:
    """Remove every namespace and root-namespace device of ours whose owner is dead.

    Returns what was removed. Two processes may clean at once: a name already gone is fine.
    """
    removed = []
    for name in our_namespaces():
        pid = owner_pid(name)
        if pid is not None and not pid_alive(pid):
            delete_namespace(name)
            removed.append(name)
    for dev in our_root_devices():
        pid = owner_pid(dev)
        if pid is not None and not pid_alive(pid):
            ip("link", "del", dev, check=False)
            removed.append(dev)
    return removed


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetError(f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the body with this thread in namespace `name`, then return to where it was.

    A socket created inside stays in that namespace after the block: this is how the root
    namespace (a test, the harness) opens a connection over the line or reads a server's
    control listener without a helper process.
    """
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(here)
    finally:
        os.close(here)


def write_sysctl(name: str, key: str, value: str) -> None:
    """Set a per-namespace sysctl (`net.ipv4.tcp_slow_start_after_idle`, say) in `name`.

    /proc/sys/net resolves against the opening thread's namespace, hence `inside`.
    """
    path = Path("/proc/sys") / key.replace(".", "/")
    with inside(name):
        path.write_text(value)
