"""`make ui RTT=50` (`--rtt`, `--loss`, `--bandwidth`): the lab with its load on the delay line.

The server runs in the line's server namespace (198.18.0.2), Locust in a client namespace
(198.18.1.2): every request of every user crosses the relay, so an unpooled user's response
time jumps by a round trip (its handshake) over a pooled one's. What is not load stays off
the line, through forwarders of this process (a socket stays in the namespace it was made in):

- the web UI binds 127.0.0.1 inside the client namespace; this process listens on the host's
  127.0.0.1:<web-port> and forwards each connection there, so the browser sees the usual URL;
- Locust's Server side tab reads the server's control listener through 127.0.0.1:<port> of the
  client namespace, forwarded from the server namespace: no round trip, no loss, and none of
  its packets in the link's figures. Its TIME_WAIT rows read each side's own namespace.

Ctrl-C stops Locust first (its users end before the server goes), then the line, the server
and the namespaces with it; the link's figures are printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from benchmarks.net import DelayLine, LinkSpec, NetError
from benchmarks.net.cli import ServerInfo, start_server
from benchmarks.net.forward import Forwarder, connector, listen
from benchmarks.ui import launcher
from servers.options import ServerName, ServerOptions, seconds_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The link's flags on the launcher's parser (no --rtt: loopback, as before)."""
    parser.add_argument(
        "--rtt", type=_rtt, default=None, metavar="MS",
        help="put the load on the delay line with this round trip (needs root); "
        "none (the default) is loopback",
    )  # fmt: skip
    parser.add_argument("--loss", type=float, default=None, metavar="PCT", help="with --rtt")
    parser.add_argument("--bandwidth", type=float, default=None, metavar="MBIT", help="with --rtt")


def _rtt(text: str) -> float | None:
    """`none` is loopback, as RTT=none means for make bench."""
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of ms or none, got {text!r}") from None


def link_spec(args: argparse.Namespace) -> LinkSpec | None:
    """The line asked for, or None for loopback; --loss or --bandwidth alone is a mistake."""
    if args.rtt is None:
        if args.loss is not None or args.bandwidth is not None:
            raise NetError("--loss and --bandwidth need --rtt (RTT=)")
        return None
    return LinkSpec(rtt_ms=args.rtt, loss_pct=args.loss or 0.0, bandwidth_mbit=args.bandwidth)


def server_words(options: ServerOptions) -> list[str]:
    """The reference server's options; the line chooses its host and port."""
    words = [
        options.name.value,
        "--keepalive-timeout", seconds_text(options.keepalive_timeout_s),
        "--keepalive-max", str(options.keepalive_max),
    ]  # fmt: skip
    return words + (["--tls"] if options.tls else [])


def run(args: argparse.Namespace, extra: list[str], spec: LinkSpec) -> int:
    """As launcher.run, with the server and Locust in their namespaces; 0 after Ctrl-C."""
    options = ServerOptions(
        name=ServerName(args.server),
        keepalive_timeout_s=args.keepalive_timeout,
        keepalive_max=args.keepalive_max,
        tls=args.tls,
    )
    line = DelayLine(spec)
    with line:
        status = _run_on(line, args, extra, options)
    if line.final_stats is not None:
        sys.stderr.write(f"net: link {spec.describe()}: {line.final_stats.summary()}\n")
    return status


def _run_on(
    line: DelayLine, args: argparse.Namespace, extra: list[str], options: ServerOptions
) -> int:
    """Server, control forwarder, Locust, web forwarder; Locust is stopped before the line."""
    client = line.clients[0]
    locust: subprocess.Popen[Any] | None = None
    try:
        info = start_server(line, server_words(options), 0)
        _print(f"server  {info.url}  ({launcher.describe(args)}) pid={info.pid}")
        _print(
            f"link    {line.spec.describe()}: server in {line.server.name} "
            f"({line.server.address}), Locust in {client.name} ({client.address})"
        )
        with contextlib.ExitStack() as stack:
            control = stack.enter_context(_control_forwarder(line, info))
            control_url = f"http://{launcher.HOST}:{control.port}"
            _print(f"control {info.control_url}/counters (Locust reads it at {control_url})")
            argv = launcher.locust_command(args, info.url, control_url, info.ca_path, extra)
            locust = line.spawn(client, argv, stdin=subprocess.DEVNULL)
            web_target = connector((launcher.HOST, args.web_port), client.name)
            stack.enter_context(Forwarder(listen((launcher.HOST, args.web_port)), web_target))
            web = f"http://{launcher.HOST}:{args.web_port}"
            launcher.wait_for_web_ui(web, locust)
            _print(f"web UI  {web}  pid={locust.pid}")
            _print(f"charts  {web}/kab/server")
            _print("Ctrl-C stops Locust and the server.")
            return watch(info, locust)
    except launcher.Stop:
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # cleanup is not interrupted by a second Ctrl-C
        if locust is not None:  # SIGINT, as on loopback: Locust stops its users itself
            launcher.stop_group(locust, signal.SIGINT, launcher.LOCUST_STOP_S)


def _control_forwarder(line: DelayLine, info: ServerInfo) -> Forwarder:
    """127.0.0.1:<free port> in the client namespace -> the control listener, from the
    server's own namespace."""
    assert info.control_url is not None
    parts = urlsplit(info.control_url)
    target = connector((parts.hostname or "", parts.port or 80), line.server.name)
    return Forwarder(listen((launcher.HOST, 0), line.clients[0].name), target)


def _print(text: str) -> None:
    print(text, flush=True)


def watch(info: ServerInfo, locust: subprocess.Popen[Any]) -> int:
    """Until Ctrl-C (Stop), or until either child exits on its own, which is an error."""
    while True:
        if locust.poll() is not None:
            sys.stderr.write(f"{launcher.PROG}: locust exited with status {locust.returncode}\n")
            return 1
        if info.proc is not None and info.proc.poll() is not None:
            sys.stderr.write(f"{launcher.PROG}: the server exited\n")
            return 1
        time.sleep(0.2)
