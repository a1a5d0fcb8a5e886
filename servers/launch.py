"""Start a reference server as a subprocess and talk to it: the READY line and the counters.

Used by the tests and by the benchmark harness, which never import a server in-process (each
process is one thing: the harness must not load uvloop). `ServerProcess` is a context manager
that always stops the child, on success, on error and on Ctrl-C. The pieces it is made of are
the ones every launcher here uses: `read_ready` (the READY wait), `terminate` (TERM, then KILL,
of a process or its group) and `ControlClient` (the `/counters` reader).
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote

from benchmarks.common import split_http_url
from servers.control import UNIX_URL_PREFIX
from servers.options import ServerOptions

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class ServerStartError(RuntimeError):
    """The server exited or stayed silent instead of printing READY; message is one line."""


@dataclass(frozen=True)
class ReadyInfo:
    """What the READY line announced."""

    url: str
    control_url: str
    pid: int
    server: str
    ca_path: Path | None

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def parse_ready_line(line: str) -> ReadyInfo:
    """`READY http://127.0.0.1:4311 control=http://127.0.0.1:4312 pid=9 server=uvloop [ca=..]`."""
    words = line.split()
    if len(words) < 2 or words[0] != "READY":
        raise ServerStartError(f"expected a READY line, got {line.strip()[:200]!r}")
    fields = dict(w.split("=", 1) for w in words[2:] if "=" in w)
    ca = fields.get("ca")
    try:
        return ReadyInfo(
            url=words[1],
            control_url=fields["control"],
            pid=int(fields["pid"]),
            server=fields["server"],
            ca_path=Path(ca) if ca else None,
        )
    except (KeyError, ValueError) as exc:
        detail = f"READY line without a valid {exc}: {line.strip()[:200]!r}"
        raise ServerStartError(detail) from None


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix stream socket (a server's `--control-socket`)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def control_connection(control_url: str, timeout_s: float) -> http.client.HTTPConnection:
    """An HTTP/1.1 connection (not yet connected) to a control listener, as the READY line
    names it: `http://host:port` or `unix:/path` (percent-encoded)."""
    if control_url.startswith(UNIX_URL_PREFIX):
        return UnixHTTPConnection(unquote(control_url[len(UNIX_URL_PREFIX) :]), timeout_s)
    try:
        scheme, host, port, _ = split_http_url(control_url)
    except ValueError:
        scheme = ""
    if scheme != "http":  # a bare app's `control=-`, say
        raise ValueError(f"not a control URL: {control_url!r}")
    return http.client.HTTPConnection(host, port, timeout=timeout_s)


def read_ready(
    proc: subprocess.Popen[str], label: str, timeout_s: float = READY_TIMEOUT_S
) -> ReadyInfo:
    """The READY line of a child started with `stdout=PIPE, text=True`, parsed.

    ServerStartError (one line) if the child exits or stays silent for `timeout_s`. Every
    launcher of a server-like child (ours, the bare apps, a server under callgrind) waits this
    way; `label` names the child in the message.
    """
    assert proc.stdout is not None, "start the child with stdout=subprocess.PIPE"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.1)[0]:
            line = proc.stdout.readline()
            if line:
                return parse_ready_line(line)
        if proc.poll() is not None:
            raise ServerStartError(f"{label} exited with status {proc.returncode} before READY")
    raise ServerStartError(f"{label} printed no READY line in {timeout_s:g} s")


def terminate(
    proc: subprocess.Popen[Any],
    grace_s: float = STOP_TIMEOUT_S,
    *,
    group: bool = False,
    first: signal.Signals = signal.SIGTERM,
) -> int:
    """Stop a child politely (`first`, SIGTERM by default), forcefully after `grace_s`
    (SIGKILL), and close its pipes; its exit status.

    With `group` (a child started with `start_new_session=True`) the signals go to its whole
    process group, and the members that outlive the leader (forked workers) get up to `grace_s`
    more before the group is killed. Every launcher of a child here stops it this way.
    """
    signal_one = signal_group if group else _signal_process
    if proc.poll() is None:
        signal_one(proc.pid, first)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            signal_one(proc.pid, signal.SIGKILL)
            proc.wait()
    if group:
        deadline = time.monotonic() + grace_s
        while reap_group(proc.pid, keep=proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        signal_group(proc.pid, signal.SIGKILL)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    return proc.returncode


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """A preexec_fn: the child gets `sig` when its parent dies, however it dies (kill -9
    included), so nothing outlives the launcher. Linux prctl; elsewhere a no-op (the launcher's
    own cleanup still applies). Kept across exec, `ip netns exec`'s too."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def pid_alive(pid: int) -> bool:
    """True while a process `pid` exists (a zombie included); one of another user's too."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int) -> None:
    """`sig` to process group `pgid`; a group that is gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_process(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def reap_group(pgid: int, keep: int) -> list[int]:
    """The live members of process group `pgid`; zombies among them that are our children
    (orphans adopted while we are a child subreaper: benchmarks.harness.procs) are reaped on
    the way, except `keep` (the Popen
    child, whose status `Popen.wait` must still read). A zombie that is not ours is not
    counted: it is dead, and only its parent can remove it."""
    me, live = os.getpid(), []
    for pid, state, ppid, pgrp in _proc_stats():
        if pgrp != pgid:
            continue
        if state != "Z":
            live.append(pid)
        elif ppid == me and pid != keep:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
    return live


def _proc_stats() -> Iterator[tuple[int, str, int, int]]:
    """(pid, state, ppid, pgrp) of every process, from /proc/<pid>/stat."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # exited meanwhile
            continue
        fields = stat.rsplit(b")", 1)[1].split()  # the command name may hold spaces and ")"
        yield int(entry.name), fields[0].decode(), int(fields[1]), int(fields[2])


class ControlError(RuntimeError):
    """The control listener did not answer; the message is one line."""


class ControlClient:
    """`GET /counters` from a server's control listener (TCP, or a Unix socket with
    `--control-socket`: `control_connection`): its live counters as a dict.

    `keep_alive=True` keeps one connection for every read (the harness's monitor: its polling
    must add no TCP opens to what the kernel counters see) and reopens it once when it was
    dropped; otherwise each read has a connection of its own. Thread-safe.
    """

    def __init__(self, control_url: str, timeout_s: float = 5.0, keep_alive: bool = False) -> None:
        self._base = control_url.rstrip("/")
        self.url = self._base + "/counters"
        self._timeout = timeout_s
        self._keep = keep_alive
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def counters(self) -> dict[str, Any]:
        """The counters; ControlError (one line) when the listener does not answer twice."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    return self._get()
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    self._close()
                    if attempt == 2 or not self._keep:
                        raise ControlError(f"control listener {self.url}: {exc}") from None
                finally:
                    if not self._keep:
                        self._close()
            raise AssertionError("unreachable")

    def _get(self) -> dict[str, Any]:
        if self._conn is None:
            self._conn = control_connection(self._base, self._timeout)
        headers = {} if self._keep else {"Connection": "close"}
        self._conn.request("GET", "/counters", headers=headers)
        response = self._conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise ValueError(f"answered {response.status}")
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("answered something other than a JSON object")
        return data

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close()


def fetch_counters(control_url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """One GET /counters on a connection of its own; ControlError (one line) when it fails."""
    return ControlClient(control_url, timeout_s).counters()


def server_command(options: ServerOptions) -> list[str]:
    return [sys.executable, "-m", "servers", *options.to_argv()]


class StartStop:
    """`with thing as t:` starts it and always stops it, also when start() fails half-way
    (a process may be running already by then)."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ChildServer(StartStop):
    """A server-like child (ours, a bare app, one under callgrind): started from `command`,
    READY awaited, stopped with `terminate` on success, error and Ctrl-C alike.

    `session=True` starts it in a process group of its own (a terminal's Ctrl-C does not reach
    it; it is stopped as a group); `preexec` runs in the child before exec, after the pin to
    `cpu`.
    """

    def __init__(
        self,
        command: list[str],
        label: str,
        *,
        stderr: Any = subprocess.DEVNULL,
        cpu: int | None = None,
        session: bool = False,
        preexec: Callable[[], object] | None = None,
        cwd: Path | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        stop_grace_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self.command, self.label = command, label
        self._stderr, self._cpu, self._session, self._preexec = stderr, cpu, session, preexec
        self._cwd, self._ready_timeout_s, self._stop_grace_s = cwd, ready_timeout_s, stop_grace_s
        self.proc: subprocess.Popen[str] | None = None
        self.ready: ReadyInfo | None = None

    def start(self) -> ReadyInfo:
        self.proc = subprocess.Popen(
            self.command,
            cwd=self._cwd,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=self._session,
            preexec_fn=self._child_setup if self._cpu is not None or self._preexec else None,
        )
        self.ready = self._read_ready()
        return self.ready

    def _read_ready(self) -> ReadyInfo:
        assert self.proc is not None
        return read_ready(self.proc, self.label, self._ready_timeout_s)

    def _child_setup(self) -> None:
        if self._cpu is not None:
            os.sched_setaffinity(0, {self._cpu})
        if self._preexec is not None:
            self._preexec()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def counters(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """The server's live counters from its control listener (one connection per call)."""
        assert self.ready is not None
        return fetch_counters(self.ready.control_url, timeout_s)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a grace period; returns the exit status."""
        if self.proc is None:
            return None
        return terminate(self.proc, self._stop_grace_s, group=self._session)


class ServerProcess(ChildServer):
    """A running reference server: `with ServerProcess(options) as server: server.ready.url`."""

    def __init__(
        self,
        options: ServerOptions,
        *,
        stderr: Any = subprocess.DEVNULL,
        cpu: int | None = None,
        session: bool = False,
        preexec: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(
            server_command(options), f"{options.name} server",
            stderr=stderr, cpu=cpu, session=session, preexec=preexec,
        )  # fmt: skip
        self.options = options
