"""`python -m benchmarks COMMAND [options]`: one entry point, one module per command.

Each command module exposes `main(argv: list[str]) -> int` and is imported only when chosen, so
`compare` does not pay for what `run` needs.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": ("benchmarks.harness.cli", "run the benchmark matrix and write a results CSV"),
    "compare": ("benchmarks.analysis.compare", "compare two results CSVs, noise-aware"),
    "bench-compare": (
        "benchmarks.analysis.bench_compare",
        "bench a git ref and the work tree, interleaved",
    ),
    "noise": ("benchmarks.analysis.noise", "A/A runs: this machine's noise floor per metric"),
    "report": ("benchmarks.analysis.plots", "PNG plots from results CSVs"),
    "serverperf": ("benchmarks.serverperf.command", "wrk against each server, nginx and bare apps"),
    "ceiling": (
        "benchmarks.serverperf.ceiling",
        "the fastest pyperf client against wrk: how close it gets",
    ),
    "instructions": (
        "benchmarks.serverperf.instructions",
        "callgrind instructions per request of each server (valgrind)",
    ),
    "demo": ("benchmarks.demo.__main__", "the seed experiment: client ports show connection reuse"),
    "ui": ("benchmarks.ui.launcher", "Locust's web UI on a reference server, with a server tab"),
    "pack": ("benchmarks.records.pack", "fold older runs' artifact folders into one bundle each"),
    "doctor": ("benchmarks.doctor.cli", "probe any URL's real keep-alive behaviour, judge clients"),
    "fuzz": ("benchmarks.fuzz.cli", "mutated requests against every server: crashes, hangs, ..."),
    "net": ("benchmarks.net.cli", "any server and client behind a delay line: RTT, loss, ..."),
    "race": ("benchmarks.scenarios.race", "the idle-timeout race per client library, nginx's 502s"),
    "ports": ("benchmarks.scenarios.ports", "unpooled load against the ephemeral port range"),
    "slots": ("benchmarks.scenarios.slots", "the 101st connection: N slots held by keep-alive"),
    "conformance-report": (
        "benchmarks.conformance.cli",
        "the conformance suite against nginx and Node, next to ours",
    ),
    "pageload": ("benchmarks.pageload.cli", "a page of N resources over RTT: keep-alive on/off"),
}


def usage() -> str:
    lines = ["usage: python -m benchmarks COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<14} {doc}" for name, (_, doc) in COMMANDS.items()]
    lines.append("\n'python -m benchmarks COMMAND --help' explains each one.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] not in COMMANDS:
        sys.stderr.write(f"python -m benchmarks: error: unknown command {args[0]!r}\n")
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
