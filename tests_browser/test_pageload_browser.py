"""Chromium loads the page over the delay line (issue 11): `make test-pageload-browser`.

Not collected by `make test`: it needs Debian's chromium and the playwright package (the make
target installs both) and root with /dev/net/tun for the line. The browser runs in the line's
client namespace as the benchmark runs it (`benchmarks.pageload.run.BrowserDriver`), the server
in the server namespace; what Chromium did is judged by the server's own counters:

- keep-alive off: every request on a connection of its own, so at least N connections;
- keep-alive on: about six (the HTTP/1.1 limit per host), far fewer than the requests;
- each response's `connectionReused` (DevTools) agrees: after a connection's first response,
  every response on it says reused, and the connection ids Chromium reports are as many as the
  connections the server accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.net import DelayLine, LinkSpec, NetError, netns
from benchmarks.pageload.browser import missing
from benchmarks.pageload.certs import make_certificate
from benchmarks.pageload.config import KeepAlive, Tls
from benchmarks.pageload.run import BrowserDriver, LineServer, chromium_agreement
from servers.options import ServerName

RTT_MS = 10.0
N = 20


@pytest.fixture(scope="module")
def line() -> Iterator[DelayLine]:
    why = missing()
    if why:
        pytest.fail(f"needs {why}: run `make test-pageload-browser`")
    try:
        netns.check_preconditions()
    except NetError as exc:
        pytest.skip(str(exc))
    with DelayLine(LinkSpec(rtt_ms=RTT_MS)) as started:
        yield started


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_certificate(tmp_path_factory.mktemp("cert"))


@pytest.fixture(scope="module")
def browser(line: DelayLine, cert: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = BrowserDriver(line, cert, tmp_path_factory.mktemp("chromium") / "chromium.log")
    yield driver
    driver.close()


def _load(
    line: DelayLine, browser: BrowserDriver, cert: Any, ka: KeepAlive, tls: Tls, log: Path
) -> tuple[dict[str, Any], int, int]:
    """One load: (its figures, connections the server accepted, requests it served)."""
    server = LineServer(line, ServerName.UVLOOP, ka, tls, cert, log)
    try:
        before = server.settled()
        result = browser.batch(f"{server.url}/page?n={N}&size=2048", 1, N)
        after = server.settled()
    finally:
        server.close()
    (load,) = result["loads"]
    assert not load["error"], load["error"]
    return (
        load,
        after["connections_accepted"] - before["connections_accepted"],
        after["requests_served"] - before["requests_served"],
    )


@pytest.mark.parametrize("tls", [Tls.NONE, Tls.TLS13])
def test_without_keepalive_chromium_opens_a_connection_per_request(
    line: DelayLine, browser: BrowserDriver, cert: Any, tls: Tls, tmp_path: Path
) -> None:
    load, accepted, served = _load(line, browser, cert, KeepAlive(0, 100), tls, tmp_path / "s")
    assert served == N + 1 and load["requests"] == N + 1
    assert accepted >= N
    assert load["connections"] == accepted
    assert chromium_agreement([load])[1] == ""
    assert load["protocols"] == ["http/1.1"]
    if tls.enabled:
        assert load["tls_version"] == "TLS 1.3"  # trusted by SPKI: no certificate error
    assert load["page_load_ms"] >= RTT_MS * 2 * (1 + N // 6)  # never faster than the line


@pytest.mark.parametrize("tls", [Tls.NONE, Tls.TLS13])
def test_with_keepalive_chromium_reuses_about_six_connections(
    line: DelayLine, browser: BrowserDriver, cert: Any, tls: Tls, tmp_path: Path
) -> None:
    load, accepted, served = _load(line, browser, cert, KeepAlive(5, 100), tls, tmp_path / "s")
    assert served == N + 1
    assert 1 <= accepted <= 7  # six per host, and at most one spare (a preconnect)
    assert load["connections"] == accepted
    preconnected, disagreement = chromium_agreement([load])
    assert disagreement == ""
    # Responses not on a reused connection: one per connection, except those Chromium had
    # opened before it had a request for them (they report reused from the first response).
    assert N + 1 - load["reused"] == accepted - preconnected
