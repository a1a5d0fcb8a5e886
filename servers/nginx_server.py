"""`python -m servers nginx`: Debian's nginx behind the reference servers' interface.

The wrapper binds the listening socket itself (port 0 works: nginx inherits the bound socket
through its `NGINX` environment variable, the mechanism of its binary upgrade, so there is no
free-port race), writes a configuration (servers/nginx_conf.py) into a private directory, starts
nginx with one worker, prints the same READY line as our servers and serves `/counters` from the
same control listener (servers/control.py). Its pid in READY and /counters is the wrapper's, the
process the harness started; nginx runs as the wrapper's children (their CPU is the server's).

Counters, all exact unless noted:
- connections_accepted, connections_open: nginx's stub_status (a second server on a unix socket
  in the directory) minus the one persistent connection the wrapper holds to it;
- requests_served: lines of the access log, which logs each request that reached a location
  (requests nginx rejects while parsing are not dispatched, as in our servers);
- connections_peak_open: the largest $connections_active logged with a response (minus ours):
  the peak seen whenever a response was done, not between responses;
- closed: only `max_reached` (responses that were the keepalive_requests-th on their
  connection, after which nginx closes); nginx does not say why its other connections ended, so
  the other reasons are absent rather than guessed;
- tls_handshakes, tls_resumed (over TLS): from $ssl_session_reused on each connection's first
  request, so only connections that sent one count (a handshake without a request is unseen).

SIGTERM or SIGINT stops nginx gracefully (SIGQUIT: idle connections close at once, a request in
progress is finished) for up to 3 s, then fast (SIGTERM), then SIGKILL. nginx runs in a process
group of its own with a parent-death signal, and a start after a crash removes the leftovers, so
nothing outlives the wrapper. Not installed: one line saying `apt-get install nginx`, exit 2.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Any

from servers.counters import Counters
from servers.endpoints import RequestContext, route
from servers.external import (
    TlsFiles,
    kill_group_of,
    make_workdir,
    require_binary,
    sweep_stale,
    tls_files,
)
from servers.launch import die_with_parent
from servers.nginx_conf import (
    ACCESS_LOG,
    PID_FILE,
    STATUS_SOCKET,
    NginxSpec,
    nginx_config,
    parse_log_line,
    write_bytes_files,
)
from servers.options import ServerName, ServerOptions
from servers.runtime import SHUTDOWN_GRACE_S, Runtime, bind_control, bind_listener

START_TIMEOUT_S = 15.0
FAST_STOP_S = 1.0
ECHO_INTERVAL_S = 0.05
KIND = "nginx"


class NginxFailed(RuntimeError):
    """nginx exited or never answered; the message is one line."""


class StatusClient:
    """GET /status from nginx's stub_status over one persistent unix-socket connection.

    The connection is counted in nginx's figures, so the wrapper keeps exactly one open (opened
    before READY) and counts every connection it ever opened, to subtract both."""

    def __init__(self, path: Path, timeout_s: float = 5.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.connects = 0
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise
        self.connects += 1
        conn = http.client.HTTPConnection("localhost", timeout=self.timeout_s)
        conn.sock = sock
        return conn

    def read(self) -> dict[str, int]:
        """{"active", "accepts", "handled", "requests"}; OSError if nginx does not answer."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None:
                        self._conn = self._connect()
                    self._conn.request("GET", "/status")
                    response = self._conn.getresponse()
                    return parse_stub_status(response.read().decode("ascii", "replace"))
                except (OSError, http.client.HTTPException, ValueError):
                    if self._conn is not None:
                        self._conn.close()
                        self._conn = None
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


_STUB = re.compile(
    r"Active connections:\s*(\d+)\s+server accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)"
)


def parse_stub_status(text: str) -> dict[str, int]:
    match = _STUB.search(text)
    if match is None:
        raise ValueError(f"not a stub_status page: {text[:80]!r}")
    active, accepts, handled, requests = (int(g) for g in match.groups())
    return {"active": active, "accepts": accepts, "handled": handled, "requests": requests}


_LEADING_NUMBER = re.compile(rb"^(\d+)\t", re.MULTILINE)


class AccessLog:
    """Reads nginx's access log as it grows: requests, responses that hit the max, peak active.

    Counting uses C-speed bytes operations on the whole new chunk (the wrapper's CPU is counted
    as the server's); whole lines are parsed only when they are echoed (--log-connections)."""

    def __init__(self, path: Path, echo: IO[str] | None) -> None:
        self.path = path
        self.echo = echo
        self.requests = 0
        self.last_responses = 0
        self.max_active = 0
        self.tls_full = 0  # connections whose first request came after a full TLS handshake
        self.tls_resumed = 0  # ... after a resumed one
        self._offset = 0
        self._partial = b""
        self._lock = threading.Lock()

    def poll(self) -> None:
        with self._lock:
            try:
                with self.path.open("rb") as fh:
                    fh.seek(self._offset)
                    data = fh.read()
            except FileNotFoundError:
                return
            self._offset += len(data)
            data = self._partial + data
            cut = data.rfind(b"\n") + 1
            self._partial, data = data[cut:], data[:cut]
            if data:
                self._count(data)

    def _count(self, data: bytes) -> None:
        self.requests += data.count(b"\n")
        self.last_responses += data.count(b"\t1\n")
        self.tls_full += data.count(b"\tF\t")
        self.tls_resumed += data.count(b"\tR\t")
        actives = _LEADING_NUMBER.findall(data)
        if actives:
            self.max_active = max(self.max_active, max(map(int, actives)))
        if self.echo is not None:
            for raw in data.decode("utf-8", "replace").splitlines():
                line = parse_log_line(raw)
                if line is not None:
                    self.echo.write(line.log_connections_line() + "\n")
            self.echo.flush()


class NginxCounters(Counters):
    """The reference counters' JSON, derived from stub_status and the access log (module doc)."""

    def __init__(
        self, status: StatusClient, log: AccessLog, max_known: bool, tls: bool = False
    ) -> None:
        super().__init__(threaded=True)
        self.status = status
        self.log = log
        self.max_known = max_known  # keepalive_requests >= 2 with keep-alive on
        self.tls = tls

    def snapshot(self) -> dict[str, Any]:
        stub = self.status.read()
        self.log.poll()
        ours = self.status.connects  # every one of them counted in accepts, one open now
        open_now = max(stub["active"] - 1, 0)
        return {
            "connections_accepted": stub["accepts"] - ours,
            "connections_open": open_now,
            "connections_peak_open": max(self.log.max_active - 1, open_now),
            "requests_served": self.log.requests,
            "closed": {"max_reached": self.log.last_responses} if self.max_known else {},
            **self._tls(),
            "source": "nginx stub_status and access log",
        }

    def _tls(self) -> dict[str, int]:
        """Over TLS: handshakes of connections that sent a request (the access log sees no
        other), and the resumed ones among them."""
        if not self.tls:
            return {}
        return {
            "tls_handshakes": self.log.tls_full + self.log.tls_resumed,
            "tls_resumed": self.log.tls_resumed,
        }


class _DelayHandler(BaseHTTPRequestHandler):
    """The /sleep upstream: nginx proxies /sleep here, since it cannot wait by itself."""

    protocol_version = "HTTP/1.0"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        reply = route(self.command, self.path, RequestContext("127.0.0.1", 0, 0, 0))
        if reply.delay_s:
            time.sleep(reply.delay_s)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _answer  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Silent: stderr belongs to --log-connections."""


def start_delay_upstream() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DelayHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="delay", daemon=True).start()
    return server


def listen_address(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class NginxRun:
    """One nginx master (and its worker) started on an inherited socket, stopped on close()."""

    def __init__(self, binary: str, prefix: Path, listener: socket.socket) -> None:
        self.prefix = prefix
        conf = prefix / "nginx.conf"
        fd = listener.fileno()
        # Messages before the configuration is read (its notice about inherited sockets, or
        # why the configuration fails) go to a file, quoted when nginx does not start.
        self.startup_log = prefix / "startup.log"
        self.proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-e", str(self.startup_log), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            pass_fds=(fd,),
            env={**os.environ, "NGINX": f"{fd};"},
            start_new_session=True,  # its own group: the worker is stopped with the master
            preexec_fn=die_with_parent,
        )

    def wait_ready(self, status: StatusClient, stopping: threading.Event) -> None:
        """Until stub_status answers (the worker accepts); NginxFailed if nginx exits first."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not stopping.is_set():
            code = self.proc.poll()
            if code is not None:
                raise NginxFailed(
                    f"nginx exited with status {code} before it served: {self._why()}"
                )
            try:
                status.read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise NginxFailed(
                        f"nginx did not answer within {START_TIMEOUT_S:g} s"
                    ) from None
                stopping.wait(0.05)

    def _why(self) -> str:
        try:
            lines = self.startup_log.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1] if lines else "no message"

    def stop(self) -> None:
        """Graceful (QUIT) for SHUTDOWN_GRACE_S, fast (TERM), then KILL; the whole group."""
        pgid = self.proc.pid
        for sig, wait_s in (
            (signal.SIGQUIT, SHUTDOWN_GRACE_S),
            (signal.SIGTERM, FAST_STOP_S),
            (signal.SIGKILL, None),
        ):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
            try:
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)  # a worker whose master died
        self.proc.wait()


def _stale_cleanup(path: Path) -> None:
    kill_group_of(path / PID_FILE, str(path))


def _spec(options: ServerOptions, prefix: Path, listener: socket.socket, delay: str,
          tls: TlsFiles | None) -> NginxSpec:  # fmt: skip
    return NginxSpec(
        prefix=prefix,
        listen=listen_address(listener),
        keepalive_timeout_s=options.keepalive_timeout_s,
        keepalive_max=options.keepalive_max,
        header_timeout_s=options.effective_header_timeout_s,
        delay_upstream=delay,
        cert=tls.cert if tls else None,
        key=tls.key if tls else None,
        tls_protocols=f"TLSv{options.tls_version}" if options.tls_version else "TLSv1.2 TLSv1.3",
    )


def _stop_on_signals(stopping: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def main(options: ServerOptions) -> int:
    """Run nginx until SIGTERM/SIGINT (0) or until nginx exits by itself (1)."""
    binary = require_binary(ServerName.NGINX)
    stopping = threading.Event()
    _stop_on_signals(stopping)
    sweep_stale(KIND, _stale_cleanup)
    listener = bind_listener(options)
    prefix = make_workdir(KIND)
    run: NginxRun | None = None
    status = StatusClient(prefix / STATUS_SOCKET)
    try:
        tls = tls_files(options, prefix)
        delay = start_delay_upstream()
        write_bytes_files(prefix)
        spec = _spec(options, prefix, listener, f"127.0.0.1:{delay.server_address[1]}", tls)
        (prefix / "nginx.conf").write_text(nginx_config(spec))
        run = NginxRun(binary, prefix, listener)
        run.wait_ready(status, stopping)
        if stopping.is_set():
            return 0
        log = AccessLog(prefix / ACCESS_LOG, sys.stderr if options.log_connections else None)
        max_known = options.keepalive_max >= 2 and options.keepalive_timeout_s > 0
        counters = NginxCounters(status, log, max_known, tls=tls is not None)
        ssl_context = tls.server_context() if tls else None
        control = bind_control(options, listener, counters)
        ca = tls.ca if tls else None
        Runtime(options, listener, ssl_context, ca, control, counters).announce_ready()
        listener.close()  # nginx holds its own copy; ours would queue clients nobody accepts
        return _serve(run, log, stopping, echo=options.log_connections)
    except NginxFailed as exc:
        sys.stderr.write(f"python -m servers nginx: error: {exc}\n")
        return 1
    finally:
        status.close()
        if run is not None:
            run.stop()
        listener.close()
        shutil.rmtree(prefix, ignore_errors=True)


def _serve(run: NginxRun, log: AccessLog, stopping: threading.Event, *, echo: bool) -> int:
    """Wait for a stop signal, echoing the access log when asked; 1 if nginx died by itself."""
    while not stopping.wait(ECHO_INTERVAL_S if echo else 0.2):
        if echo:
            log.poll()
        code = run.proc.poll()
        if code is not None:
            sys.stderr.write(f"python -m servers nginx: error: nginx exited with status {code}\n")
            return 1
    if echo:
        log.poll()
    return 0
