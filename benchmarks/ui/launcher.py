"""Start a reference server and Locust's web UI pointed at it; Ctrl-C stops both.

    python -m benchmarks ui [--server uvloop] [--keepalive-timeout S] [--keepalive-max N]
                            [--tls] [--web-port 8089] [--workers 1]
                            [--rtt MS [--loss PCT] [--bandwidth MBIT]] [extra locust flags]

Both listen on 127.0.0.1. With --rtt the server and Locust run on the delay line instead
(benchmarks/ui/overline.py); the web UI is still at 127.0.0.1. Flags this launcher does not
know go to Locust unchanged (for example `--kab-think-time 6`), so Locust reports their
mistakes itself.

Each child runs in a session (process group) of its own, so a terminal Ctrl-C reaches only this
launcher, which then stops them in order: Locust first (its users stop before the server goes,
so the UI does not fill with connection errors), its workers with it (the whole group), then
the server. SIGTERM does the same. The children also get SIGTERM if the launcher dies without
cleaning up (PR_SET_PDEATHSIG), so nothing outlives it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from benchmarks.clients.contract import MAX_WORKERS
from benchmarks.net import NetError, netns
from servers.launch import (
    ReadyInfo,
    ServerProcess,
    ServerStartError,
    parse_ready_line,
    server_command,
)
from servers.options import (
    DEFAULT_KEEPALIVE_MAX,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    REFERENCE_SERVERS,
    OneLineParser,
    OptionsError,
    ServerName,
    ServerOptions,
)

PROG = "python -m benchmarks ui"
HOST = "127.0.0.1"
LOCUSTFILE = Path(__file__).resolve().parents[2] / "locustfiles" / "lab.py"
WEB_UI_TIMEOUT_S = 60.0  # Locust imports gevent, Flask and the locustfile: slow on a busy box
LOCUST_STOP_S = 10.0
PR_SET_PDEATHSIG = 1


class Stop(Exception):
    """SIGINT or SIGTERM arrived: leave whatever we are doing and clean up."""


class LaunchError(RuntimeError):
    """Something did not start; the message is one line for the user."""


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the launcher dies, however it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the launcher's own cleanup still applies


class SessionServer(ServerProcess):
    """A ServerProcess in a session of its own, so a terminal Ctrl-C does not reach it."""

    def start(self) -> ReadyInfo:
        self.proc = subprocess.Popen(
            server_command(self.options),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.ready = parse_ready_line(self._read_first_line())
        return self.ready


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        allow_abbrev=False,  # a Locust flag must never be taken for a prefix of one of ours
        description="Start a reference server and Locust's web UI on it (both on 127.0.0.1). "
        "Unknown flags are passed to Locust.",
    )
    parser.add_argument("--server", choices=[n.value for n in REFERENCE_SERVERS], default="uvloop")
    parser.add_argument(
        "--keepalive-timeout", type=float, default=DEFAULT_KEEPALIVE_TIMEOUT_S, metavar="S",
        help="server's idle timeout between requests (default %(default)g)",
    )  # fmt: skip
    parser.add_argument(
        "--keepalive-max", type=int, default=DEFAULT_KEEPALIVE_MAX, metavar="N",
        help="server's requests per connection, 0 = unlimited (default %(default)d)",
    )  # fmt: skip
    parser.add_argument("--tls", action="store_true", help="HTTPS server (generated CA)")
    parser.add_argument(
        "--web-port", type=int_between(0, 65535), default=8089, metavar="P",
        help="web UI port; 0 picks a free one (default 8089)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int_between(1, MAX_WORKERS), default=1, metavar="N",
        help="load processes: 1 = one plain Locust process (default), N > 1 = a master and N "
        f"workers (Locust's --processes N); at most {MAX_WORKERS}, as for make bench",
    )  # fmt: skip
    from benchmarks.ui import overline  # it imports this module

    overline.add_arguments(parser)
    return parser


def int_between(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a bad value is refused at parse time in one line, before anything starts.

    Without it a port of 99999 reaches socket.bind() and ends in an OverflowError traceback.
    """

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return convert


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int) -> None:
    """Fail in one line before starting anything, rather than after Locust's traceback."""
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise LaunchError(f"port {port} on {HOST} is taken ({exc.strerror}); "
                              "choose another with --web-port (WEB_PORT=)") from None  # fmt: skip


def locust_command(
    args: argparse.Namespace, url: str, control_url: str, ca: Path | None, extra: list[str]
) -> list[str]:
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--class-picker",
        "--host", url, "--web-host", HOST, "--web-port", str(args.web_port),
        "--users", "10", "--spawn-rate", "10", "--kab-control-url", control_url,
    ]  # fmt: skip
    if ca is not None:
        argv += ["--kab-ca", str(ca)]
    if args.workers > 1:
        # Master and workers talk over loopback on a free port: not *:5557, which another
        # run may hold and which would be open to the network.
        port = str(free_port())
        argv += ["--processes", str(args.workers), "--master-bind-host", HOST,
                 "--master-bind-port", port, "--master-port", port]  # fmt: skip
    return argv + extra


def start_locust(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent
    )


def wait_for_web_ui(url: str, locust: subprocess.Popen[bytes]) -> None:
    """Until GET / answers; the URLs are printed only once they work."""
    deadline = time.monotonic() + WEB_UI_TIMEOUT_S
    while time.monotonic() < deadline:
        if locust.poll() is not None:
            raise LaunchError(f"locust exited with status {locust.returncode} before its web UI")
        try:
            with urllib.request.urlopen(url + "/", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise LaunchError(f"locust's web UI did not answer at {url} in {WEB_UI_TIMEOUT_S:g} s")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(proc: subprocess.Popen[bytes], first: signal.Signals, grace_s: float) -> None:
    """Signal the child's whole process group, wait, then SIGKILL what is left of it."""
    if proc.poll() is None:
        _killpg(proc.pid, first)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 2.0  # forked workers may outlive their master briefly
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    _killpg(proc.pid, signal.SIGKILL)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def describe(args: argparse.Namespace) -> str:
    maximum = args.keepalive_max or "unlimited"
    return f"{args.server}, keep-alive timeout {args.keepalive_timeout:g} s, max {maximum}"


def run(args: argparse.Namespace, extra: list[str]) -> int:
    options = ServerOptions(
        name=ServerName(args.server),
        host=HOST,
        keepalive_timeout_s=args.keepalive_timeout,
        keepalive_max=args.keepalive_max,
        tls=args.tls,
    )
    server = SessionServer(options)
    locust: subprocess.Popen[bytes] | None = None
    try:
        ready = server.start()
        print(f"server  {ready.url}  ({describe(args)}) pid={ready.pid}", flush=True)
        print(f"control {ready.control_url}/counters", flush=True)
        argv = locust_command(args, ready.url, ready.control_url, ready.ca_path, extra)
        locust = start_locust(argv)
        web = f"http://{HOST}:{args.web_port}"
        wait_for_web_ui(web, locust)
        print(f"web UI  {web}  pid={locust.pid}", flush=True)
        print(f"charts  {web}/kab/server", flush=True)
        print("Ctrl-C stops Locust and the server.", flush=True)
        return watch(server, locust)
    except Stop:
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # cleanup is not interrupted by a second Ctrl-C
        if locust is not None:
            stop_group(locust, signal.SIGINT, LOCUST_STOP_S)
        server.stop()
        if server.proc is not None:
            _killpg(server.proc.pid, signal.SIGKILL)


def watch(server: SessionServer, locust: subprocess.Popen[bytes]) -> int:
    """Until Ctrl-C (Stop), or until either child exits on its own, which is an error."""
    while True:
        if locust.poll() is not None:
            sys.stderr.write(f"{PROG}: locust exited with status {locust.returncode}\n")
            return 1
        if not server.alive():
            sys.stderr.write(f"{PROG}: the {server.options.name} server exited\n")
            return 1
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    from benchmarks.ui import overline

    try:
        spec = overline.link_spec(args)  # --rtt: the load goes over the delay line
        if spec is not None:
            netns.check_preconditions()
        if args.web_port == 0:
            args.web_port = free_port()
        check_port_free(args.web_port)
        return run(args, extra) if spec is None else overline.run(args, extra, spec)
    except (LaunchError, ServerStartError, OptionsError, NetError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2 if isinstance(exc, OptionsError | NetError) else 1
    except Stop:
        return 0
