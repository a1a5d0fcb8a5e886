"""The URL to examine: parsed and resolved once, so every probe goes to one address only.

The doctor never follows a redirect and never contacts another host: every connection goes to
the address the URL's host resolved to when the command started.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.common import UsageError

CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Target:
    """Scheme, host, port and request target of the URL, plus the one resolved address."""

    scheme: str
    host: str  # as written in the URL: Host header and TLS server name
    port: int
    path: str  # request target: path and query
    family: int
    address: str
    ca: Path | None = None
    insecure: bool = False

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path}"

    @property
    def peer(self) -> str:
        """`address:port` as connected to."""
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{address}:{self.port}"

    def ssl_context(self, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
        """Verifying context (the given CA or the system store) unless --insecure."""
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(list(alpn))
        return context

    def connect_tcp(self, timeout_s: float = CONNECT_TIMEOUT_S) -> socket.socket:
        """A TCP connection to the resolved address, Nagle off (requests go out whole)."""
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout_s)
            sock.connect((self.address, self.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        return sock


def parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target); UsageError for anything but http(s)://host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"malformed URL {url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"URL must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise UsageError(f"URL has no host: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"URL with user info is not supported: {url!r}")
    if any(c in url for c in " \r\n\t"):
        raise UsageError(f"URL contains whitespace: {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def resolve(url: str, ca: Path | None = None, insecure: bool = False) -> Target:
    """Parse and resolve once; UsageError (one line) if the host does not resolve."""
    scheme, host, port, path = parse_url(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"cannot resolve {host!r}: {getattr(exc, 'strerror', exc)}") from exc
    family, _, _, _, sockaddr = infos[0]
    return Target(scheme, host, port, path, family, str(sockaddr[0]), ca, insecure)
