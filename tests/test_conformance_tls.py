"""Spec conformance over TLS (`--tls`, trusting the ca= file from READY) where TLS changes things:
reuse (KA-01), the close after `Connection: close` and after the N-th response (KA-02, MAX-01:
the last response must survive the TLS shutdown) and the idle close (IDLE-01).
"""

from __future__ import annotations

from collections.abc import Callable

from tests.harness import Server
from tests.rawhttp import RawConnection
from tests.test_conformance_persistence import ka01_check, ka02_check, max01_check
from tests.test_conformance_timeouts import idle01_check

Connect = Callable[..., RawConnection]


def test_ka01_tls_two_requests_on_one_connection(tls_server: Server, connect: Connect) -> None:
    ka01_check(tls_server, connect)


def test_ka02_tls_connection_close(tls_server: Server, connect: Connect) -> None:
    ka02_check(tls_server, connect)


def test_max01_tls_graceful_close_after_n(tls_server: Server, connect: Connect) -> None:
    max01_check(tls_server, connect)


def test_idle01_tls_idle_close(tls_server: Server, connect: Connect) -> None:
    idle01_check(tls_server, connect)
