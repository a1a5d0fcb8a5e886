"""Real clients against the servers: connection reuse proven by `/peer`, and exact counters.

`/peer` answers with the client port, the server's connection id and the request number on that
connection, so "the client reused its connection" is an observation, not an assumption.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import requests

from benchmarks.clients.pyperf_driver import Plan
from tests.server_pool import Server, ServerPool
from tests.wire_client import G

CLOSE = {"Connection": "close"}

# A client gets three /peer answers (N = 3: the third closes) with optional extra headers.
Client = Callable[[Server, dict[str, str]], list[dict[str, Any]]]


def with_requests(server: Server, headers: dict[str, str]) -> list[dict[str, Any]]:
    with requests.Session() as session:
        # Per request: a session-level verify loses to REQUESTS_CA_BUNDLE (requests#3829).
        verify = str(server.ca_path) if server.ca_path else True
        url = server.ready.url + "/peer"
        out = []
        for _ in range(3):
            resp = session.get(url, headers=headers, timeout=5, verify=verify)
            resp.raise_for_status()
            out.append(resp.json())
        return out


def with_aiohttp(server: Server, headers: dict[str, str]) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        ctx = ssl.create_default_context(cafile=str(server.ca_path)) if server.ca_path else None
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            out = []
            for _ in range(3):
                url = server.ready.url + "/peer"
                async with session.get(url, headers=headers, ssl=ctx or True) as resp:
                    assert resp.status == 200
                    out.append(await resp.json())
            return out

    return asyncio.run(run())


def with_http_client(server: Server, headers: dict[str, str]) -> list[dict[str, Any]]:
    if server.ca_path:
        ctx = ssl.create_default_context(cafile=str(server.ca_path))
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            server.host, server.port, timeout=5, context=ctx
        )
    else:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        out = []
        for _ in range(3):
            conn.request("GET", "/peer", headers=headers)
            resp = conn.getresponse()
            assert resp.status == 200
            out.append(json.loads(resp.read()))
        return out
    finally:
        conn.close()


CLIENTS = {
    "requests": with_requests,
    "aiohttp": with_aiohttp,
    "http.client": with_http_client,
}


@pytest.mark.parametrize("client", CLIENTS.values(), ids=CLIENTS.keys())
def test_client_reuses_one_connection(server: Server, client: Client) -> None:
    peers = client(server, {})
    assert [p["request_number"] for p in peers] == [1, 2, 3]
    assert len({p["connection_id"] for p in peers}) == 1, peers
    assert len({p["client_port"] for p in peers}) == 1, peers


@pytest.mark.parametrize("client", CLIENTS.values(), ids=CLIENTS.keys())
def test_client_with_connection_close_gets_new_connections(server: Server, client: Client):
    peers = client(server, CLOSE)
    assert [p["request_number"] for p in peers] == [1, 1, 1]
    assert len({p["connection_id"] for p in peers}) == 3, peers
    assert len({p["client_port"] for p in peers}) == 3, peers


@pytest.mark.parametrize("client", CLIENTS.values(), ids=CLIENTS.keys())
def test_client_reuses_one_tls_connection(tls_server: Server, client: Client) -> None:
    peers = client(tls_server, {})
    assert [p["request_number"] for p in peers] == [1, 2, 3]
    assert len({p["connection_id"] for p in peers}) == 1, peers


# -- counters ------------------------------------------------------------------------------------


def _requests_then(server: Server, count: int, *headers: str, version: str = "1.1") -> None:
    with server.connect() as conn:
        for _ in range(count):
            conn.send(G("/", *headers, version=version))
            conn.response()
        conn.wait_end(server.close_limit_s() + 1.0)


def n_requests_then_max(server: Server) -> None:
    _requests_then(server, 3)


def connection_close(server: Server) -> None:
    _requests_then(server, 1, "Connection: close")


def http10(server: Server) -> None:
    _requests_then(server, 1, version="1.0")


def handler_close(server: Server) -> None:
    with server.connect() as conn:
        conn.send(G("/peer") + G("/close") + G("/never"))
        conn.responses(2)
        conn.wait_end(2.0)


def client_closes(server: Server) -> None:
    with server.connect() as conn:
        conn.send(G("/") + G("/"))
        conn.responses(2)
        conn.shutdown_write()
        conn.wait_end(2.0)


def idle(server: Server) -> None:
    _requests_then(server, 2)


def silent(server: Server) -> None:
    with server.connect() as conn:
        conn.wait_end(server.close_limit_s() + 1.0)


def malformed(server: Server) -> None:
    with server.connect() as conn:
        conn.send(b"HELLO\r\n\r\n")
        conn.response()
        conn.wait_end(2.0)


def keepalive_disabled(server: Server) -> None:
    _requests_then(server, 1)


# scenario, server config, requests served (None: not asserted), close reason
COUNTER_CASES = [
    pytest.param(n_requests_then_max, {}, 3, "max_reached", id="n3-max_reached"),
    pytest.param(connection_close, {}, 1, "client_requested", id="close-client_requested"),
    pytest.param(http10, {}, 1, "client_requested", id="http10-client_requested"),
    pytest.param(handler_close, {}, 2, "handler", id="handler"),
    pytest.param(client_closes, {}, 2, "client_closed", id="client_closed"),
    pytest.param(idle, {}, 2, "idle_timeout", id="idle_timeout"),
    pytest.param(silent, {}, 0, "header_timeout", id="header_timeout"),
    pytest.param(malformed, {}, None, "error", id="error"),
    pytest.param(
        keepalive_disabled, {"keepalive_timeout_s": 0.0}, 1, "keepalive_disabled", id="t0"
    ),
]


@pytest.mark.parametrize(("scenario", "config", "served", "reason"), COUNTER_CASES)
def test_counters_after_known_traffic(
    pool: ServerPool,
    scenario: Callable[[Server], None],
    config: dict[str, Any],
    served: int | None,
    reason: str,
) -> None:
    server = pool.get(tag="counters", **config)  # a process no other test sends traffic to
    before = server.wait_idle()
    assert before["connections_open"] == 0, before
    scenario(server)
    after = server.wait_idle()
    assert after["connections_open"] == 0, f"connection not counted as closed: {after}"
    assert after["connections_accepted"] - before["connections_accepted"] == 1
    assert after["connections_peak_open"] >= 1
    if served is not None:
        assert after["requests_served"] - before["requests_served"] == served
    closed = {r: after["closed"][r] - before["closed"][r] for r in after["closed"]}
    assert closed == {r: int(r == reason) for r in closed}, closed


def test_counters_identify_the_server(server: Server) -> None:
    snap = server.counters()
    assert snap["server"] == server.name
    assert snap["pid"] == server.ready.pid
    assert server.process.proc is not None and snap["pid"] == server.process.proc.pid


def test_counters_track_open_connections(pool: ServerPool) -> None:
    server = pool.get(tag="counters")
    base = server.wait_idle()
    conns = [server.connect() for _ in range(3)]
    try:
        for conn in conns:
            conn.send(G("/"))
            conn.response()
        snap = server.counters()
        assert snap["connections_open"] == 3, snap
        assert snap["connections_peak_open"] >= 3, snap
        assert snap["connections_accepted"] - base["connections_accepted"] == 3
    finally:
        for conn in conns:
            conn.close()
    deadline = time.monotonic() + 3
    while server.counters()["connections_open"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.counters()["connections_open"] == 0


def test_control_listener_does_not_count_itself(pool: ServerPool) -> None:
    server = pool.get(tag="counters")
    first = server.wait_idle()
    for _ in range(3):
        server.counters()
    last = server.counters()
    assert last["connections_accepted"] == first["connections_accepted"]
    assert last["requests_served"] == first["requests_served"]


def test_record_counts_is_record_value_in_bulk() -> None:
    """The clients' bulk recording gives the histogram record_value gives, bucket for bucket,
    at every bucket edge and beyond the clamps."""
    import random

    from benchmarks import latency

    rng = random.Random(14)
    edges = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 10**6, latency.HIGHEST_US + 5]
    values = {v: rng.randint(1, 9) for v in [*edges, *(rng.randint(1, 10**8) for _ in range(3000))]}
    bulk, one_by_one = latency.new_histogram(), latency.new_histogram()
    latency.record_counts(bulk, values)
    for value, count in values.items():
        one_by_one.record_value(min(max(value, latency.LOWEST_US), latency.HIGHEST_US), count)
    assert list(bulk.counts) == list(one_by_one.counts)
    assert (bulk.total_count, bulk.min_value, bulk.max_value) == (
        one_by_one.total_count, one_by_one.min_value, one_by_one.max_value,
    )  # fmt: skip
    assert latency.encode(bulk) == latency.encode(one_by_one)


def test_each_timed_call_carries_whole_rounds_of_every_connection() -> None:
    """At a long round trip a probed request rate is low: a call must still keep all c
    connections busy (at least c requests) and end without a partial round."""
    plan = Plan(processes=2, values=2)
    assert plan.loops_for(1.0, 1 / 150, connections=16) == 48  # 38 asked: 3 rounds of 16
    assert plan.loops_for(1.0, 0.1, connections=16) == 16  # 2 asked: one round
    assert plan.loops_for(1.0, 1e-5, connections=1) == 25_000  # the sequential client
