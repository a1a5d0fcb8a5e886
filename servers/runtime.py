"""The skeleton every reference server shares: listener, TLS, counters, READY line, logging.

`python -m servers NAME` builds one `Runtime` and hands it to the chosen server's `serve()`.
The listening socket is bound here (port 0 by default, the real port read back) so that a busy
port or a bad address is one error message for all three servers, and the READY line is printed
only once the socket listens.
"""

from __future__ import annotations

import atexit
import gc
import os
import socket
import ssl
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from servers.accept import AcceptBackoff
from servers.control import ControlListener
from servers.counters import Counters
from servers.endpoints import RequestContext, connection_log_line
from servers.options import OptionsError, ServerName, ServerOptions, TlsVersion
from servers.policy import KeepAlivePolicy
from servers.slots import Slots

LISTEN_BACKLOG = 1024
# After SIGTERM/SIGINT, a request being handled gets this long to be answered (with
# `Connection: close`) before its connection is dropped; idle connections close at once.
# servers.launch waits STOP_TIMEOUT_S (5 s) before it kills.
SHUTDOWN_GRACE_S = 3.0


@dataclass
class Runtime:
    """Server-lifetime state handed to a server implementation."""

    options: ServerOptions
    listener: socket.socket
    ssl_context: ssl.SSLContext | None
    ca_path: Path | None
    control: ControlListener
    counters: Counters = field(default_factory=Counters)
    slots: Slots | None = None  # --max-connections (servers.slots); None: unlimited

    @cached_property
    def policy(self) -> KeepAlivePolicy:
        return KeepAlivePolicy(self.options.keepalive_timeout_s, self.options.keepalive_max)

    @property
    def url(self) -> str:
        host, port = self.listener.getsockname()[:2]
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{_url_host(host)}:{port}"

    def accept_backoff(self) -> AcceptBackoff:
        """How the server's own accept loop meets accept() failures (EMFILE...): pause, one
        log line and one `accept_backoffs` count per episode."""
        return AcceptBackoff(
            f"{self.options.name} server: listener", on_episode=self.counters.accept_backoff
        )

    def announce_ready(self) -> None:
        """Start the control listener and print the READY line (the first stdout line)."""
        self.control.start()
        words = [
            "READY", self.url, f"control={self.control.url}",
            f"pid={os.getpid()}", f"server={self.options.name}",
        ]  # fmt: skip
        if self.ca_path is not None:
            words.append(f"ca={self.ca_path}")
        print(" ".join(words), flush=True)

    def log_request(self, ctx: RequestContext, method: str, target: str, connection: str) -> None:
        """--log-connections: one stderr line per request, as in the seed experiment."""
        if self.options.log_connections:
            sys.stderr.write(connection_log_line(ctx, method, target, connection) + "\n")
            sys.stderr.flush()


def freeze_startup_heap() -> None:
    """Move every object alive after start-up (modules, classes, the server's state) out of
    the cyclic collector's reach (`gc.freeze`): a full collection then walks only what
    connections allocated since. With a connection per request the collector otherwise ran
    through the whole start-up heap often enough to cost a tenth of a close-mode request."""
    gc.collect()
    gc.freeze()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def set_nodelay(sock: socket.socket) -> None:
    """Rule 10: Nagle off on every accepted socket (a 40 ms stall per response otherwise)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def bind_listener(options: ServerOptions) -> socket.socket:
    """Bind and listen; a busy port or bad address becomes an OptionsError (one line, exit 2)."""
    try:
        family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
        return socket.create_server(
            (options.host, options.port), family=family, backlog=LISTEN_BACKLOG
        )
    except OSError as exc:
        raise OptionsError(
            f"cannot listen on {options.host}:{options.port}: {exc.strerror}"
        ) from None


def make_ssl_context(options: ServerOptions) -> tuple[ssl.SSLContext | None, Path | None]:
    """The server's TLS context, and the CA file that clients can trust when we made the cert."""
    if not options.tls:
        return None, None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.set_alpn_protocols(["http/1.1"])  # HTTP/1.1 only: a browser must not try h2
    pin_tls_version(ctx, options.tls_version)
    # One context for the server's life: its session cache (TLS 1.2 session IDs) and ticket key
    # (1.2 tickets, 1.3's only kind) live in it, so a client resumes on any later connection.
    if options.certfile is not None and options.keyfile is not None:
        try:
            ctx.load_cert_chain(options.certfile, options.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise OptionsError(f"cannot load certificate: {exc}") from None
        return ctx, None
    import trustme  # only needed for the generated certificate

    ca = trustme.CA()
    ca.issue_cert(*certificate_names(options.host)).configure_cert(ctx)
    fd, name = tempfile.mkstemp(prefix="keepalive-bench-ca-", suffix=".pem")
    with os.fdopen(fd, "wb") as fh:
        fh.write(ca.cert_pem.bytes())
    atexit.register(Path(name).unlink, missing_ok=True)
    return ctx, Path(name)


SSL_VERSIONS = {TlsVersion.TLS12: ssl.TLSVersion.TLSv1_2, TlsVersion.TLS13: ssl.TLSVersion.TLSv1_3}


def pin_tls_version(ctx: ssl.SSLContext, version: TlsVersion | None) -> None:
    """Accept only `version` (None: leave OpenSSL's range, 1.2 to 1.3, as it is)."""
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = SSL_VERSIONS[version]


def bind_control(
    options: ServerOptions, listener: socket.socket, counters: Counters
) -> ControlListener:
    """The control listener, bound now so that a bad --control-socket is one line, exit 2."""
    try:
        return ControlListener(listener, counters, options.name, options.control_socket)
    except OSError as exc:
        where = options.control_socket or "the control port"
        raise OptionsError(f"cannot listen on {where}: {exc.strerror or exc}") from None


DEFAULT_CERT_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def certificate_names(host: str) -> tuple[str, ...]:
    """The generated certificate's SANs: loopback names plus the bound host.

    A server bound to a namespace address (the delay line's 198.18.0.2) must present a
    certificate that names that address, or every verifying client rejects it. A wildcard bind
    adds nothing: there is no single address to name.
    """
    if host in DEFAULT_CERT_NAMES or host in WILDCARD_HOSTS:
        return DEFAULT_CERT_NAMES
    return (*DEFAULT_CERT_NAMES, host)


def build_runtime(options: ServerOptions) -> Runtime:
    ssl_context, ca_path = make_ssl_context(options)
    # Only the stdlib server updates counters from several threads (one per connection).
    counters = Counters(threaded=options.name is ServerName.STDLIB)
    listener = bind_listener(options)
    control = bind_control(options, listener, counters)
    slots = Slots(options.max_connections, counters) if options.max_connections else None
    return Runtime(options, listener, ssl_context, ca_path, control, counters, slots)
