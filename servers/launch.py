"""Start a reference server as a subprocess and talk to it: the READY line and the counters.

Used by the tests and by the benchmark harness, which never import a server in-process (each
process is one thing: the harness must not load uvloop). `ServerProcess` is a context manager
that always stops the child, on success, on error and on Ctrl-C.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from servers.control import UNIX_URL_PREFIX
from servers.options import ServerOptions

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


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
    parts = urlsplit(control_url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"not a control URL: {control_url!r}")
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)


def fetch_counters(control_url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """One GET /counters on a connection of its own; OSError or ValueError when it fails."""
    conn = control_connection(control_url, timeout_s)
    try:
        conn.request("GET", "/counters")
        response = conn.getresponse()
        body = response.read()
    except http.client.HTTPException as exc:
        raise OSError(f"control listener {control_url}: {exc!r}") from None
    finally:
        conn.close()
    if response.status != 200:
        raise OSError(f"control listener {control_url} answered {response.status}")
    return json.loads(body)


def terminate(proc: subprocess.Popen[str], grace_s: float = STOP_TIMEOUT_S) -> int:
    """Stop a child politely (SIGTERM), forcefully after `grace_s` (SIGKILL); close its stdout.

    Every launcher of a server-like child (ours, bare apps) stops it this way.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode


def server_command(options: ServerOptions) -> list[str]:
    return [sys.executable, "-m", "servers", *options.to_argv()]


class ServerProcess:
    """A running reference server: `with ServerProcess(options) as server: server.ready.url`."""

    def __init__(
        self,
        options: ServerOptions,
        *,
        stderr: Any = subprocess.DEVNULL,
        cpu: int | None = None,
    ) -> None:
        self.options = options
        self._stderr = stderr
        self._cpu = cpu
        self.proc: subprocess.Popen[str] | None = None
        self.ready: ReadyInfo | None = None

    def start(self) -> ReadyInfo:
        cpu = self._cpu  # a local: the lambda then sees the narrowed int, not int | None
        preexec = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.proc = subprocess.Popen(
            server_command(self.options),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=preexec,
        )
        self.ready = parse_ready_line(self._read_first_line())
        return self.ready

    def _read_first_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if readable:
                line = self.proc.stdout.readline()
                if line:
                    return line
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"{self.options.name} server exited with status {self.proc.returncode} "
                    "before READY"
                )
        raise ServerStartError(
            f"{self.options.name} server printed no READY line in {READY_TIMEOUT_S:g} s"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def counters(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """The server's live counters from its control listener."""
        assert self.ready is not None
        return fetch_counters(self.ready.control_url, timeout_s)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a grace period; returns the exit status."""
        return terminate(self.proc) if self.proc is not None else None

    def __enter__(self) -> ServerProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
