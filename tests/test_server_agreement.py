"""Beyond the spec's listed cases: the three servers agree on request framing.

stdlib validates with `servers.framing`, uvloop and aiohttp with llhttp (plus `servers.framing`
on uvloop); a request any of them rejects, all of them reject with the same status.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.server_pool import Server, expect_keep, run_subcases
from tests.test_conformance_errors import error_check
from tests.wire_client import G, RawConnection

Connect = Callable[..., RawConnection]

STRICT_FRAMING = {
    "Content-Length: 5, 5": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello",
        {400},
    ),
    "Content-Length twice": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        {400},
    ),
    "chunked, chunked": (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    "bare LF": (b"GET / HTTP/1.1\nHost: t\n\n", {400}),
    "GET foo": (b"GET foo HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
    "GET *": (b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
    "raw 0xff in target": (b"GET /\xff HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
}


def test_servers_agree_on_strict_framing(server: Server, connect: Connect) -> None:
    """stdlib parses with servers.framing, uvloop and aiohttp with llhttp: one answer for all."""
    run_subcases(
        {
            name: error_check(server, connect, request, statuses)
            for name, (request, statuses) in STRICT_FRAMING.items()
        }
    )


def test_asterisk_and_absolute_form_are_served(server: Server, connect: Connect) -> None:
    conn = connect(server)
    conn.send(G("*", method="OPTIONS") + G("http://t/bytes/2"))
    options, absolute = conn.responses(2)
    assert options.status == 404, options  # no resource is `*`; the policy still applies
    expect_keep(options, server, 2)
    assert (absolute.status, absolute.body) == (200, b"xx"), absolute
    expect_keep(absolute, server, 1)
