"""Hand-made ResultRows for the compare, noise and report tests: realistic defaults, overrides."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.matrix import DIMENSION_COLUMNS, CellKey
from benchmarks.records.schema import SCHEMA_VERSION, ResultRow, write_rows

BASE = ResultRow(
    schema_version=SCHEMA_VERSION, run_id="20260101T000000Z-test",
    started_utc="2026-01-01T00:00:00Z",
    git_commit="abc1234", host_id="host1", cpu_model="Test CPU @ 3GHz", cpu_count=2,
    kernel="6.1.0", python_version="3.11.2", packages="aiohttp=3.9;uvloop=0.19",
    key=CellKey(
        server="uvloop", client="pyperf-concurrent-raw", mode="pooled", tls="none", concurrency=50,
        keepalive_timeout_s=5.0, keepalive_max=100,
    ),
    duration_s=5.0, repetition=1, server_core=0,
    client_core=1, requests=500_000, errors=0, throughput_rps=100_000.0, latency_p50_ms=0.4,
    latency_p90_ms=0.6, latency_p99_ms=1.0, latency_p999_ms=2.0, latency_max_ms=5.0,
    connect_p50_ms=0.0, tls_p50_ms=None, ttfb_p50_ms=0.39, client_cpu_pct=70.0,
    server_cpu_s=2.5, server_cpu_us_per_req=5.0, server_cpu_pct=50.0,
    connections_opened=0, connections_opened_run=50, requests_per_connection=10_000.0,
    peak_open_connections=50, open_sockets=50, time_wait_sockets=0,
    link_lateness_p50_us=None, link_lateness_p99_us=None, link_packets=None, link_drops=None,
    relay_cpu_pct=None, client_bound=0, valid=1, status="ok", note="",
)  # fmt: skip


def row(**overrides: Any) -> ResultRow:  # Any: each field has its own type
    """BASE with some columns replaced (a dimension's column replaces it in the key)."""
    dims = {k: overrides.pop(k) for k in list(overrides) if k in DIMENSION_COLUMNS}
    return replace(BASE, key=replace(BASE.key, **dims), **overrides)


def reps(values: list[float], column: str = "throughput_rps", **overrides: Any) -> list[ResultRow]:
    """One row per repetition, `column` taking each value in turn."""
    return [row(repetition=i, **{column: v}, **overrides) for i, v in enumerate(values, start=1)]


def write(path: Path, rows: list[ResultRow]) -> Path:
    """Write `rows` with the project's writer; returns `path` for chaining."""
    write_rows(path, rows)
    return path


def noise_file(
    path: Path, floors: dict[str, float], host_id: str = "host1", **extra: object
) -> Path:
    """A minimal noise JSON: version 0 unless `format_version` (and `fingerprint`) are given."""
    data = {
        "rounds": 6,
        "host_id": host_id,
        "false_positives": {c: {"suggested_threshold": t} for c, t in floors.items()},
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path
