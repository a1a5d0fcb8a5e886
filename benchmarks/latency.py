"""Latency histograms with microsecond resolution, merged across processes, never averaged.

Locust rounds response times below 100 ms to whole milliseconds and pyperf reports means, so
every client records each request's latency into an HdrHistogram and ships it encoded; whoever
combines runs decodes and adds histograms, then reads percentiles from the merged one.
"""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 120_000_000  # two minutes
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_us(hist: HdrHistogram, latency_us: float) -> None:
    """Record one latency; sub-microsecond values count as 1 us, huge ones are clamped."""
    hist.record_value(min(max(int(latency_us), LOWEST_US), HIGHEST_US))


def encode(hist: HdrHistogram) -> str:
    return hist.encode().decode("ascii")


def decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode("ascii"))


def merge(encoded: Iterable[str]) -> HdrHistogram:
    merged = new_histogram()
    for text in encoded:
        merged.add(decode(text))
    return merged


def summary_us(hist: HdrHistogram) -> dict[str, float]:
    """p50, p90, p99, p999 and max in microseconds; all zero for an empty histogram."""
    if hist.get_total_count() == 0:
        return {**dict.fromkeys(PERCENTILES, 0.0), "max": 0.0}
    out = {name: float(hist.get_value_at_percentile(p)) for name, p in PERCENTILES.items()}
    out["max"] = float(hist.get_max_value())
    return out
