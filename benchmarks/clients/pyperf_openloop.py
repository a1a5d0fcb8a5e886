"""Open-loop load under pyperf: requests start on a schedule, latency timed from it (wrk2, k6).

    python -m benchmarks.clients.pyperf_openloop --concurrency 16 --rate 2000 \
        --url http://127.0.0.1:8080 --mode pooled --duration 5 --output /tmp/open.json
    ... --arrivals poisson --seed 7          # Poisson arrivals of mean rate 2000/s
    ... --concurrency 200 --think exp:0.5    # 200 users, each waits Exp(0.5 s) after a response

`benchmarks.clients.openloop` does the work on stdlib asyncio (timers that never fire early).
Each pyperf value is a batch of `loops` scheduled starts, so pyperf's mean is the schedule's
interval, not a server figure: the latencies (from each intended start) and the start ledger are
what count. The result's `open_loop` says whether the asked rate was held within 1% and how many
starts were late or missed; the summary line and the harness row's note say it too.
"""

from __future__ import annotations

import sys
from collections import Counter

from benchmarks.clients.contract import ClientConfig
from benchmarks.clients.openloop import LATE_NS, OpenLoopClient, rate_check
from benchmarks.clients.pyperf_driver import Batch, ClientSpec, LoadClient, main
from benchmarks.clients.shared import Phase, Tally, Target

PROG = "python -m benchmarks.clients.pyperf_openloop"


class PyperfOpenLoop:
    """The open-loop client as the driver's LoadClient: its batches as `Batch`es."""

    tls_resumed = 0  # never offers a TLS session to resume
    timings: frozenset[Phase] = frozenset()  # times latency from the intended start only

    def __init__(self, config: ClientConfig, target: Target) -> None:
        self.client = OpenLoopClient(
            target, config.mode, config.concurrency, rate_rps=config.rate_rps,
            arrivals=config.arrivals, think=config.think, seed=config.seed,
        )  # fmt: skip
        self.paced_seconds_per_loop = self.client.paced_seconds_per_loop
        self.connections_opened = 0

    def run(self, loops: int) -> Batch:
        out = self.client.run(loops)
        self.connections_opened = self.client.connections_opened
        counts = Counter(out.counts)
        counts["window_us"] = round(out.window_s * 1e6)
        maxima = Counter(lateness_max_us=out.lateness_max_ns // 1000)
        return Batch(out.elapsed_s, out.latencies_ns, out.errors, counts, maxima)

    def close(self) -> None:
        self.client.close()


def describe(config: ClientConfig, tally: Tally) -> dict[str, object]:
    """The result's `open_loop`: the schedule against the starts, over the measured batches."""
    paced, window_s = tally.paced, tally.paced["window_us"] / 1e6
    info: dict[str, object] = {
        **dict(paced), "lateness_max_us": tally.paced_max["lateness_max_us"],
        "late_threshold_us": LATE_NS // 1000, "arrivals": config.arrivals.value,
        "seed": config.seed,
    }  # fmt: skip
    if config.think is not None:
        gaps = paced["gaps"]
        info |= {"think": str(config.think), "users": config.concurrency,
                 "reuse": round(paced["reused"] / gaps, 4) if gaps else None}  # fmt: skip
        info["note"] = (
            f"open loop: {config.concurrency} users, think {config.think}; {gaps} gaps, "
            f"{paced['reused']} reused, {paced['late']} starts late"
        )
        return info
    check = rate_check(
        config.rate_rps, paced["scheduled"], paced["started"], paced["missed"], paced["late"],
        window_s, paced["waited_for_slot"],
        100 * paced["cpu_us"] / paced["elapsed_us"] if paced["elapsed_us"] else None,
    )  # fmt: skip
    info |= {"rate_asked": check.asked_rps, "rate_scheduled": round(check.scheduled_rps, 2),
             "rate_achieved": round(check.achieved_rps, 2), "rate_held": check.held,
             "note": check.note()}  # fmt: skip
    return info


def make_client(config: ClientConfig, target: Target) -> LoadClient:
    return PyperfOpenLoop(config, target)


def bench_name(config: ClientConfig) -> str:
    if config.think is not None:
        return f"openloop-users{config.concurrency}-think-{config.think}"
    return f"openloop-{config.arrivals}-{config.rate_rps:g}rps-{config.mode}-c{config.concurrency}"


SPEC = ClientSpec(
    prog=PROG,
    module="benchmarks.clients.pyperf_openloop",
    description=__doc__.split("\n")[0],
    bench_name=bench_name,
    make_client=make_client,
    describe=describe,
)

if __name__ == "__main__":
    sys.exit(main(SPEC))
