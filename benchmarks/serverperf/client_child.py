"""The load client's side of `python -m benchmarks instructions --clients`: run under callgrind.

    python -m benchmarks.serverperf.client_child --url http://127.0.0.1:PORT \
        --concurrency 50 --warmup 2000 --requests 20000

A child process, never imported by the harness (it loads the client, which loads uvloop). It
builds the client exactly as a pyperf worker does, warms it up with `--warmup` requests, then
talks to its parent on stdin/stdout so that the parent can zero callgrind's counters before the
counted batch and dump them after each step. It prints `WARM` and waits for a line; sends
`--requests` requests in one `run()` (what pyperf's timed function does, loops = requests),
prints `RAN` and waits; records their latencies as a pyperf worker does, prints
`DONE <ok> <errors> <connections opened>` and waits; prints `BYE` and exits. The first dump is
the client's per-request work in the timed window (the event loop, the Protocol callbacks, the
timing, the batch's set-up spread over `--requests`), the second what it does after the clock
stopped.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.clients.contract import Mode
from benchmarks.clients.shared import Tally, Target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serverperf.client_child")
    p.add_argument("--url", required=True)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.POOLED.value)
    p.add_argument("--warmup", type=int, default=2000)
    p.add_argument("--requests", type=int, default=20000)
    ns = p.parse_args(argv)
    from benchmarks.clients.raw_client import RawClient

    client = RawClient(Target.from_url(ns.url), Mode(ns.mode), ns.concurrency)
    tally = Tally()
    try:
        if ns.warmup:
            client.run(ns.warmup)
        _say("WARM")
        sys.stdin.readline()
        batch = client.run(ns.requests)
        _say("RAN")
        sys.stdin.readline()
        tally.record_latencies_ns(batch.latencies_ns)  # as a pyperf worker does, counted too
        _say(f"DONE {len(batch.latencies_ns)} {sum(batch.errors.values())} "
             f"{client.connections_opened}")  # fmt: skip
        sys.stdin.readline()
        _say("BYE")
    finally:
        client.close()
    return 0


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
