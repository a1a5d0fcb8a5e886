"""servers.endpoints.route without sockets: what every reference server answers, as a table."""

from __future__ import annotations

import json

import pytest

from servers.endpoints import HELLO, MAX_BYTES, RequestContext, replayable, route

CTX = RequestContext("127.0.0.1", 40000, connection_id=7, request_number=3)


@pytest.mark.parametrize(
    ("target", "status", "body"),
    [
        ("/", 200, HELLO),
        ("/bytes/3", 200, b"xxx"),
        ("/bytes/0", 200, b""),
        (f"/bytes/{MAX_BYTES + 1}", 400, b"bad request\n"),
        ("/bytes/-1", 400, b"bad request\n"),
        ("/bytes/\u00b2", 400, b"bad request\n"),  # '²'.isdigit() is True; int() would raise
        ("/bytes/\u0663", 400, b"bad request\n"),  # an Arabic-Indic digit
        ("/status/204", 204, b""),
        ("/status/199", 400, b"bad request\n"),
        ("/status/600", 400, b"bad request\n"),
        ("/sleep?ms=\u00b2", 400, b"bad request\n"),
        ("/sleep?ms=60001", 400, b"bad request\n"),
        ("/nowhere", 404, b"not found\n"),
        ("http://t/", 200, HELLO),  # absolute form, answered by its path
        ("http://t:80/bytes/2", 200, b"xx"),
        ("http://t", 200, HELLO),  # no path: the origin's "/"
    ],
)
def test_route(target: str, status: int, body: bytes) -> None:
    reply = route("GET", target, CTX)
    assert (reply.status, reply.body) == (status, body)
    assert reply.delay_s == 0 and not reply.close


@pytest.mark.parametrize(("target", "delay_s"), [("/sleep?ms=250", 0.25), ("/sleep", 0.0)])
def test_sleep_delays_the_reply(target: str, delay_s: float) -> None:
    reply = route("GET", target, CTX)
    assert (reply.status, reply.delay_s) == (200, delay_s)


def test_peer_reports_the_connection() -> None:
    reply = route("GET", "/peer", CTX)
    assert reply.content_type == "application/json"
    assert json.loads(reply.body) == {
        "client_host": "127.0.0.1",
        "client_port": 40000,
        "connection_id": 7,
        "request_number": 3,
    }


def test_absolute_form_keeps_the_query() -> None:
    assert route("GET", "http://t/sleep?ms=5", CTX).delay_s == 0.005


def test_close_asks_to_close() -> None:
    assert route("GET", "/close", CTX).close


@pytest.mark.parametrize(
    ("target", "max_target", "max_body", "expected"),
    [
        ("/", 256, 4096, True),
        ("/peer", 256, 4096, False),  # depends on the connection
        ("/bytes/5000", 256, 4096, False),  # body over the limit
        ("/" + "a" * 300, 256, 4096, False),  # target over the limit (a 404 body is small)
    ],
)
def test_replayable(target: str, max_target: int, max_body: int, expected: bool) -> None:
    assert replayable(route("GET", target, CTX), target, max_target, max_body) is expected
