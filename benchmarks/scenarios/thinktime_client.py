"""The thinktime scenario's load: open-loop users with exponential think times, for a while.

    python -m benchmarks.scenarios.thinktime_client URL USERS MEAN_S SECONDS SEED

Runs `benchmarks.clients.openloop` in user mode (each user on its own connection, waiting
Exp(MEAN_S) after each response) and prints one JSON object on stdout: the gap counts (gaps,
reused, races, firsts: requests after no gap), errors by kind, connections opened, latency
percentiles from each intended start (ms) and the largest start lateness. Written by
`benchmarks.scenarios.thinktime.client_argv`, read here, positionally as race_client's are.
"""

from __future__ import annotations

import json
import sys

from benchmarks import latency
from benchmarks.clients.contract import Mode, ThinkTime
from benchmarks.clients.openloop import OpenLoopClient
from benchmarks.clients.shared import Target, fail

PROG = "python -m benchmarks.scenarios.thinktime_client"


def main(argv: list[str]) -> int:
    try:
        url, users, mean_s, seconds, seed = argv
        target = Target.from_url(url)
        think = ThinkTime.parse(f"exp:{float(mean_s)}")
        client = OpenLoopClient(target, Mode.POOLED, int(users), think=think, seed=int(seed))
    except ValueError as exc:
        fail(PROG, f"usage: URL USERS MEAN_S SECONDS SEED ({exc})", status=2)
    try:
        out = client.run_users(duration_s=float(seconds))
    finally:
        client.close()
    hist = latency.new_histogram()
    for value in out.latencies_ns:
        latency.record_us(hist, value / 1000)
    lat = latency.summary_us(hist)
    result = {
        **{k: int(v) for k, v in out.counts.items()},
        "errors": dict(out.errors),
        "connections_opened": client.connections_opened,
        "elapsed_s": out.elapsed_s,
        "latency_p50_ms": lat["p50"] / 1000,
        "latency_p99_ms": lat["p99"] / 1000,
        "lateness_max_ms": out.lateness_max_ns / 1e6,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
