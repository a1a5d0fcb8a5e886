"""`python -m benchmarks fuzz`: mutated HTTP/1.1 requests against every reference server.

corpus.py holds the valid seeds, mutator.py the deterministic case stream, exchange.py one case
on one connection, runner.py the servers and the classification, deviations.py the named known
differences, cli.py the command line and the report.
"""
