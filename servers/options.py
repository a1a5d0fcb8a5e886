"""Server configuration: one typed, validated value built once at the command-line edge.

Everything that starts a server (the CLI, the tests, the benchmark harness) goes through
`ServerOptions`: `parse_args` turns argv into it and `to_argv` turns it back, so the flags are
spelled in exactly one place.
"""

from __future__ import annotations

import argparse
import enum
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import OneLineParser, UsageError, seconds_text


class ServerName(enum.StrEnum):
    """The three reference implementations, then servers nobody here wrote (nginx, Node) that
    `python -m servers` runs behind the same READY line and control listener."""

    STDLIB = "stdlib"
    AIOHTTP = "aiohttp"
    UVLOOP = "uvloop"
    NGINX = "nginx"
    NODE = "node"


# Ours, sharing servers/policy.py: the default of every command that iterates over servers.
REFERENCE_SERVERS = (ServerName.STDLIB, ServerName.AIOHTTP, ServerName.UVLOOP)
# Wrapped third-party servers (servers/nginx_server.py, servers/node_server.py): opt-in.
EXTERNAL_SERVERS = (ServerName.NGINX, ServerName.NODE)


DEFAULT_KEEPALIVE_TIMEOUT_S = 5.0
DEFAULT_KEEPALIVE_MAX = 100
# Header deadline used when keep-alive is off (T = 0) and none was given (spec: "or 5 when T is 0").
FALLBACK_HEADER_TIMEOUT_S = 5.0
# Upper bound for T and H: a day. Beyond it, timers overflow time_t in http.server's socket
# timeouts and `Keep-Alive: timeout=` would advertise hundreds of digits.
MAX_TIMEOUT_S = 86_400.0
# A Unix socket path is at most 107 bytes (sun_path holds 108, with the terminating NUL).
MAX_UNIX_PATH_BYTES = 107


class TlsVersion(enum.StrEnum):
    """`--tls-version`: the one TLS version a server accepts (without it, 1.2 and 1.3 both are,
    as OpenSSL's defaults allow), so a cell measures the handshake it names."""

    TLS12 = "1.2"
    TLS13 = "1.3"


class OptionsError(UsageError):
    """A server configuration that cannot run (one line, exit 2); callers that start servers
    catch it apart from other bad input."""


@dataclass(frozen=True)
class ServerOptions:
    """What a reference server needs to know to start; validated on construction."""

    name: ServerName
    host: str = "127.0.0.1"
    port: int = 0
    keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    keepalive_max: int = DEFAULT_KEEPALIVE_MAX
    header_timeout_s: float | None = None
    tls: bool = False
    tls_version: TlsVersion | None = None  # None: 1.2 and 1.3 both accepted
    certfile: Path | None = None
    keyfile: Path | None = None
    log_connections: bool = False
    control_socket: Path | None = None  # control listener on this Unix socket instead of TCP
    max_connections: int = 0  # connections open at once; 0 = unlimited (spec rule 11)
    reclaim_idle: bool = False  # when full, close the longest-idle keep-alive connection

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise OptionsError(f"--port must be between 0 and 65535, got {self.port}")
        if not 0 <= self.keepalive_timeout_s <= MAX_TIMEOUT_S:  # False for nan
            raise OptionsError(
                f"--keepalive-timeout must be >= 0 and at most {MAX_TIMEOUT_S:g}, "
                f"got {self.keepalive_timeout_s}"
            )
        if self.keepalive_max < 0:
            raise OptionsError(f"--keepalive-max must be >= 0, got {self.keepalive_max}")
        if self.header_timeout_s is not None and not 0 < self.header_timeout_s <= MAX_TIMEOUT_S:
            raise OptionsError(
                f"--header-timeout must be > 0 and at most {MAX_TIMEOUT_S:g}, "
                f"got {self.header_timeout_s}"
            )
        if (self.certfile is None) != (self.keyfile is None):
            raise OptionsError("--certfile and --keyfile must be given together")
        if self.tls_version is not None and not self.tls:
            raise OptionsError("--tls-version needs --tls")
        if self.certfile is not None and not self.tls:
            raise OptionsError("--certfile/--keyfile need --tls")
        for path in (self.certfile, self.keyfile):
            if path is not None and not path.is_file():
                raise OptionsError(f"no such file: {path}")
        if self.control_socket is not None:
            check_control_socket(self.control_socket)
        if self.max_connections < 0:
            raise OptionsError(f"--max-connections must be >= 0, got {self.max_connections}")
        if self.reclaim_idle and self.max_connections == 0:
            raise OptionsError("--reclaim-idle needs --max-connections")
        if self.max_connections and self.name in EXTERNAL_SERVERS:
            raise OptionsError(f"--max-connections is for the reference servers, not {self.name}")

    @property
    def effective_header_timeout_s(self) -> float:
        """H defaults to T, or to 5 s when keep-alive is disabled (T = 0)."""
        if self.header_timeout_s is not None:
            return self.header_timeout_s
        return self.keepalive_timeout_s or FALLBACK_HEADER_TIMEOUT_S

    def to_argv(self) -> list[str]:
        """The `python -m servers ...` arguments that reproduce these options."""
        argv = [
            self.name.value,
            "--host", self.host,
            "--port", str(self.port),
            "--keepalive-timeout", seconds_text(self.keepalive_timeout_s),
            "--keepalive-max", str(self.keepalive_max),
        ]  # fmt: skip
        if self.header_timeout_s is not None:
            argv += ["--header-timeout", seconds_text(self.header_timeout_s)]
        if self.tls:
            argv.append("--tls")
        if self.tls_version is not None:
            argv += ["--tls-version", self.tls_version.value]
        if self.certfile is not None and self.keyfile is not None:
            argv += ["--certfile", str(self.certfile), "--keyfile", str(self.keyfile)]
        if self.log_connections:
            argv.append("--log-connections")
        if self.control_socket is not None:
            argv += ["--control-socket", str(self.control_socket)]
        if self.max_connections:
            argv += ["--max-connections", str(self.max_connections)]
        if self.reclaim_idle:
            argv.append("--reclaim-idle")
        return argv


def check_control_socket(path: Path) -> None:
    """A path a Unix socket can be bound at: short enough, in an existing directory, and not
    some other kind of file (a stale socket is replaced when the server binds it)."""
    absolute = os.path.abspath(path)
    if len(os.fsencode(absolute)) > MAX_UNIX_PATH_BYTES:
        raise OptionsError(
            f"--control-socket path is too long for a Unix socket ({len(os.fsencode(absolute))} "
            f"bytes, at most {MAX_UNIX_PATH_BYTES}): {path}"
        )
    if not os.path.isdir(os.path.dirname(absolute)):
        raise OptionsError(f"--control-socket: no such directory: {os.path.dirname(absolute)}")
    try:
        mode = os.lstat(absolute).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OptionsError(f"--control-socket: {path} exists and is not a socket")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m servers",
        description=(
            "Start a reference HTTP/1.1 server with a configurable keep-alive policy. "
            "The first stdout line is 'READY <url> control=<url> pid=<pid> server=<name>' "
            "(plus 'ca=<pem>' with a generated TLS certificate)."
        ),
    )
    parser.add_argument("name", choices=[n.value for n in ServerName], help="implementation")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    parser.add_argument(
        "--keepalive-timeout", type=float, default=DEFAULT_KEEPALIVE_TIMEOUT_S, metavar="SECONDS",
        help="idle time allowed between requests; 0 disables keep-alive (default %(default)g); "
        "advertised in Keep-Alive: timeout= in whole seconds, rounded down",
    )  # fmt: skip
    parser.add_argument(
        "--keepalive-max", type=int, default=DEFAULT_KEEPALIVE_MAX, metavar="COUNT",
        help="requests per connection, the last answered with Connection: close; "
        "0 = unlimited (default %(default)d)",
    )  # fmt: skip
    parser.add_argument(
        "--header-timeout", type=float, default=None, metavar="SECONDS",
        help="deadline for a request's header section, from its first byte (default: the "
        "keep-alive timeout, or 5 when keep-alive is off)",
    )  # fmt: skip
    parser.add_argument("--tls", action="store_true", help="serve HTTPS (self-signed by default)")
    parser.add_argument(
        "--tls-version", choices=[v.value for v in TlsVersion],
        help="accept only this TLS version (with --tls; default: 1.2 and 1.3)",
    )  # fmt: skip
    parser.add_argument("--certfile", type=Path, help="PEM certificate chain (with --tls)")
    parser.add_argument("--keyfile", type=Path, help="PEM private key (with --tls)")
    parser.add_argument(
        "--log-connections", action="store_true",
        help="one stderr line per request: client port, connection, request number, path, "
        "Connection header",
    )  # fmt: skip
    parser.add_argument(
        "--control-socket", type=Path, metavar="PATH",
        help="serve the control listener (GET /counters) on a Unix socket at PATH instead of "
        "a TCP port, reachable from other network namespaces; READY says control=unix:PATH",
    )  # fmt: skip
    parser.add_argument(
        "--max-connections", type=int, default=0, metavar="COUNT",
        help="connections open at once; beyond them the server stops accepting (the listen "
        "backlog holds the rest) until one closes; 0 = unlimited (default)",
    )  # fmt: skip
    parser.add_argument(
        "--reclaim-idle", action="store_true",
        help="with --max-connections: when full, close the longest-idle keep-alive connection "
        "to make room for a waiting one (as nginx does), counted as 'reclaimed'",
    )  # fmt: skip
    return parser


def parse_args(argv: list[str] | None = None) -> ServerOptions:
    """Parse and validate; on bad input print one line and exit 2."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return ServerOptions(
            name=ServerName(ns.name),
            host=ns.host,
            port=ns.port,
            keepalive_timeout_s=ns.keepalive_timeout,
            keepalive_max=ns.keepalive_max,
            header_timeout_s=ns.header_timeout,
            tls=ns.tls,
            tls_version=None if ns.tls_version is None else TlsVersion(ns.tls_version),
            certfile=ns.certfile,
            keyfile=ns.keyfile,
            log_connections=ns.log_connections,
            control_socket=ns.control_socket,
            max_connections=ns.max_connections,
            reclaim_idle=ns.reclaim_idle,
        )
    except OptionsError as exc:
        parser.error(str(exc))
        raise  # unreachable: error() exits
