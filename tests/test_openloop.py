"""benchmarks.clients.openloop: the schedule, latency from the intended start, late and missed
starts (fakes for the clock), then pyperf-openloop once against a real uvloop server."""

from __future__ import annotations

import random
import statistics
import subprocess
from pathlib import Path

import pytest

from benchmarks.clients.contract import (
    Arrivals,
    ClientConfig,
    ClientKind,
    ClientResult,
    Mode,
    ThinkTime,
)
from benchmarks.clients.openloop import (
    LATE_NS,
    Pacer,
    StartLedger,
    intended_times,
    latency_from_intended,
    rate_check,
)
from servers.launch import ServerProcess
from servers.options import ServerName, ServerOptions

MS = 1_000_000


def test_constant_arrivals_are_computed_from_the_start_and_never_drift() -> None:
    times = intended_times(5_000, 3.0, 7, Arrivals.CONSTANT, random.Random(0))
    # 1/3 s does not divide into nanoseconds: each is rounded on its own, the error never adds up
    assert times == [5_000, 333_338_333, 666_671_667, 1_000_005_000, 1_333_338_333,
                     1_666_671_667, 2_000_005_000]  # fmt: skip
    many = intended_times(0, 3.0, 300_001, Arrivals.CONSTANT, random.Random(0))
    assert many[-1] == 100_000 * 1_000_000_000


def test_poisson_arrivals_are_the_seeds_exponential_gaps() -> None:
    times = intended_times(10, 200.0, 20_000, Arrivals.POISSON, random.Random(42))
    assert times == intended_times(10, 200.0, 20_000, Arrivals.POISSON, random.Random(42))
    assert times != intended_times(10, 200.0, 20_000, Arrivals.POISSON, random.Random(43))
    draws = random.Random(42)
    expected, t = [], 0.0
    for _ in range(5):
        expected.append(10 + round(t * 1e9))
        t += draws.expovariate(200.0)
    assert times[:5] == expected and times[0] == 10
    gaps = [(b - a) / 1e9 for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0
    # mean 1/R = 5 ms; an exponential's sd equals its mean: 4 sigma of the mean of 19,999 gaps
    assert abs(statistics.fmean(gaps) - 0.005) < 4 * 0.005 / len(gaps) ** 0.5
    assert abs(statistics.pstdev(gaps) - 0.005) < 0.0005


def test_think_times_are_drawn_from_their_distribution() -> None:
    rng = random.Random(7)
    exp = ThinkTime.parse("exp:2")
    draws = [exp.draw(rng) for _ in range(10_000)]
    assert abs(statistics.fmean(draws) - 2.0) < 4 * 2.0 / 100
    assert ThinkTime.parse("const:0.25").draw(rng) == 0.25
    uniform = ThinkTime.parse("uniform:1-3")
    assert all(1 <= uniform.draw(rng) <= 3 for _ in range(1000)) and uniform.mean_s == 2
    assert [str(ThinkTime.parse(t)) for t in ("exp:2", "uniform:1-3")] == ["exp:2", "uniform:1-3"]


def test_latency_counts_from_the_intended_start_not_the_send() -> None:
    # due at 0, sent 40 ms late (the loop or a busy connection), answered 2 ms after sending
    assert latency_from_intended(0, 42 * MS) == 42 * MS
    assert latency_from_intended(10 * MS, 12 * MS) == 2 * MS


def test_the_pacer_hands_out_what_is_due_by_a_fake_clock() -> None:
    pacer = Pacer(intended_times(0, 1000.0, 5, Arrivals.CONSTANT, random.Random(0)))
    assert pacer.deadline() == 0 and pacer.due(-1) == []
    assert pacer.due(0) == [0]
    assert pacer.deadline() == 1 * MS
    assert pacer.due(int(3.5 * MS)) == [1 * MS, 2 * MS, 3 * MS]  # woke late: all three at once
    assert pacer.due(int(3.9 * MS)) == [] and pacer.deadline() == 4 * MS
    assert pacer.due(10 * MS) == [4 * MS] and pacer.deadline() is None


def test_the_ledger_counts_late_and_missed_starts() -> None:
    times = intended_times(0, 100.0, 4, Arrivals.CONSTANT, random.Random(0))  # 0, 10, 20, 30 ms
    ledger = StartLedger(end_ns=times[-1] + 10 * MS)  # the schedule ends at 40 ms
    sends = [0, 10 * MS + LATE_NS, 20 * MS + LATE_NS + 1, 41 * MS]  # on time, 1 ms, > 1 ms, after
    for intended, sent in zip(times, sends, strict=True):
        ledger.start(intended, sent)
    assert (ledger.started, ledger.late, ledger.missed) == (4, 2, 1)
    assert ledger.lateness_max_ns == 11 * MS
    assert ledger.counts()["lateness_sum_us"] == (2 * LATE_NS + 1 + 11 * MS) // 1000
    early = StartLedger()
    early.start(5 * MS, 4 * MS)  # a timer that fired early is not negative lateness
    assert (early.late, early.lateness_max_ns) == (0, 0)


def test_rate_check_holds_within_one_percent_and_says_why_not() -> None:
    held = rate_check(1000.0, scheduled=5000, started=5000, missed=50, late=300, window_s=5.0)
    assert held.held and held.achieved_rps == 990.0
    assert held.note().endswith("rate held within 1%")
    lost = rate_check(1000.0, scheduled=5000, started=5000, missed=51, late=300, window_s=5.0)
    assert not lost.held and "the client's own loop fell behind" in lost.note()
    slots = rate_check(1000.0, 5000, 5000, 800, 900, 5.0, waited_for_slot=700)
    assert "700 starts waited for a free slot" in slots.note()
    busy = rate_check(1000.0, 5000, 5000, 800, 900, 5.0, waited_for_slot=700, client_cpu_pct=97)
    assert "client CPU 97% of a core" in busy.note() and "core is saturated" in busy.note()
    failed = rate_check(1000.0, scheduled=5000, started=4000, missed=0, late=0, window_s=5.0)
    assert not failed.held  # a connect that failed started nothing


def test_pyperf_openloop_against_a_real_server(tmp_path: Path) -> None:
    """Through `ClientConfig.command()`, as the harness runs it: every scheduled start is
    accounted for, and the server served what the client sent."""
    options = ServerOptions(ServerName.UVLOOP, keepalive_max=0, keepalive_timeout_s=30)
    with ServerProcess(options) as server:
        assert server.ready is not None
        config = ClientConfig(
            kind=ClientKind.PYPERF_OPENLOOP, url=server.ready.url, mode=Mode.POOLED,
            concurrency=4, duration_s=0.6, warmup_s=0.2, output=tmp_path / "r.json",
            rate_rps=300.0, arrivals=Arrivals.POISSON, seed=5,
        )  # fmt: skip
        before = server.counters()
        done = subprocess.run(config.command(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        after = server.counters()
    result = ClientResult.read(config.output)
    info = result.open_loop
    assert result.errors == 0 and result.requests == info["scheduled"] == info["started"]
    assert after["requests_served"] - before["requests_served"] == result.requests_total
    accepted = after["connections_accepted"] - before["connections_accepted"]
    assert 1 < accepted <= config.concurrency * result.load_processes + 1
    assert 0 <= info["missed"] <= info["late"] <= info["started"]
    assert info["rate_asked"] == 300.0 and isinstance(info["rate_held"], bool)
    assert info["note"].endswith("rate held within 1%") == info["rate_held"]
    assert result.latency_us["p50"] > 0
    assert "open loop: asked 300/s" in done.stdout


@pytest.mark.parametrize("think", ["exp:0.05"])
def test_users_with_think_times_against_a_real_server(tmp_path: Path, think: str) -> None:
    """Per-user load: every gap is counted, and all are reuses when T is far above the think."""
    from benchmarks.clients.openloop import OpenLoopClient
    from benchmarks.clients.shared import Target

    options = ServerOptions(ServerName.UVLOOP, keepalive_max=0, keepalive_timeout_s=30)
    with ServerProcess(options) as server:
        assert server.ready is not None
        client = OpenLoopClient(Target.from_url(server.ready.url), Mode.POOLED, 8,
                                think=ThinkTime.parse(think), seed=3)  # fmt: skip
        try:
            out = client.run_users(budget=160)
        finally:
            client.close()
        accepted = server.counters()["connections_accepted"]
    counts = out.counts
    assert counts["scheduled"] == 160 and not out.errors
    assert counts["gaps"] == 160 - 8 and counts["reused"] == counts["gaps"]
    assert accepted == client.connections_opened == 8
