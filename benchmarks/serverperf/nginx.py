"""nginx as the reference point: one worker, the same body and keep-alive policy as our servers.

nginx cannot bind port 0 and report it, so a free port is picked by binding a socket to port 0
and closing it; another process can take it in between, so a start that fails with "Address
already in use" is retried on a new port. The whole configuration lives in a temporary prefix
directory (config, pid file, temp paths), so nothing under /etc or /var is read or written.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from servers.endpoints import HELLO, TEXT
from servers.launch import StartStop, terminate
from servers.policy import KeepAlivePolicy

START_ATTEMPTS = 5
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
UNLIMITED_REQUESTS = 1_000_000_000  # nginx has no "unlimited": large enough for any run
DEFAULT_POLICY = KeepAlivePolicy(timeout_s=5.0, max_requests=0)  # our servers' T, unlimited N


class NginxError(RuntimeError):
    """nginx is missing or would not start; the message is one line."""


def nginx_string(text: str) -> str:
    """A double-quoted nginx config string (nginx understands \\n, \\" and \\\\ inside quotes)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def temp_path_lines(prefix: Path) -> str:
    """nginx's temporary directories, all inside `prefix`: nothing under /var is written."""
    return "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


def nginx_config(prefix: Path, port: int, keepalive: KeepAlivePolicy) -> str:
    """`daemon off`, one worker, no access log, `GET /` answered with our HELLO body."""
    timeout = f"{keepalive.timeout_s:g}s"
    requests = keepalive.max_requests or UNLIMITED_REQUESTS
    temp_paths = temp_path_lines(prefix)
    return f"""daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log /dev/stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp_paths}
    keepalive_timeout {timeout} {timeout};
    keepalive_requests {requests};
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location = / {{
            default_type {nginx_string(TEXT)};
            return 200 {nginx_string(HELLO.decode())};
        }}
    }}
}}
"""


def free_port() -> int:
    """A port that was free a moment ago (see the module docstring for the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def find_nginx() -> str | None:
    """nginx lives in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("nginx")
    return found or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


class NginxProcess(StartStop):
    """`with NginxProcess(...) as nginx: nginx.url`; stopped on success, error and Ctrl-C."""

    def __init__(self, keepalive: KeepAlivePolicy = DEFAULT_POLICY, cpu: int | None = None) -> None:
        self.keepalive = keepalive
        self.cpu = cpu
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._prefix: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        binary = find_nginx()
        if binary is None:
            raise NginxError("nginx not found (apt-get install nginx)")
        self._prefix = Path(tempfile.mkdtemp(prefix="keepalive-bench-nginx-"))
        last_error = ""
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            last_error = self._try_start(binary)
            if not last_error:
                return self.url
            if "in use" not in last_error:
                break
        self.stop()
        raise NginxError(f"nginx did not start: {last_error}")

    def _try_start(self, binary: str) -> str:
        """Start on `self.port`; '' once it accepts connections, else nginx's error line."""
        assert self._prefix is not None
        conf = self._prefix / "nginx.conf"
        conf.write_text(nginx_config(self._prefix, self.port, self.keepalive))
        cpu = self.cpu
        log = self._prefix / "stderr.log"  # a file, not a pipe: a full pipe would block nginx
        with log.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [binary, "-p", str(self._prefix), "-e", "/dev/stderr", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
                start_new_session=True,  # its own group: the worker is stopped with the master
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            status = self.proc.poll()
            if status is not None:
                self.proc = None
                lines = log.read_text(errors="replace").strip().splitlines()
                return lines[-1] if lines else f"exit status {status}"
            if _listening(self.port):
                return ""
            time.sleep(0.05)
        self._stop_process()
        return f"not listening on port {self.port} after {START_TIMEOUT_S:g} s"

    def _stop_process(self) -> None:
        """SIGTERM (nginx's fast shutdown) to the group, SIGKILL after a grace period."""
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc, STOP_TIMEOUT_S, group=True)

    def stop(self) -> None:
        self._stop_process()
        if self._prefix is not None:
            shutil.rmtree(self._prefix, ignore_errors=True)
            self._prefix = None
