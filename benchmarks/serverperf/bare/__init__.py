"""Bare minimal apps: the floor each library reaches with no keep-alive policy code on top.

`python -m benchmarks.serverperf.bare aiohttp|uvloop|stdlib` serves `GET /` with the same body as
the reference servers (`servers.endpoints.HELLO`) and prints the same READY line, so the launcher
pattern and wrk commands are identical for both. The reference server's overhead over its
library is then read directly as the gap between two rows of `python -m benchmarks serverperf`.
"""

from __future__ import annotations

from dataclasses import dataclass

BARE_NAMES = ("aiohttp", "uvloop", "stdlib")


@dataclass(frozen=True)
class BareSettings:
    """Keep-alive knobs applied exactly as the reference servers apply theirs."""

    keepalive_timeout_s: float = 5.0
    keepalive_max: int = 0  # requests per connection; 0 = unlimited
