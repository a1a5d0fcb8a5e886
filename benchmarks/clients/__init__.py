"""Load clients: argv in, one ClientResult JSON out (the harness never imports them).

contract           ClientConfig -> argv and back (pyperf clients; LocustSettings for the
                   locustfile), validated once; ClientResult JSON; what the harness may import
shared             the target, error kinds and per-process tallies every client records
pyperf_driver      runs a client under pyperf and merges its workers' tallies
pyperf_sequential  one request at a time over http.client (the seed experiment)
pyperf_sequential_resume  the same, each new connection resuming the last TLS session
pyperf_concurrent  C connections at once: the raw Protocol client or aiohttp
raw_client         the wrk-like asyncio Protocol client on uvloop
"""
