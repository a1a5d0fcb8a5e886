"""Spec conformance over TLS (`--tls`, trusting the ca= file from READY) where TLS changes things:
reuse (KA-01); the close after `Connection: close`, after the N-th response and after a
pipelined close (KA-02, MAX-01, MAX-02, PIPE-02: TLS has no half-close, yet the last response
must survive the shutdown with unread requests behind it); error answers to oversized input
(ERR-04); the idle close (IDLE-01); and the header deadline, which over TLS must also bound a
client that never finishes (or never starts) its handshake (IDLE-04).
"""

from __future__ import annotations

from collections.abc import Callable

from tests.server_pool import Server
from tests.test_conformance_errors import err04_check
from tests.test_conformance_persistence import ka01_check, ka02_check, max01_check, max02_check
from tests.test_conformance_pipelining import pipe02_check
from tests.test_conformance_timeouts import idle01_check, idle04_check
from tests.wire_client import RawConnection

Connect = Callable[..., RawConnection]


def test_ka01_tls_two_requests_on_one_connection(tls_server: Server, connect: Connect) -> None:
    ka01_check(tls_server, connect)


def test_ka02_tls_connection_close(tls_server: Server, connect: Connect) -> None:
    ka02_check(tls_server, connect)


def test_max01_tls_graceful_close_after_n(tls_server: Server, connect: Connect) -> None:
    max01_check(tls_server, connect)


def test_max02_tls_five_pipelined_three_answered(tls_server: Server, connect: Connect) -> None:
    max02_check(tls_server, connect)


def test_pipe02_tls_close_in_the_middle(tls_server: Server, connect: Connect) -> None:
    pipe02_check(tls_server, connect)


def test_err04_tls_oversized_header_and_request_line(tls_server: Server, connect: Connect) -> None:
    err04_check(tls_server, connect)


def test_idle01_tls_idle_close(tls_server: Server, connect: Connect) -> None:
    idle01_check(tls_server, connect)


def test_idle04_tls_silent_after_handshake(tls_server: Server, connect: Connect) -> None:
    idle04_check(tls_server, connect(tls_server))


def test_idle04_tls_no_handshake(tls_server: Server) -> None:
    """A TCP client that connects to the TLS port and sends nothing: closed after H too."""
    with RawConnection.open(tls_server.host, tls_server.port) as conn:  # plain TCP, no handshake
        idle04_check(tls_server, conn)
