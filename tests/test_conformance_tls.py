"""Spec conformance over TLS (`--tls`, trusting the ca= file from READY) where TLS changes things:
reuse (KA-01); the close after `Connection: close`, after the N-th response and after a
pipelined close (KA-02, MAX-01, MAX-02, PIPE-02: TLS has no half-close, yet the last response
must survive the shutdown with unread requests behind it); error answers to oversized input
(ERR-04); the idle close (IDLE-01); and the header deadline, which over TLS must also bound a
client that never finishes (or never starts) its handshake (IDLE-04).

Beyond the spec's cases (issue 8 item 8): every accepted TCP connection is counted, a failed
handshake too, with one close reason for each way it fails, the same on the three servers.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable

import pytest

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


# -- failed handshakes, counted (issue 8 item 8) --------------------------------------------------


def _client_hello() -> bytes:
    """A real ClientHello, made without a socket."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _junk(sock: socket.socket, server: Server) -> None:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # plain HTTP to the TLS port


def _unknown_ca(sock: socket.socket, server: Server) -> None:
    """A real client that does not trust our certificate: it sends an alert and closes."""
    with pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(sock, server_hostname=server.host)


def _half_a_hello_then_fin(sock: socket.socket, server: Server) -> None:
    sock.sendall(_client_hello()[:20])
    sock.shutdown(socket.SHUT_WR)


def _fin_at_once(sock: socket.socket, server: Server) -> None:
    sock.shutdown(socket.SHUT_WR)


def _reset_after_the_hello(sock: socket.socket, server: Server) -> None:
    sock.sendall(_client_hello())
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    sock.close()  # a reset


def _silence(sock: socket.socket, server: Server) -> None:
    """Nothing at all: the handshake is bounded by H (IDLE-04), then counted as such."""


HANDSHAKE_FAULTS = {
    "junk instead of a ClientHello": (_junk, "handshake_failed"),
    "the client rejects our certificate": (_unknown_ca, "handshake_failed"),
    "half a ClientHello, then FIN": (_half_a_hello_then_fin, "client_closed"),
    "FIN before anything": (_fin_at_once, "client_closed"),
    "reset after the ClientHello": (_reset_after_the_hello, "client_closed"),
    "silence past H": (_silence, "header_timeout"),
}


def _wait_for_the_close(sock: socket.socket, limit_s: float) -> None:
    """Read (and drop, an alert say) until the server closes; a closed socket returns at once."""
    if sock.fileno() < 0:
        return
    sock.settimeout(limit_s)
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline and sock.recv(4096):
            pass
    except OSError:  # a reset, or our own socket already closed by the TLS client
        pass


@pytest.mark.parametrize("fault", HANDSHAKE_FAULTS, ids=lambda f: f.replace(" ", "-"))
def test_a_failed_handshake_is_counted_with_its_reason(tls_server: Server, fault: str) -> None:
    act, reason = HANDSHAKE_FAULTS[fault]
    before = tls_server.wait_idle()
    with socket.create_connection((tls_server.host, tls_server.port)) as sock:
        act(sock, tls_server)
        _wait_for_the_close(
            sock, tls_server.close_limit_s(tls_server.options.header_timeout_s) + 1.0
        )
    after = tls_server.wait_idle()
    assert after["connections_accepted"] == before["connections_accepted"] + 1, after
    assert after["connections_open"] == 0, after
    gained = {
        k: n - before["closed"][k] for k, n in after["closed"].items() if n != before["closed"][k]
    }
    assert gained == {reason: 1}, gained
    assert after["requests_served"] == before["requests_served"], after


def test_a_handshake_in_progress_is_an_open_connection(tls_server: Server) -> None:
    """Counted at accept, before the handshake ends: `connections_open` shows it."""
    before = tls_server.wait_idle()
    with socket.create_connection((tls_server.host, tls_server.port)) as sock:
        sock.sendall(_client_hello()[:20])
        deadline = time.monotonic() + 3.0
        while (snap := tls_server.counters())["connections_open"] < 1:
            assert time.monotonic() < deadline, snap
            time.sleep(0.02)
        assert snap["connections_accepted"] == before["connections_accepted"] + 1, snap
