"""The page-load scenario's page (issue 11): the same bytes from all three servers, as a table.

Every server answers `/page?n=N&size=B` and `/r/<i>?size=B` through `servers.endpoints`; what
must not differ is what a browser sees: status, body and every header but `Server` and `Date`
(each server names itself, and two of them stamp the time). Each row below is checked on each
server against one expected answer, so all three agree byte for byte.
"""

from __future__ import annotations

import io
import socket
import ssl
from collections.abc import Callable

import pytest

from servers.endpoints import (
    DEFAULT_PAGE_RESOURCES,
    DEFAULT_RESOURCE_BYTES,
    MAX_PAGE_RESOURCES,
    MAX_RESOURCE_BYTES,
    MIN_IMAGE_BYTES,
    gif_of_size,
    page_html,
    route,
)
from servers.endpoints import RequestContext as Ctx
from tests.server_pool import Server
from tests.wire_client import G, RawConnection

Connect = Callable[..., RawConnection]
# Headers that legitimately differ by server or by time; everything else must be identical.
PER_SERVER = {"server", "date"}
HTML = "text/html; charset=utf-8"
OCTETS = "application/octet-stream"
GIF = "image/gif"

PAGE_TABLE = {
    "/page?n=3&size=5": (200, HTML, page_html(3, 5)),
    "/page?n=0&size=0": (200, HTML, page_html(0, 0)),
    "/page": (200, HTML, page_html(DEFAULT_PAGE_RESOURCES, DEFAULT_RESOURCE_BYTES)),
    f"/page?n={MAX_PAGE_RESOURCES}&size=1": (200, HTML, page_html(MAX_PAGE_RESOURCES, 1)),
    "/r/0?size=5": (200, OCTETS, b"xxxxx"),  # below MIN_IMAGE_BYTES: no GIF is that small
    "/r/999?size=0": (200, OCTETS, b""),
    f"/r/5?size={MIN_IMAGE_BYTES}": (200, GIF, gif_of_size(MIN_IMAGE_BYTES)),
    f"/r/7?size={MAX_RESOURCE_BYTES}": (200, GIF, gif_of_size(MAX_RESOURCE_BYTES)),
    "/r/2": (200, GIF, gif_of_size(DEFAULT_RESOURCE_BYTES)),
}
BAD_TABLE = (
    f"/page?n={MAX_PAGE_RESOURCES + 1}",
    f"/page?size={MAX_RESOURCE_BYTES + 1}",
    "/page?n=-1",
    "/page?n=abc",
    "/page?n=",
    "/page?n=%C2%B2",  # "²" once decoded: isdigit() is True, int() would raise
    f"/r/{MAX_PAGE_RESOURCES}?size=1",
    "/r/x?size=1",
    "/r/?size=1",
    f"/r/1?size={MAX_RESOURCE_BYTES + 1}",
)


def test_the_page_references_n_same_origin_resources() -> None:
    html = page_html(3, 7).decode()
    assert [line for line in html.splitlines() if "<img" in line] == [
        f'<img src="/r/{i}?size=7" alt="">' for i in range(3)
    ]
    assert 'rel="icon" href="data:,"' in html  # no /favicon.ico request: exactly n + 1


def test_resources_are_decodable_gifs_of_exactly_their_size() -> None:
    """A browser cancels an image it cannot decode, and a cancelled load's connection is not
    reused: the resources must be real images (Pillow, matplotlib's, decodes them here)."""
    image = pytest.importorskip("PIL.Image")
    for size in [*range(MIN_IMAGE_BYTES, 1200), 4096, MAX_RESOURCE_BYTES]:
        data = gif_of_size(size)
        assert len(data) == size
        with image.open(io.BytesIO(data)) as gif:
            gif.load()
            assert (gif.format, gif.size) == ("GIF", (1, 1)), size
    with pytest.raises(ValueError):
        gif_of_size(MIN_IMAGE_BYTES - 1)


def test_route_table_matches_the_page_table() -> None:
    ctx = Ctx("127.0.0.1", 1, 1, 1)
    for target, (status, ctype, body) in PAGE_TABLE.items():
        reply = route("GET", target, ctx)
        assert (reply.status, reply.content_type, reply.body) == (status, ctype, body), target
        assert reply.headers == (("Cache-Control", "no-store"),)
    for target in BAD_TABLE:
        assert route("GET", target, ctx).status == 400, target


def _common_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers that must be the same on every server, in a canonical order."""
    return sorted((n.lower(), v) for n, v in headers if n.lower() not in PER_SERVER)


@pytest.mark.parametrize("target", list(PAGE_TABLE))
def test_page_bytes_are_the_same_on_every_server(
    server: Server, connect: Connect, target: str
) -> None:
    status, ctype, body = PAGE_TABLE[target]
    conn = connect(server)
    conn.send(G(target))
    response = conn.response()
    assert (response.status, response.body) == (status, body)
    # The suite server runs T = 1 s, N = 3: the first request of a connection keeps it.
    assert _common_headers(response.headers) == sorted(
        [
            ("cache-control", "no-store"),
            ("connection", "keep-alive"),
            ("content-length", str(len(body))),
            ("content-type", ctype),
            ("keep-alive", "timeout=1, max=2"),
        ]
    )


def test_tls_servers_offer_only_http11_in_alpn(tls_server: Server) -> None:
    """A browser offering h2 and http/1.1 must get http/1.1 (issue 11: HTTP/1.1 only)."""
    assert tls_server.ca_path is not None
    ctx = ssl.create_default_context(cafile=str(tls_server.ca_path))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection((tls_server.host, tls_server.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=tls_server.host) as sock,
    ):
        assert sock.selected_alpn_protocol() == "http/1.1"
        conn = RawConnection(sock)
        conn.send(G("/page?n=2&size=3"))
        assert conn.response().body == page_html(2, 3)


@pytest.mark.parametrize("target", BAD_TABLE)
def test_bad_page_parameters_are_400_and_keep_the_connection(
    server: Server, connect: Connect, target: str
) -> None:
    conn = connect(server)
    conn.send(G(target) + G("/r/0?size=1"))
    bad, good = conn.response(), conn.response()
    assert bad.status == 400
    assert (good.status, good.body) == (200, b"x")
