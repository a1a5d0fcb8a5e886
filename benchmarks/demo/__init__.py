"""`python -m benchmarks demo`: the seed experiment, run (__main__.py); traffic.py is what its
four clients do."""
