"""Server-only performance: wrk against each server, nginx and bare apps, and the client ceiling.

command  `python -m benchmarks serverperf`: the table and issues 2 and 14's targets
targets  what is measured and how each is started pinned (reference, bare, nginx)
checks   those targets evaluated on the rows: PASS, FAIL, SKIP or INFO
wrk      wrk's command line, run and output parsing
nginx    nginx as the reference point, in a temporary prefix
ceiling  `python -m benchmarks ceiling`: the fastest pyperf client against wrk
bare/    bare apps of each library (`python -m benchmarks.serverperf.bare`)
"""
