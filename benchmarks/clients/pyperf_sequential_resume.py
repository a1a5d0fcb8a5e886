"""pyperf-sequential, resuming TLS sessions: what a new connection costs without a full handshake.

Like `benchmarks.clients.pyperf_sequential` (one request at a time over http.client), but each
new https connection offers the TLS session of the one before it, as a browser does and no
Python HTTP client does (urllib3/requests, aiohttp and geventhttpclient start every connection
with a full handshake). So unpooled it measures a new connection with a resumed session: TCP's
handshake plus an abbreviated TLS one (TLS 1.2: one round trip instead of two; TLS 1.3: one
either way, with less work for both sides). Pooled it is pyperf-sequential (the connections the
server's keep-alive max closes are resumed too).

Under TLS 1.3 the server sends its session tickets after the handshake, so the session is taken
once the response has arrived; under 1.2 the handshake itself carries it. Every handshake is
checked (`session_reused`) and the resumed ones counted: the result's `tls_resumed`, which the
harness compares with the server's own `tls_resumed`.

    python -m benchmarks.clients.pyperf_sequential_resume --url https://127.0.0.1:8443 \
        --mode unpooled --ca ca.pem --duration 5 --warmup 1 --output /tmp/resume.json
"""

from __future__ import annotations

import http.client
import ssl
import sys
from collections.abc import Callable
from typing import Any

from benchmarks.clients.contract import Mode
from benchmarks.clients.pyperf_driver import ClientSpec, main
from benchmarks.clients.pyperf_sequential import SequentialClient
from benchmarks.clients.shared import CONNECT_TIMEOUT_S, Target

PROG = "python -m benchmarks.clients.pyperf_sequential_resume"


class ResumingHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPSConnection whose handshake offers a session (http.client's has no way to): the
    one `session()` gives at connect time, so http.client's own reconnects offer it too."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        context: ssl.SSLContext,
        session: Callable[[], ssl.SSLSession | None],
        handshake_done: Callable[[ssl.SSLSocket], None],
    ) -> None:
        super().__init__(host, port, timeout=CONNECT_TIMEOUT_S, context=context)
        self._tls_context = context
        self._session = session
        self._handshake_done = handshake_done
        self.tls: ssl.SSLSocket | None = None  # kept after http.client drops `sock` at a close

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP (with TCP_NODELAY), then our handshake
        self.tls = self._tls_context.wrap_socket(
            self.sock, server_hostname=self.host, session=self._session()
        )
        self.sock = self.tls
        self._handshake_done(self.tls)


class ResumingClient(SequentialClient):
    """SequentialClient whose https connections resume the latest session it was given."""

    def __init__(self, target: Target, mode: Mode) -> None:
        super().__init__(target, mode)
        self.session: ssl.SSLSession | None = None
        self.tls_resumed = 0

    def _https(self, context: ssl.SSLContext) -> http.client.HTTPConnection:
        return ResumingHTTPSConnection(
            self.target.host, self.target.port, context=context,
            session=lambda: self.session, handshake_done=self._handshake_done,
        )  # fmt: skip

    def _handshake_done(self, tls: ssl.SSLSocket) -> None:
        if tls.session_reused:
            self.tls_resumed += 1

    def _handshake(self, conn: http.client.HTTPConnection, context: ssl.SSLContext) -> None:
        """The handshake offering the latest session (SequentialClient times it)."""
        tls = context.wrap_socket(conn.sock, server_hostname=self.target.host, session=self.session)
        conn.sock = tls
        if isinstance(conn, ResumingHTTPSConnection):
            conn.tls = tls
        self._handshake_done(tls)

    def _got_head(self, conn: http.client.HTTPConnection) -> None:
        # The TLS 1.3 tickets came before the response; after read() a closing connection's
        # socket is gone (http.client closes it at the end of the body).
        tls: Any = getattr(conn, "tls", None)
        if tls is not None and tls.session is not None:
            self.session = tls.session


SPEC = ClientSpec(
    prog=PROG,
    module="benchmarks.clients.pyperf_sequential_resume",
    description=__doc__.split("\n")[0],
    bench_name=lambda config: f"sequential-resume-{config.mode}",
    make_client=lambda config, target: ResumingClient(target, config.mode),
)

if __name__ == "__main__":
    sys.exit(main(SPEC))
