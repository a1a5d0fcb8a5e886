"""The phases of a request (connect, TLS handshake, first byte) as the pyperf clients time them.

Real clients against real servers. A request on a reused connection paid no connect and no
handshake: its phases are 0; one on a new connection paid both: more than 0. Over the delay line
the bounds are physics only (the relay never releases a packet early): a connect takes at least
one round trip (SYN, SYN-ACK), and so does the first byte (request out, response back).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from benchmarks.clients.contract import Mode
from benchmarks.clients.pyperf_driver import Batch, LoadClient
from benchmarks.clients.pyperf_sequential import SequentialClient
from benchmarks.clients.raw_client import RawClient
from benchmarks.clients.shared import Phase, Tally, Target
from benchmarks.net import DelayLine, LinkSpec, NetError, netns
from servers.launch import ReadyInfo, ServerProcess, parse_ready_line
from servers.options import ServerName, ServerOptions

RTT_MS = 20.0


@pytest.fixture(scope="module", params=[False, True], ids=["http", "https"])
def ready(request: pytest.FixtureRequest) -> Iterator[ReadyInfo]:
    options = ServerOptions(ServerName.UVLOOP, keepalive_max=0, keepalive_timeout_s=30,
                            tls=request.param)  # fmt: skip
    with ServerProcess(options) as proc:
        assert proc.ready is not None
        yield proc.ready


def _target(ready: ReadyInfo) -> Target:
    return Target.from_url(ready.url, ca=ready.ca_path)


def _clients(target: Target, mode: Mode) -> list[LoadClient]:
    return [RawClient(target, mode, 2), SequentialClient(target, mode)]


def _p50(client: LoadClient, batch: Batch) -> dict[str, float]:
    tally = Tally()
    tally.record_phases(
        client.timings, len(batch.latencies_ns), batch.connects_ns, batch.tls_ns, batch.ttfb_ns
    )
    return tally.phases_p50_us()


def test_a_reused_request_connects_in_zero_and_a_new_one_takes_time(ready: ReadyInfo) -> None:
    target = _target(ready)
    for client in _clients(target, Mode.POOLED):
        try:
            first = client.run(2)  # opens the connections (the sequential client: one)
            assert first.connects_ns and all(t > 0 for t in first.connects_ns)
            assert len(first.tls_ns) == (len(first.connects_ns) if target.tls else 0)
            assert all(t > 0 for t in first.tls_ns)
            reused = client.run(20)
            assert not reused.errors and len(reused.latencies_ns) == 20
            assert reused.connects_ns == [] and reused.tls_ns == []
            p50 = _p50(client, reused)
            assert p50["connect"] == 0 and p50.get("tls", 0) == 0 and p50["ttfb"] > 0
            assert (Phase.TLS in client.timings) == target.tls
            assert len(reused.ttfb_ns) == 20
            assert all(
                0 < t <= lat for t, lat in zip(reused.ttfb_ns, reused.latencies_ns, strict=True)
            )
        finally:
            client.close()


def test_every_unpooled_request_pays_its_connect(ready: ReadyInfo) -> None:
    target = _target(ready)
    for client in _clients(target, Mode.UNPOOLED):
        try:
            batch = client.run(6)
            assert not batch.errors and len(batch.latencies_ns) == 6
            assert len(batch.connects_ns) == 6 and all(t > 0 for t in batch.connects_ns)
            p50 = _p50(client, batch)
            assert p50["connect"] > 0 and p50["ttfb"] > 0
            assert (p50.get("tls", 0) > 0) == target.tls
        finally:
            client.close()


# -- over the delay line (root and /dev/net/tun) ----------------------------------------------


def _why_not() -> str | None:
    try:
        netns.check_preconditions()
    except NetError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def line() -> Iterator[DelayLine]:
    if _why_not() is not None:
        pytest.skip(str(_why_not()))
    with DelayLine(LinkSpec(rtt_ms=RTT_MS)) as delay_line:
        yield delay_line
    assert netns.our_namespaces(os.getpid()) == []


def test_over_the_line_connect_and_first_byte_take_a_round_trip_each(line: DelayLine) -> None:
    argv = [sys.executable, "-m", "servers", "uvloop", "--host", line.server.address]
    proc = line.spawn(
        line.server, argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    target = _target(parse_ready_line(proc.stdout.readline()))
    rtt_ns = int(RTT_MS * 1e6)
    with line.inside(line.clients[0]):
        for mode in Mode:
            for client in _clients(target, mode):
                try:
                    batch = client.run(4)
                finally:
                    client.close()
                assert not batch.errors and len(batch.ttfb_ns) == 4
                assert batch.connects_ns and min(batch.connects_ns) >= rtt_ns, batch.connects_ns
                assert min(batch.ttfb_ns) >= rtt_ns, batch.ttfb_ns
