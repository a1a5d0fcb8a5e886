"""Latency histograms with microsecond resolution, merged across processes, never averaged.

Locust rounds response times below 100 ms to whole milliseconds and pyperf reports means, so
every client records each request's latency into an HdrHistogram and ships it encoded; whoever
combines runs decodes and adds histograms, then reads percentiles from the merged one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def record_counts(hist: HdrHistogram, counts: Mapping[int, int]) -> None:
    """Record {microseconds: count}, values clamped as `record_us` does.

    What `record_value(us, count)` does for each, with its bucket arithmetic (hdrh's
    `_counts_index_for`, which formats every value with `bin()` to count its leading zeros)
    done with `int.bit_length`: a client records one value per distinct microsecond of a batch,
    thousands when latencies spread, on the core it loads from. Histograms not shaped like
    `new_histogram`'s (unit 1) take `record_value`."""
    if not counts:
        return
    if hist.unit_magnitude != 0:
        for value, count in counts.items():
            hist.record_value(min(max(value, LOWEST_US), HIGHEST_US), count)
        return
    array, mask = hist.counts, hist.sub_bucket_mask
    shift, half = hist.sub_bucket_half_count_magnitude, hist.sub_bucket_half_count
    top = mask.bit_length()  # bits of the first bucket
    total = 0
    for value, count in counts.items():
        v = min(max(value, LOWEST_US), HIGHEST_US)
        bucket = (v | mask).bit_length() - top
        array[((bucket + 1) << shift) + (v >> bucket) - half] += count
        total += count
    hist.total_count += total
    low = min(max(min(counts), LOWEST_US), HIGHEST_US)
    high = min(max(max(counts), LOWEST_US), HIGHEST_US)
    hist.min_value = min(hist.min_value, low)
    hist.max_value = max(hist.max_value, high)


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
