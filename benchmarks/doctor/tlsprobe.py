"""TLS facts: version, ALPN, handshake time, session tickets and resumption.

The handshake is timed apart from the TCP connect. ALPN is asked with `h2` and `http/1.1` on a
connection that sends no request (the other probes offer only `http/1.1`). Under TLS 1.3 the
server sends its session tickets after the handshake, so `SSLSocket.session` has a ticket only
after the first read; the doctor reads a whole response before it takes the session, then offers
it on a new connection (`session=`) and reads `session_reused`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from benchmarks.doctor.target import Target
from benchmarks.doctor.wire import READ_TIMEOUT_S, Conn, clock, request


@dataclass(frozen=True)
class TlsFacts:
    version: str | None
    cipher: str | None
    alpn_offered: list[str]
    alpn: str | None  # what the server chose when offered h2 and http/1.1
    handshake_ms: float  # full handshake, TCP connect excluded
    ticket: bool  # a session ticket arrived (after the first response under TLS 1.3)
    ticket_lifetime_s: int | None
    resumed: bool  # the ticket was accepted on a new connection
    resumed_handshake_ms: float | None


def _handshake(
    target: Target, context: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> tuple[ssl.SSLSocket, float]:
    sock = target.connect_tcp()
    try:
        sock.settimeout(READ_TIMEOUT_S)
        t0 = clock()
        tls = context.wrap_socket(sock, server_hostname=target.host, session=session)
        return tls, (clock() - t0) * 1000
    except BaseException:
        sock.close()
        raise


def probe_tls(target: Target) -> TlsFacts:
    """Three connections: ALPN, a full handshake and a request, a resumption attempt."""
    offered = ["h2", "http/1.1"]
    alpn_sock, _ = _handshake(target, target.ssl_context(tuple(offered)))
    alpn = alpn_sock.selected_alpn_protocol()
    alpn_sock.close()

    context = target.ssl_context()  # one context: sessions resume only within it
    tls, full_ms = _handshake(target, context)
    conn = Conn(tls)
    try:
        version, cipher = tls.version(), (tls.cipher() or (None,))[0]
        conn.send(request(target, connection="close"))
        conn.read_response()
        session = tls.session
    finally:
        conn.close()
    ticket = bool(session is not None and session.has_ticket)
    lifetime = session.ticket_lifetime_hint if session is not None and ticket else None
    resumed, resumed_ms = False, None
    if session is not None:
        again, resumed_ms = _handshake(target, context, session)
        resumed = bool(again.session_reused)
        again.close()
    return TlsFacts(
        version, cipher, offered, alpn, round(full_ms, 2), ticket, lifetime, resumed,
        round(resumed_ms, 2) if resumed_ms is not None else None,
    )  # fmt: skip
