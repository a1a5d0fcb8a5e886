"""Beyond the spec's listed cases: what a client's FIN does to a connection with a request still
pending (issue 8, item 6), the same on the three servers.

- After an error the server answered before reading the body (a 501 for `gzip, chunked`), the
  client's FIN ends the linger: the connection closes at once, counted as `error` (aiohttp kept
  it open for its 10 s lingering time and counted it as `client_closed`).
- A body that the FIN leaves incomplete can never be complete: the connection closes without an
  answer, counted as `client_closed` (aiohttp waited for H).

The servers run with T and H far longer than the linger limit (rule 4: 2 s), so a close within
that limit can only come from the FIN.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from servers.policy import LINGER_S
from tests.server_pool import Server, ServerPool, expect_close
from tests.wire_client import End, G, RawConnection

Connect = Callable[..., RawConnection]
LONG_S = 30.0  # T and H: never the reason for a close in these tests
# The linger limit plus the spec's close tolerance for a thread-per-connection server.
CLOSE_WITHIN_S = LINGER_S + 1.0

GZIP_CHUNKED = G("/", "Transfer-Encoding: gzip, chunked", method="POST")
SHORT_BODY = G("/", "Content-Length: 12", method="POST") + b"hello wo"


@pytest.fixture
def patient(pool: ServerPool) -> Server:
    return pool.get(keepalive_timeout_s=LONG_S, header_timeout_s=LONG_S)


def _closed_by(server: Server, reason: str, before: dict[str, int]) -> None:
    after = server.wait_idle()
    assert after["connections_open"] == 0, after
    gained = {k: v - before.get(k, 0) for k, v in after["closed"].items() if v != before.get(k)}
    assert gained == {reason: 1}, gained


def test_fin_after_an_error_closes_at_once_counted_as_error(
    patient: Server, connect: Connect
) -> None:
    """Issue 8 item 6: `Transfer-Encoding: gzip, chunked` and no body, then FIN: 501, close."""
    before = patient.wait_idle()["closed"]
    conn = connect(patient)
    conn.send(GZIP_CHUNKED)
    conn.shutdown_write()
    resp = conn.response()
    assert resp.status == 501, resp
    expect_close(resp)
    ending = conn.wait_end(CLOSE_WITHIN_S)
    assert ending.kind is End.EOF, f"{ending.kind.value} after {ending.elapsed_s:.1f} s"
    _closed_by(patient, "error", before)


def test_an_error_without_fin_closes_within_the_linger(patient: Server, connect: Connect) -> None:
    """The client keeps its side open and sends nothing: the linger limit ends it, not T or H."""
    before = patient.wait_idle()["closed"]
    conn = connect(patient)
    conn.send(GZIP_CHUNKED)
    resp = conn.response()
    assert resp.status == 501, resp
    ending = conn.wait_end(CLOSE_WITHIN_S)
    assert ending.kind is not End.OPEN, f"still open after {ending.elapsed_s:.1f} s"
    _closed_by(patient, "error", before)


@pytest.mark.parametrize("pipelined", [False, True], ids=["alone", "after-a-get"])
def test_fin_inside_a_body_closes_without_an_answer(
    patient: Server, connect: Connect, pipelined: bool
) -> None:
    """Content-Length 12, 8 bytes, FIN: nothing to answer (a GET before it is answered)."""
    before = patient.wait_idle()["closed"]
    conn = connect(patient)
    conn.send((G("/bytes/1") if pipelined else b"") + SHORT_BODY)
    conn.shutdown_write()
    if pipelined:
        first = conn.response()
        assert (first.status, first.body) == (200, b"x"), first
    ending = conn.wait_end(CLOSE_WITHIN_S)
    assert ending.kind is End.EOF, f"{ending.kind.value} after {ending.elapsed_s:.1f} s"
    assert ending.data == b"", ending.data[:200]
    _closed_by(patient, "client_closed", before)
