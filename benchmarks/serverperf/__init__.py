"""Server-only performance: wrk against each server, nginx and bare apps, and the client ceiling.

command  `python -m benchmarks serverperf`: the table and issue 2's targets
targets  what is measured and how each is started pinned (reference, bare, nginx)
checks   issue 2's targets evaluated on the rows: PASS, FAIL or SKIP
wrk      wrk's command line, run and output parsing
nginx    nginx as the reference point, in a temporary prefix
ceiling  `python -m benchmarks ceiling`: the fastest pyperf client against wrk
bare/    bare apps of each library (`python -m benchmarks.serverperf.bare`)
"""
