"""Beyond the spec's cases (issue 8 item 8): over TLS every accepted TCP connection is counted, a
failed handshake too, with one close reason for each way it fails, the same on the three
servers: `handshake_failed` (junk, a client that rejects our certificate), `client_closed` (a
FIN or a reset inside the handshake), `header_timeout` (nothing within H). stdlib counted
them before (junk as `error`), uvloop and aiohttp did not count them at all.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time

import pytest

from tests.server_pool import Server


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
