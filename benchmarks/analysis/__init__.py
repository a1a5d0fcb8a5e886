"""Reading results: noise-aware compare, A/A noise floors, same-session bench-compare, plots.

    compare        `python -m benchmarks compare`: two CSVs, judged per cell and metric
    rule           compare's thresholds and test, validated once; the noise floor files
    noise          `python -m benchmarks noise`: this machine's A/A noise floor
    bench_compare  `python -m benchmarks bench-compare`: a git ref and the work tree, interleaved
    rounds         `python -m benchmarks run` round by round, for bench-compare and noise
    plots          `python -m benchmarks report`: PNG plots of snapshots and trends

Nothing here imports `servers`: analysis reads CSVs and JSON files only.
"""
