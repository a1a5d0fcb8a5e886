"""`--target URL` and `--target-command CMD`: the matrix's clients against a server that is not
one of ours.

Such a server has no control listener, so what our servers count is counted elsewhere:
connections by the clients themselves (`ClientResult.connections_opened`), connections open at
once from the kernel (`/proc/net/tcp` by the target's port, server end), the server's CPU from
`--target-pid` (the process and the children it has, e.g. nginx's workers; none without it).
Load goes to loopback only (the developers' guide: never elsewhere): any other host is refused
before anything connects. An https target is verified with `--target-ca` (or the system store),
or not at all with `--target-insecure`; every client passes either on (`ClientConfig`).

`--target-command` is the user's own server behind the delay line: the command runs in the
line's server namespace (`benchmarks.net.cli.start_server`, as `net run --server` runs it: a
reference server's name, or any command with `{host}`/`{port}`), one fresh instance per cell,
and the clients load only that namespace's address (198.18.0.2). Its connections are then
counted by that namespace's kernel (PassiveOpens: nothing else lives there), its CPU from its
pid (known: we started it).
"""

from __future__ import annotations

import ipaddress
import shlex
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.clients.contract import check_ca, check_verification
from benchmarks.clients.shared import Target as ClientTarget
from benchmarks.common import UsageError, split_http_url
from benchmarks.harness.sockets import PROC_NET, kernel_counters, socket_counts
from benchmarks.net.spec import SERVER_ADDRESS

LOCALHOST = "localhost"


@dataclass(frozen=True)
class TargetServer:
    """The existing server every cell measures: its URL split, and the pid to measure if any."""

    url: str  # as given: the row's target_url
    scheme: str
    host: str
    port: int
    path: str  # request target the clients send
    pid: int | None = None
    ca_path: Path | None = None  # verifies an https target (None: the system store)
    insecure: bool = False  # https without verification

    @property
    def base_url(self) -> str:
        """scheme://host:port, what a client's --url takes (the path goes separately)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    def ssl_context(self) -> ssl.SSLContext | None:
        """What the clients do (the same code): verify with the CA, or the system store, or
        not at all."""
        client = ClientTarget(self.scheme, self.host, self.port, self.path, self.ca_path,
                              self.insecure)  # fmt: skip
        return client.ssl_context()


COMMAND_PREFIX = "command: "  # a command target's target_url: `command: nginx -c ...`


@dataclass(frozen=True)
class TargetCommand:
    """`--target-command`: a server the harness starts in the delay line's server namespace
    for every cell. `port` is its `{port}` (the namespace is the cell's alone, so a fixed one is
    safe; a reference server by name picks its own); https with a CA or `insecure`."""

    words: tuple[str, ...]
    port: int
    path: str = "/"
    ca_path: Path | None = None
    insecure: bool = False

    @property
    def url(self) -> str:
        """The row's target_url: the command, which is what identifies this target."""
        return COMMAND_PREFIX + shlex.join(self.words)

    @property
    def tls(self) -> bool:
        """https: a reference server given --tls, or a command with a CA or `insecure`."""
        return "--tls" in self.words or self.ca_path is not None or self.insecure

    def running(self, url: str, pid: int, ca_path: Path | None) -> TargetServer:
        """The target one cell measures, once its instance listens at `url` (a reference
        server's READY, or {host}:{port}) with `pid`."""
        scheme, host, port, _ = split_http_url(url)
        if self.tls and scheme == "http":
            scheme = "https"
        return TargetServer(
            self.url, scheme, host, port, self.path, pid, ca_path or self.ca_path, self.insecure
        )


def target_tls(target: TargetServer | TargetCommand) -> str:
    """The tls dimension of a target's rows: `none` for http; for an https URL the version the
    clients' own context negotiates with it (one handshake, now); for a command, the
    `--tls-version` it is given, else 1.3 (the clients offer 1.2 and 1.3 and take the highest;
    a server that speaks only 1.2 must be given as a URL to be labelled right)."""
    if not target.tls:
        return "none"
    if isinstance(target, TargetCommand):
        words = list(target.words)
        if "--tls-version" in words[:-1]:
            return words[words.index("--tls-version") + 1]
        return "1.3"
    context = target.ssl_context()
    assert context is not None
    try:
        with (
            socket.create_connection((target.host, target.port), timeout=5.0) as raw,
            context.wrap_socket(raw, server_hostname=target.host) as tls,
        ):
            version = tls.version() or ""
    except OSError as exc:  # ssl.SSLError is one
        raise UsageError(_no_answer(target, exc)) from None
    version = version.removeprefix("TLSv")
    if version not in ("1.2", "1.3"):
        raise UsageError(f"--target {target.url}: negotiated TLS {version or '?'}: only 1.2 and "
                         "1.3 are measured")  # fmt: skip
    return version


def _no_answer(target: TargetServer, reason: object) -> str:
    """The one line for a target that did not answer; a certificate that did not verify says
    which flag to give."""
    if isinstance(reason, ssl.SSLCertVerificationError):
        how = "--target-ca FILE (make bench CA=FILE) or --target-insecure (INSECURE=1)"
        why = reason.verify_message
        return f"--target {target.url}: certificate not verified ({why}): {how}"
    return f"--target {target.url} did not answer: {reason}"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or `localhost` (which resolves to them); names are not resolved, so
    nothing here depends on what a DNS server answers."""
    if host.lower() == LOCALHOST:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_target(
    url: str, pid: int | None, ca: Path | None = None, insecure: bool = False
) -> TargetServer:
    """The validated target; UsageError (one line) for a bad URL, a host that is not loopback,
    a pid that does not exist or TLS flags that do not fit the scheme."""
    try:
        scheme, host, port, path = split_http_url(url)
    except UsageError as exc:
        raise UsageError(f"--target: {exc}") from None
    check_tls_flags(scheme == "https", ca, insecure)
    if not is_loopback(host):
        raise UsageError(
            f"--target: {host} is not a loopback address: the suite loads only 127.0.0.1, ::1 "
            "or localhost (run the server on a loopback port)"
        )
    if pid is not None and not (pid > 0 and psutil.pid_exists(pid)):
        raise UsageError(f"--target-pid: no process {pid}")
    return TargetServer(url.strip(), scheme, host, port, path, pid, ca, insecure)


def check_tls_flags(https: bool | None, ca: Path | None, insecure: bool) -> None:
    """--target-ca / --target-insecure: a readable CA, not both, and only for https (`https`
    None: a command, whose scheme they decide)."""
    check_ca("--target-ca", ca)
    check_verification("--target-ca", "--target-insecure", ca, insecure)
    if https is False and (ca is not None or insecure):
        flag = "--target-ca" if ca is not None else "--target-insecure"
        raise UsageError(f"{flag} is for an https:// target")


def parse_command(
    text: str, port: int, ca: Path | None = None, insecure: bool = False
) -> TargetCommand:
    """The validated `--target-command`; UsageError (one line) for an empty or unparsable
    command, a bad port, or TLS flags that do not fit."""
    try:
        words = tuple(shlex.split(text))
    except ValueError as exc:
        raise UsageError(f"--target-command: {exc}") from None
    if not words:
        raise UsageError("--target-command needs a command")
    if not 1 <= port <= 65535:
        raise UsageError(f"--target-port must be between 1 and 65535, got {port}")
    from benchmarks.net.cli import reference_server_argv  # the one that starts it checks it
    from benchmarks.net.netns import NetError

    try:
        ours = reference_server_argv(list(words), SERVER_ADDRESS) is not None
    except NetError as exc:
        raise UsageError(f"--target-command: {exc}") from None
    if ours:
        _check_reference_flags(words)
    check_tls_flags(None, ca, insecure)
    return TargetCommand(words, port, "/", ca, insecure)


def _check_reference_flags(words: tuple[str, ...]) -> None:
    """A first word that names one of our servers runs `python -m servers NAME`: flags it does
    not take are a one-line error here (not a failed start in every cell), with the way to run
    a binary of the same name (Debian's nginx or node) instead."""
    from servers.options import build_parser

    known = {flag for action in build_parser()._actions for flag in action.option_strings}
    unknown = [w for w in words[1:] if w.startswith("-") and w.split("=")[0] not in known]
    if unknown:
        raise UsageError(
            f"--target-command: {words[0]!r} is `python -m servers {words[0]}`, which does not "
            f"take {unknown[0]} (run a binary of that name by its path: /usr/sbin/nginx -c FILE)"
        )


def check_answers(
    target: TargetServer, timeout_s: float = 5.0, started: bool = False
) -> str | None:
    """Why the target cannot be measured (one line), or None: it must answer one request over
    HTTP, any status (the rows count 4xx/5xx as errors), and a `--target-pid` must be the
    process, or a parent of the process, that listens on its port (not checked for a command
    we `started`: its pid is ours to know, its sockets in a namespace psutil does not read)."""
    request = urllib.request.Request(target.base_url + target.path, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(
            request, timeout=timeout_s, context=target.ssl_context()
        ) as resp:
            resp.read()
    except urllib.error.HTTPError:
        pass  # it answered
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return _no_answer(target, reason)
    if target.pid is not None and not started and not listens_on(target.pid, target.port):
        return f"--target-pid {target.pid}: it and its children do not listen on {target.port}"
    return None


def listens_on(pid: int, port: int) -> bool:
    """The process or one of its children has a listening socket on `port`."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return False
    for proc in procs:
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns):
            return True
    return False


@dataclass
class KernelWatch:
    """The monitor's view of a target, from /proc/net/tcp: `activity()` stands in for a
    server's request counter (it moves in every sample with a client connection to the port,
    so CPU % is taken over the intervals with traffic, as for our servers), and the most client
    connections seen at once (in any state but TIME_WAIT: an unpooled one is mostly connecting
    or closing) is the row's peak. Loopback: the clients' ends are in this namespace too.

    With `proc_net` of a command target's own namespace (`namespace=True`) only the server's
    ends are there: the peak is of those in any state but TIME_WAIT (an unpooled one is mostly
    in its handshake or closing, a round trip each), and activity is the namespace's
    `InSegs` (every segment that reached it: nothing but the clients' traffic does)."""

    port: int
    proc_net: Path = PROC_NET
    namespace: bool = False
    peak_open: int = 0
    _ticks: int = field(default=0, repr=False)

    def activity(self) -> int:
        counts = socket_counts(self.port, self.proc_net)
        if self.namespace:
            self.peak_open = max(self.peak_open, counts.held_server)
            return kernel_counters(self.proc_net).get("InSegs", 0)
        held = counts.held_client
        self.peak_open = max(self.peak_open, held)
        if held:
            self._ticks += 1
        return self._ticks
