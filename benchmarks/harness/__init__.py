"""`python -m benchmarks run`: the benchmark matrix, one subprocess server and client per cell.

One concept per module:

    config       RunConfig (validated once at the CLI edge), Cell, matrix expansion, defaults
    fingerprint  the machine and code a run measured (host, CPU, kernel, packages, git commit)
    sockets      /proc/net/tcp{,6} socket counts, /proc/net/snmp + netstat kernel counters
    procs        core pinning, client process groups, CPU of a process tree, cleanup
    monitor      the sampling thread: server counters and CPU of both sides during a cell
    rules        validity (was the mode achieved?) and client-bound verdicts, pure functions
    cell         one cell: start, verify, measure, stop; always returns a ResultRow
    results      where a run writes (CSV, artifacts folder), atomic rewrite after each cell
    report       progress lines on stderr and the final summary table
    cli          argument parsing, signals, the loop over cells, exit status
"""
