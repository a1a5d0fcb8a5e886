"""TLS versions and session resumption on the reference servers (`--tls --tls-version`).

A new connection can skip the full handshake by resuming an earlier session: a TLS 1.2 session
ID or ticket, a TLS 1.3 ticket (sent after the handshake, so a client has it only once it has
read something). The servers keep one SSLContext for their life, so its session cache and
ticket key serve every later connection; each counts the handshakes that resumed in
`tls_resumed` (and all that succeeded in `tls_handshakes`), which the harness checks a
resuming client's cells with. `--tls-version` pins the one version a server accepts.
"""

from __future__ import annotations

import socket
import ssl

import pytest

from servers.options import TlsVersion
from tests.server_pool import Server, ServerPool

SSL_VERSIONS = {TlsVersion.TLS12: ssl.TLSVersion.TLSv1_2, TlsVersion.TLS13: ssl.TLSVersion.TLSv1_3}
TIMEOUT_S = 5.0


def client_context(server: Server, version: TlsVersion) -> ssl.SSLContext:
    """A verifying client that speaks only `version` and offers http/1.1 in ALPN."""
    ctx = ssl.create_default_context(cafile=str(server.ca_path))
    ctx.minimum_version = ctx.maximum_version = SSL_VERSIONS[version]
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def get_once(
    server: Server, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> tuple[ssl.SSLSession | None, bool, str | None]:
    """One GET on a new connection, offering `session`: (the session to resume next time,
    taken after the response was read, whether this one was resumed, the ALPN protocol)."""
    raw = socket.create_connection((server.host, server.port), timeout=TIMEOUT_S)
    with raw, ctx.wrap_socket(raw, server_hostname=server.host, session=session) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data[:80]
        return tls.session, bool(tls.session_reused), tls.selected_alpn_protocol()


@pytest.fixture(params=list(TlsVersion), ids=lambda v: f"tls{v}")
def version(request: pytest.FixtureRequest) -> TlsVersion:
    return TlsVersion(request.param)


def test_resumed_sessions_are_counted(pool: ServerPool, version: TlsVersion) -> None:
    server = pool.get(tls=True, tls_version=version)
    ctx = client_context(server, version)
    before = server.wait_idle()
    session, reused, alpn = get_once(server, ctx)
    assert not reused and alpn == "http/1.1"
    for _ in range(2):
        session, reused, _ = get_once(server, ctx, session)
        assert reused, f"the server did not resume a TLS {version} session"
    after = server.wait_idle()
    assert after["tls_handshakes"] - before["tls_handshakes"] == 3, after
    assert after["tls_resumed"] - before["tls_resumed"] == 2, after


def test_a_full_handshake_is_not_counted_as_resumed(pool: ServerPool) -> None:
    """Without a session, or with one the server never issued: full handshakes only."""
    server = pool.get(tls=True, tls_version=TlsVersion.TLS13)
    ctx = client_context(server, TlsVersion.TLS13)
    before = server.wait_idle()
    for _ in range(2):
        _, reused, _ = get_once(server, ctx)
        assert not reused
    after = server.wait_idle()
    assert after["tls_handshakes"] - before["tls_handshakes"] == 2, after
    assert after["tls_resumed"] == before["tls_resumed"], after


@pytest.mark.parametrize(
    ("pinned", "offered"),
    [(TlsVersion.TLS12, TlsVersion.TLS13), (TlsVersion.TLS13, TlsVersion.TLS12)],
    ids=["1.2-refuses-1.3", "1.3-refuses-1.2"],
)
def test_tls_version_refuses_the_other(
    pool: ServerPool, pinned: TlsVersion, offered: TlsVersion
) -> None:
    server = pool.get(tls=True, tls_version=pinned)
    before = server.wait_idle()
    with pytest.raises(ssl.SSLError):
        get_once(server, client_context(server, offered))
    after = server.wait_idle()
    assert after["closed"]["handshake_failed"] > before["closed"]["handshake_failed"], after
    assert after["tls_handshakes"] == before["tls_handshakes"], after
