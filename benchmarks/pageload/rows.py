"""The page-load results CSV: one row per cell and repetition; the columns are documented here.

Its own row type and schema version (`PAGELOAD_SCHEMA_VERSION`), not the `make bench` one:
another shape of measurement (a page, not a window of requests). Files are named
`results/<host_id>/pageload-<UTC stamp>-<commit>.csv`, beside the bench CSVs, and the bench
readers skip them by that prefix. Fingerprint columns are the bench rows' (same names, same
meaning, from `benchmarks.harness.fingerprint`), so a row says where it was measured.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from benchmarks.common import generated_table_main, replace_section, write_atomic

PAGELOAD_SCHEMA_VERSION = 1
FILE_PREFIX = "pageload-"


class RowsError(ValueError):
    """Not a page-load CSV this code reads: one line."""


@dataclass(frozen=True)
class PageLoadRow:
    """One cell and repetition. Field order is column order."""

    schema_version: int
    run_id: str
    started_utc: str
    git_commit: str
    host_id: str
    cpu_model: str
    cpu_count: int
    kernel: str
    python_version: str
    packages: str
    browser_version: str
    # the cell
    server: str
    client: str
    mode: str
    tls: str
    tls_version: str
    rtt_ms: float
    resources: int
    resource_bytes: int
    keepalive_timeout_s: float
    keepalive_max: int
    repetition: int
    loads: int
    # what the client measured, over this repetition's loads
    page_load_p50_ms: float
    page_load_p90_ms: float
    page_load_min_ms: float
    page_load_max_ms: float
    document_p50_ms: float
    client_connections_per_page: float
    reused_per_page: float
    preconnected_per_page: float
    tls_full_per_page: float
    tls_resumed_per_page: float
    bytes_per_page: float
    client_cpu_p50_ms: float
    # what the server counted
    connections_per_page: float
    requests_per_page: float
    requests_per_connection: float
    # the model
    model_round_trips: int
    model_connections: int
    model_ms: float
    model_ratio: float
    # the link
    link_packets: int
    link_drops: int
    link_lateness_p99_us: int
    # verdict
    valid: int
    status: str
    note: str


COLUMN_DOCS: dict[str, str] = {
    "schema_version": f"format of this file; currently {PAGELOAD_SCHEMA_VERSION} (page-load rows)",
    "run_id": "one id per `python -m benchmarks pageload` (UTC timestamp plus host)",
    "started_utc": "when the repetition's batch started, ISO 8601 UTC",
    "git_commit": "commit of the benchmarked code (`-dirty` when the tree had changes)",
    "host_id": "stable id of the machine (as in the bench rows)",
    "cpu_model": "from /proc/cpuinfo",
    "cpu_count": "logical CPUs",
    "kernel": "`uname -r`",
    "python_version": "interpreter of servers and the Python client",
    "packages": "versions of aiohttp, uvloop, httptools, locust, pyperf, playwright",
    "browser_version": "Chromium's version (chromium rows; empty otherwise)",
    "server": "`stdlib`, `aiohttp` or `uvloop`",
    "client": "`chromium`, `python` (pooled, a browser's pool) or `python-unpooled`",
    "mode": "what the server's counters must show: `pooled` (reuse: keep-alive on and a pooling "
    "client) or `unpooled` (one request per connection)",
    "tls": "`none` or `1.3`",
    "tls_version": "negotiated, as the client reports it (empty for plain HTTP)",
    "rtt_ms": "round trip of the delay line (0: the line's own overhead)",
    "resources": "N, resources on the page (`/page?n=N`)",
    "resource_bytes": "B, bytes of each resource (`/r/<i>?size=B`)",
    "keepalive_timeout_s": "server's --keepalive-timeout (0 = keep-alive off)",
    "keepalive_max": "server's --keepalive-max (0 = unlimited)",
    "repetition": "1-based repetition of this cell in the run",
    "loads": "page loads in this repetition, each with an empty connection pool",
    "page_load_p50_ms": "median page-load time: Chromium's loadEventEnd; Python: first connect() "
    "to the last resource's last byte",
    "page_load_p90_ms": "90th percentile page-load time (linear interpolation over the loads)",
    "page_load_min_ms": "fastest load",
    "page_load_max_ms": "slowest load",
    "document_p50_ms": "median time to the document's last byte (Chromium: responseEnd)",
    "client_connections_per_page": "connections the client saw per load (Chromium: distinct "
    "CDP connectionIds)",
    "reused_per_page": "responses per load on a reused connection (CDP connectionReused)",
    "preconnected_per_page": "connections per load whose first response already said reused "
    "(Chromium opened them before it had a request for them)",
    "tls_full_per_page": "full TLS handshakes per load: the Python client's own count; "
    "Chromium's by the server's counters, `tls_handshakes` - `tls_resumed` (-1: the server has "
    "none); 0 for plain HTTP",
    "tls_resumed_per_page": "resumed TLS handshakes per load: the Python client's own count; "
    "Chromium's by the server's `tls_resumed` counter (-1: the server has none); 0 for plain "
    "HTTP",
    "bytes_per_page": "response bytes received per load (head and body; Chromium: encoded "
    "data length)",
    "client_cpu_p50_ms": "median CPU the client used per load (Chromium: the driver and every "
    "browser process; Python: its process), the client's own work within page_load",
    "connections_per_page": "connections the server accepted per load (its counters)",
    "requests_per_page": "requests the server served per load (N + 1 when nothing was lost)",
    "requests_per_connection": "requests served / connections accepted (server counters)",
    "model_round_trips": "round trips of the paper model (benchmarks/pageload/model.py)",
    "model_connections": "connections the model opens",
    "model_ms": "model_round_trips x rtt_ms",
    "model_ratio": "page_load_p50_ms / model_ms (0 when model_ms is 0)",
    "link_packets": "packets the relay forwarded during the batch",
    "link_drops": "packets it dropped (loss or queue)",
    "link_lateness_p99_us": "99th percentile of the relay's lateness over the line's life so far",
    "valid": "1 when every load finished, the server served exactly N + 1 requests per load, "
    "the mode was achieved by its counters (pooled: at most 6 + ceil((N + 1) / max) connections "
    "per load and fewer than requests; unpooled: one request per connection) and the client's "
    "own connection count agrees with the server's (connections Chromium opened and never "
    "used are counted in the note instead)",
    "status": "`ok`, or what failed (client-failed, server-start, server-died, ...)",
    "note": "why a row is invalid or failed, Chromium's preconnects, ...",
}

COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(PageLoadRow))
_TYPES = {f.name: str(f.type) for f in fields(PageLoadRow)}
_CASTS = {"int": int, "float": float, "str": str}


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "nan"
    return str(value)


def format_rows(rows: Sequence[PageLoadRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: _format(getattr(row, name)) for name in COLUMNS})
    return buf.getvalue()


def write_rows(path: Path, rows: Sequence[PageLoadRow]) -> None:
    """The whole file, atomically: a crash or Ctrl-C keeps every row written so far."""
    write_atomic(path, format_rows(rows))


def read_rows(path: Path) -> list[PageLoadRow]:
    """Parse a page-load CSV; RowsError (one line) when it is not one."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RowsError(f"{path}: cannot read: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or sorted(reader.fieldnames) != sorted(COLUMNS):
        raise RowsError(f"{path}: not a page-load CSV (schema {PAGELOAD_SCHEMA_VERSION} columns)")
    rows = []
    for raw in reader:
        if raw["schema_version"] != str(PAGELOAD_SCHEMA_VERSION):
            raise RowsError(f"{path}: unknown schema_version {raw['schema_version']!r}")
        try:
            rows.append(PageLoadRow(**{n: _CASTS[_TYPES[n]](raw[n]) for n in COLUMNS}))
        except (TypeError, ValueError):
            raise RowsError(f"{path}:{reader.line_num}: bad value") from None
    return rows


def column_table() -> str:
    """Markdown table of the columns, for the README."""
    lines = ["| column | type | meaning |", "| --- | --- | --- |"]
    lines += [
        f"| `{n}` | {_TYPES[n]} | {COLUMN_DOCS[n].replace('|', chr(92) + '|')} |" for n in COLUMNS
    ]
    return "\n".join(lines)


README_BEGIN = (
    "<!-- page-load columns: generated by `python -m benchmarks.pageload.rows --update` -->"
)
README_END = "<!-- end of generated page-load columns -->"


def readme_with_columns(readme: str) -> str:
    """`readme` with the text between the two markers replaced by the current column table."""
    return replace_section(readme, README_BEGIN, README_END, column_table())


def main(argv: list[str] | None = None) -> int:
    """Print the column table, or `--update results/README.md` to rewrite its section."""
    return generated_table_main(
        "python -m benchmarks.pageload.rows", argv, column_table, README_BEGIN, README_END
    )


if __name__ == "__main__":
    raise SystemExit(main())
