"""Process control: which core runs what, the client's process group, CPU of a tree, cleanup.

A load client is started in a session (process group) of its own, pinned to its core before it
execs, so every child it spawns (pyperf workers) inherits the pin and the group: stopping the
client is one `killpg`, TERM then KILL, plus any straggler that left the group. Ctrl-C in a
terminal reaches the harness and the server (same foreground group) but not the client; the
harness kills it on the way out, and waits until every process of the group is gone: the
harness is the child subreaper of its run (`adopting_orphans`), so a pyperf worker whose
manager died first is reparented to the harness and reaped there, not left to init.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from benchmarks.clients.contract import ClientResult
from servers.launch import reap_group, signal_group

TERM_GRACE_S = 3.0
KILL_WAIT_S = 10.0  # after SIGKILL: only a process stuck in the kernel takes this long
POLL_S = 0.02
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37  # <linux/prctl.h>


@dataclass(frozen=True)
class Cores:
    """Where the server and the client run; -1 means not pinned (fewer than two cores)."""

    server: int
    client: int

    @property
    def pinned(self) -> bool:
        return self.server >= 0 and self.client >= 0


def choose_cores(allowed: Sequence[int] | None = None) -> Cores:
    """Server on the highest allowed core, client on the next one; unpinned below two cores.

    Core 0 usually takes most device interrupts, so it gets the client rather than the server
    when there are exactly two. The harness itself goes on the client's core (`pinned_self`).
    """
    cpus = sorted(os.sched_getaffinity(0) if allowed is None else allowed)
    if len(cpus) < 2:
        return Cores(-1, -1)
    return Cores(server=cpus[-1], client=cpus[-2])


@contextlib.contextmanager
def pinned_self(core: int) -> Iterator[None]:
    """Run the harness (and the monitor thread it starts, which inherits the mask) on `core`.

    Unpinned, the scheduler may put the harness on the server's core, where its sampling and
    its /proc/net/tcp reads (milliseconds with 10k TIME_WAIT sockets) would count as foreign
    load and could mark the row contended. On the client's core its CPU is measured and counted
    with the client side, which is where the measuring belongs. The previous mask is restored:
    tests call the CLI in-process.
    """
    if core < 0:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def affinity_preexec(core: int) -> Any:
    """A preexec_fn pinning the child to `core` before exec (None when unpinned)."""
    if core < 0:
        return None
    return lambda: os.sched_setaffinity(0, {core})


class ClientProcess:
    """One load-client subprocess in its own process group, output to a log file."""

    def __init__(self, argv: Sequence[str], *, core: int, log: IO[bytes]) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=affinity_preexec(core),
        )
        self.pid = self.proc.pid
        self._seen: dict[int, psutil.Process] = {}
        self.remember_tree()

    def remember_tree(self) -> list[psutil.Process]:
        """The live tree (root first); every process seen is remembered for cleanup.

        The monitor calls this at every sample: the tree is walked through each thread's
        /proc/PID/task/TID/children (a few small reads) rather than psutil's `children()`, which
        reads the stat file of every process on the machine (3.7 ms a call with ~120 processes,
        most of the monitor's cost), and the psutil.Process objects already seen are reused."""
        pids = descendants(self.pid)
        if pids is None:  # no /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN): psutil's scan
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            for p in tree:
                self._seen.setdefault(p.pid, p)
            return tree
        out = []
        for pid in pids:
            seen = self._seen.get(pid)
            if seen is None:
                try:
                    seen = self._seen[pid] = psutil.Process(pid)
                except psutil.Error:
                    continue
            out.append(seen)
        return out

    def wait(self, timeout_s: float) -> int | None:
        """Exit status, or None if it is still running after `timeout_s`."""
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def wait_or_kill(self, timeout_s: float) -> int | None:
        """Exit status, or None for a client that hung: then its tree is killed, no longer
        loading the server while the caller reads counters."""
        status = self.wait(timeout_s)
        if status is None:
            self.kill_tree()
        return status

    def kill_tree(self) -> None:
        """TERM the group and every process seen, KILL what remains after a grace period, and
        return only when all of them are gone (reaped, not merely dying)."""
        self.remember_tree()
        signal_group(self.pid, signal.SIGTERM)
        for p in list(self._seen.values()):  # the monitor thread may be adding to it
            with contextlib.suppress(psutil.Error):
                p.terminate()
        if self._wait_gone(TERM_GRACE_S):
            return
        signal_group(self.pid, signal.SIGKILL)
        for p in self._alive():
            with contextlib.suppress(psutil.Error):
                p.kill()
        self._wait_gone(KILL_WAIT_S)
        self.proc.wait()

    def _wait_gone(self, timeout_s: float) -> bool:
        """True once the client, every process seen and every member of its group are gone."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.proc.poll()  # the leader is reaped by Popen, which keeps its exit status
            group = reap_group(self.pid, keep=self.pid)
            if self.proc.returncode is not None and not group and not self._alive():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)

    def _alive(self) -> list[psutil.Process]:
        """Processes seen that still run; adopted zombies among them are reaped."""
        out = []
        for p in list(self._seen.values()):
            with contextlib.suppress(psutil.Error, ChildProcessError):
                if not p.is_running():
                    continue
                if p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
                elif p.pid != self.pid and p.ppid() == os.getpid():
                    os.waitpid(p.pid, os.WNOHANG)
        return out


def descendants(pid: int) -> list[int] | None:
    """`pid` and every process below it, parents first, from the kernel's per-thread children
    lists (a fork from any thread is found); [] when `pid` is gone, None when the kernel has no
    such lists. Racy as any /proc walk: a process that exits meanwhile is left out."""
    if not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"):
        return None
    out, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        try:
            tids = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        out.append(current)
        for tid in tids:
            try:
                with open(f"/proc/{current}/task/{tid}/children", "rb") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                continue
    return out


def start_client(
    command: Sequence[str], *, core: int, log: IO[bytes],
    started: Callable[[ClientProcess], object],
) -> None:  # fmt: skip
    """Fork the client and hand it to `started` with signals held: Ctrl-C cannot fall between
    the fork and the caller knowing what to kill. OSError if it cannot be started."""
    with deferred_signals():
        started(ClientProcess(command, core=core, log=log))


def run_client(
    command: Sequence[str], *, core: int, log: IO[bytes], timeout_s: float
) -> int | None:
    """The whole life of a client that nothing else watches: start it, wait, and kill its tree
    on the way out whatever happens (a hang, stragglers that left the group, Ctrl-C), with
    signals held. Its exit status, None if it hung."""
    clients: list[ClientProcess] = []
    try:
        start_client(command, core=core, log=log, started=clients.append)
        return clients[0].wait(timeout_s)  # a hang is killed below, like everything else
    finally:
        with deferred_signals():
            for client in clients:
                client.kill_tree()


def read_result(output: Path, log_path: Path) -> ClientResult | str:
    """The result a client wrote, or the one-line reason there is none: the last line of its
    log (a traceback's last line says why it died), else what was wrong with the file."""
    try:
        return ClientResult.read(output)
    except (OSError, ValueError, TypeError) as exc:
        return last_line(log_path) or f"no result file ({type(exc).__name__})"


@contextlib.contextmanager
def adopting_orphans() -> Iterator[None]:
    """Make this process the child subreaper of everything it starts (Linux prctl).

    When a client's main process dies before its children (SIGTERM reaches a pyperf manager and
    its worker at once), the children are reparented to the nearest subreaper instead of init,
    so `kill_tree` can reap them and knows when they are gone; init may take seconds to reap
    (about 1-2 s on this VM), during which they would outlive the harness. The previous setting
    is restored: tests run the CLI in-process."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        previous = ctypes.c_int(0)
        ok = libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(previous), 0, 0, 0) == 0
        ok = ok and libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux: kill_tree still waits for the live ones
        ok = False
    try:
        yield
    finally:
        if ok:
            libc.prctl(PR_SET_CHILD_SUBREAPER, previous.value, 0, 0, 0)


def own_cpu_s(proc: psutil.Process) -> float:
    """CPU seconds (user + system) of one process, its children not included."""
    t = proc.cpu_times()
    return t.user + t.system


class ServerCpu:
    """CPU seconds of a server process plus the children it had when first measured.

    Our servers are one process; `python -m servers nginx` is a wrapper (READY, counters)
    whose nginx master and worker do the serving. Children are listed once (they exist before
    READY; a /proc scan per sample would cost the harness milliseconds), and the root's own
    CPU raises psutil.Error when it is gone, which callers treat as a dead server."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        try:
            self.children = root.children(recursive=True)
        except psutil.Error:
            self.children = []

    def cpu_s(self) -> float:
        total = own_cpu_s(self.root)
        for child in self.children:
            with contextlib.suppress(psutil.Error):
                total += own_cpu_s(child)
        return total


def tree_cpu_s(tree: Sequence[psutil.Process]) -> float:
    """Total CPU of a live process tree.

    A reaped child's time is in its parent's `children_*`, so summing the live members counts
    every process once (except one that died and is not yet reaped: callers keep the maximum
    over samples, which is monotonic anyway).
    """
    total = 0.0
    for p in tree:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def last_line(path: Path, limit: int = 200) -> str:
    """The last non-empty line of a log file, shortened: the one-line reason a client died."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    return lines[-1][:limit] if lines else ""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, turned into the same unwinding as Ctrl-C."""


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP raise `Interrupted` so every `finally` (server stop, client kill) runs."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP during cleanup so a second Ctrl-C cannot orphan a child;
    a signal that arrived meanwhile is re-raised as KeyboardInterrupt afterwards."""
    caught: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda s, f: caught.append(s)) for sig in sigs}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if caught:
            raise KeyboardInterrupt(signal.Signals(caught[0]).name)
