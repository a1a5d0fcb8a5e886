"""`python -m benchmarks run`: the benchmark matrix, one subprocess server and client per cell.

One concept per module:

    config       RunConfig (validated once at the CLI edge), Cell, matrix expansion (the
                 dimensions themselves are benchmarks.matrix's)
    fingerprint  the machine and code a run measured (host, CPU, kernel, packages, git commit)
    sockets      /proc/net/tcp{,6} socket counts, /proc/net/snmp + netstat kernel counters
    procs        core pinning (the harness's too), client process groups, CPU, cleanup
    monitor      the sampling thread: server counters, CPU of both sides and of every core
    validity     validity (mode achieved? server's core to itself?), client-bound; pure functions
    cell         one cell: start, verify, measure, stop; always returns a ResultRow
    rows         measurements -> a ResultRow (CPU load, verdicts, note); the row of a failure
    progress     progress lines on stderr, the final summary table, the sequential headline
    cli          argument parsing, signals, the loop over cells, exit status
"""
