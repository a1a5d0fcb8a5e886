"""The URL to examine: parsed and resolved once, so every probe goes to one address only.

The doctor never follows a redirect and never contacts another host: every connection goes to
the address the URL's host resolved to when the command started.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import HttpTarget, UsageError, split_http_url

CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Target(HttpTarget):
    """Scheme, host, port and request target of the URL, plus the one resolved address."""

    family: int
    address: str
    ca: Path | None = None
    insecure: bool = False

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
    return split_http_url(url)


def resolve(url: str, ca: Path | None = None, insecure: bool = False) -> Target:
    """Parse and resolve once; UsageError (one line) if the host does not resolve."""
    scheme, host, port, path = parse_url(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"cannot resolve {host!r}: {getattr(exc, 'strerror', exc)}") from exc
    family, _, _, _, sockaddr = infos[0]
    return Target(scheme, host, port, path, family, str(sockaddr[0]), ca, insecure)
