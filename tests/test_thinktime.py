"""benchmarks.scenarios.thinktime: the model's arithmetic, then one real point against it.

The real point: uvloop with T = 2 s, users of mean think m = 1 s (P(reuse) = 1 - e^-2), a fixed
seed, at least 2,000 gaps from a few hundred users at once (about 20 s), and the server's reuse
fraction within 4 sigma of the model.
"""

from __future__ import annotations

import math

import pytest

from benchmarks.scenarios.output import ScenarioError
from benchmarks.scenarios.thinktime import (
    Point,
    Site,
    ThinkConfig,
    idle_model,
    measure_points,
    parse,
    reuse_from_server,
    reuse_model,
    timeout_for,
    usable_window_s,
    verdicts,
)
from servers.options import ServerName


def test_the_model_takes_one_round_trip_off_the_timeout() -> None:
    assert usable_window_s(2.0, 50.0) == pytest.approx(1.95)
    assert reuse_model(1.0, 2.0, 0.0) == pytest.approx(1 - math.exp(-2))
    assert reuse_model(1.0, 2.0, 50.0) == pytest.approx(1 - math.exp(-1.95))
    # 95% needs T = m ln 20 (about 3 m), plus the round trip
    assert timeout_for(0.95, 1.0, 0.0) == pytest.approx(math.log(20))
    assert timeout_for(0.95, 2.0, 50.0) == pytest.approx(2 * math.log(20) + 0.05)
    assert reuse_model(1.0, timeout_for(0.95, 1.0, 50.0), 50.0) == pytest.approx(0.95)


def test_a_max_of_n_requests_adds_one_new_connection_per_n() -> None:
    p = reuse_model(1.0, 3.0, 0.0)
    # requests per connection (1 - p^N) / (1 - p): with p -> 1, N, so reuse -> 1 - 1/N
    assert reuse_model(1.0, 3.0, 0.0, keepalive_max=10) == pytest.approx(1 - (1 - p) / (1 - p**10))
    assert reuse_model(1.0, 60.0, 0.0, keepalive_max=10) == pytest.approx(0.9, abs=1e-6)
    assert reuse_model(1.0, 3.0, 0.0, keepalive_max=0) == p


def test_reuse_from_the_servers_counters() -> None:
    # 100 users' first requests, then 900 gaps of which 90 came on a new connection
    assert reuse_from_server(accepted=190, served=1000, firsts=100) == pytest.approx(0.9)
    assert reuse_from_server(accepted=5, served=5, firsts=5) is None
    assert idle_model(100, 1.0, 3.0) == pytest.approx(100 * (1 - math.exp(-3)))


def test_users_are_sized_for_the_gaps_and_points_cover_the_sweep() -> None:
    config = ThinkConfig(means_s=(0.5, 2.0), timeouts_s=(1.0, 4.0), seconds=20, max_requests=(10,),
                         gaps_per_point=1000)  # fmt: skip
    points = config.points()
    assert [(p.mean_s, p.timeout_s, p.keepalive_max) for p in points] == [
        (0.5, 1.0, 0), (0.5, 4.0, 0), (2.0, 1.0, 0), (2.0, 4.0, 0), (0.5, 4.0, 10),
    ]  # fmt: skip
    assert points[0].users == math.ceil(1000 / 39) and points[2].users == math.ceil(1000 / 9)
    assert len({p.seed for p in points}) == len(points)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--timeouts", "0.5"], "--timeouts must be seconds between 1 and 60"),
        (["--means", "x"], "--means: comma-separated seconds, got 'x'"),
        (["--server", "nginx"], "--server must be one of stdlib, aiohttp, uvloop, got nginx"),
        (["--rtt", "600"], "--rtt must be between 0 and 200 ms and under T/2"),
        (["--max", "1"], "--max must be at least 2 requests"),
    ],
)
def test_bad_input_is_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_config_refuses_what_cannot_run() -> None:
    with pytest.raises(ScenarioError, match="--seconds must be between 5 and 600"):
        ThinkConfig(seconds=1)


def test_measured_reuse_agrees_with_the_model_within_4_sigma() -> None:
    config = ThinkConfig(means_s=(1.0,), timeouts_s=(2.0,), seconds=10.0, max_requests=(),
                         server=ServerName.UVLOOP, gaps_per_point=3000, seed=12)  # fmt: skip
    (point,) = config.points()
    assert point == Point(1.0, 2.0, 0, users=334, seed=12)
    (row,) = measure_points(Site(None), config, [point])
    assert row["gaps"] >= 2000 and row["errors"] == 0
    model = 1 - math.exp(-2.0)
    assert row["reuse_model"] == pytest.approx(model, abs=1e-4)
    sigma = math.sqrt(model * (1 - model) / row["gaps"])
    assert abs(row["reuse_measured"] - model) <= 4 * sigma, row
    assert abs(row["reuse_client"] - model) <= 4 * sigma, row
    # every new connection after a user's first is a gap that was not reused
    assert row["connections_accepted"] >= point.users
    assert row["open_peak"] <= point.users
    lines = verdicts([row], 0.0)
    assert lines[0].startswith("check |measured - model| <= 0.03: ")
    assert lines[1].startswith("m 1 s: model T95 = 3.00 s (3.00 m)")
