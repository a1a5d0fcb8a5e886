"""The results CSV: one row per cell and repetition; the columns are documented here only.

The column table of `results/README.md` is generated from `COLUMN_DOCS` (the matrix's own
columns are documented with their dimension, in `benchmarks.matrix`)
(`python -m benchmarks.records.schema --update results/README.md`; a test fails when they
differ), so the doc and the code cannot drift. Readers refuse a file whose `schema_version` they
do not know.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from benchmarks.common import UsageError, generated_table_main, replace_section, write_atomic
from benchmarks.matrix import ALWAYS, DIMENSION_COLUMNS, DIMENSIONS, CellKey, by_column, key_of

SCHEMA_VERSION = 3
# Versions this code reads. Version 1 (before the delay line) lacks the link columns: its rows
# read as loopback rows (no line: the link columns empty, the link dimensions at `before`).
# Versions 1 and 2 lack the request phases and the relay's CPU (empty: not measured then), and
# their `connections_opened` covered the client's whole run: they read with it in
# `connections_opened_run` too (version 3 counts `connections_opened` over the window).
READABLE_VERSIONS = ("1", "2", "3")


class SchemaError(UsageError):
    """Not a results CSV (or noise file) this code understands; one line, exit 2. Apart from
    other bad input because a round that wrote one is a failed round, not a usage mistake."""


@dataclass(frozen=True)
class ResultRow:
    """One measured cell and repetition. Field order is column order; `key` stands for the
    columns of the matrix's dimensions (benchmarks.matrix.CellKey), in its field order."""

    # Run and machine fingerprint
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
    # Cell configuration
    key: CellKey
    duration_s: float
    repetition: int
    server_core: int
    client_core: int
    # Client-side results
    requests: int
    errors: int
    throughput_rps: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    latency_p999_ms: float
    latency_max_ms: float
    # The phases of a request, medians over the window's requests; empty where the client
    # cannot time them apart (benchmarks.clients.shared.Phase)
    connect_p50_ms: float | None
    tls_p50_ms: float | None
    ttfb_p50_ms: float | None
    client_cpu_pct: float
    # Server-side results
    server_cpu_s: float
    server_cpu_us_per_req: float
    server_cpu_pct: float
    connections_opened: int
    connections_opened_run: int | None
    requests_per_connection: float
    peak_open_connections: int
    open_sockets: int
    time_wait_sockets: int
    # The delay line (benchmarks.net), empty for loopback: the relay's figures over the cell
    link_lateness_p50_us: float | None
    link_lateness_p99_us: float | None
    link_packets: int | None
    link_drops: int | None
    relay_cpu_pct: float | None
    # Verdicts
    client_bound: int
    valid: int
    status: str
    note: str


_ROW_DOCS: dict[str, str] = {
    "schema_version": f"format of this file; currently {SCHEMA_VERSION}",
    "run_id": "one id per `python -m benchmarks run` (UTC timestamp plus host)",
    "started_utc": "when the cell started, ISO 8601 UTC",
    "git_commit": "commit of the benchmarked code (`-dirty` when the tree had changes)",
    "host_id": "stable id of the machine (hash of hostname and machine-id)",
    "cpu_model": "from /proc/cpuinfo",
    "cpu_count": "logical CPUs",
    "kernel": "`uname -r`",
    "python_version": "interpreter of servers and clients",
    "packages": "versions of aiohttp, uvloop, httptools, locust, pyperf (`name=ver;...`)",
    "duration_s": "measured window in seconds, client-reported (pyperf: total measured time)",
    "repetition": "1-based repetition of this cell in the run",
    "server_core": "CPU the server was pinned to (-1: not pinned)",
    "client_core": "CPU the client was pinned to (-1: not pinned)",
    "requests": "requests completed in the measured window",
    "errors": "failed requests in the measured window",
    "throughput_rps": "requests / window seconds",
    "latency_p50_ms": "median latency, ms with microsecond precision, from the merged histogram",
    "latency_p90_ms": "90th percentile latency, ms",
    "latency_p99_ms": "99th percentile latency, ms",
    "latency_p999_ms": "99.9th percentile latency, ms",
    "latency_max_ms": "slowest request, ms",
    "connect_p50_ms": "median over the window's requests of the time from `connect()` to "
    "established, ms; 0 for a request on a reused connection (so a pooled cell reads 0); empty "
    "where the client cannot tell (Locust; aiohttp over https, whose connect includes the "
    "handshake)",
    "tls_p50_ms": "median over the window's requests of the TLS handshake after the connect, ms; "
    "0 on a reused connection; empty without TLS or where the client cannot tell",
    "ttfb_p50_ms": "median time to first byte, ms: from the start of the request's write (after "
    "any connect and handshake) to the first response byte (pyperf-sequential: once http.client "
    "has read the response head); empty where the client cannot tell (Locust, aiohttp)",
    "client_cpu_pct": "client CPU (all its processes, pinned to one core) as % of that core, over "
    "the 0.2 s intervals in which the server served requests; the note's `cores:` part gives "
    "each pinned core's total load beside it",
    "server_cpu_s": "server CPU seconds (user + system) over the client's whole run",
    "server_cpu_us_per_req": "server CPU microseconds per request served",
    "server_cpu_pct": "server CPU as % of one core, over the same intervals as client_cpu_pct",
    "connections_opened": "connections the client opened in the measured window, the span of "
    "`requests` (so unpooled reads about `requests`, pooled about 0 plus those the server "
    "closed); the validity check judges the mode by it, after checking the client's run-wide "
    "count against the server's; schema 1 and 2 files: as connections_opened_run",
    "connections_opened_run": "connections the server accepted over the client's whole run "
    "(probe, warm-up and pyperf's workers' start included; a target's: the client's own count); "
    "empty never in schema 3",
    "requests_per_connection": "requests served / connections accepted over the client's whole "
    "run (server counters: a pooled window reuses connections its warm-up opened)",
    "peak_open_connections": "most connections open at once on the server",
    "open_sockets": "ESTABLISHED server-side sockets on the server port near the end of the window "
    "(/proc/net/tcp{,6})",
    "time_wait_sockets": "TIME_WAIT sockets with the server port at either end, right after the "
    "client exited (/proc; the note splits server/client side)",
    "link_lateness_p50_us": "median lateness of the relay's packets (actual minus intended "
    "release), microseconds, over the cell (server start to stop); empty for loopback",
    "link_lateness_p99_us": "99th percentile of that lateness, microseconds; empty for loopback",
    "link_packets": "packets the relay forwarded over the cell (both directions, the identity "
    "check included); empty for loopback",
    "link_drops": "packets the relay dropped (random loss and full bottleneck queue); empty for "
    "loopback",
    "relay_cpu_pct": "the delay line's relay CPU as % of one core, over the same intervals as "
    "client_cpu_pct; it runs pinned to the client's core, so it counts toward client_bound "
    "(client_cpu_pct + relay_cpu_pct), never as another tenant of the server's core; empty for "
    "loopback",
    "client_bound": "1 when the client (with the delay line's relay, on its core) used >= 85% of "
    "its core, or its core was >= 85% busy in total (the client, the relay, the harness pinned "
    "beside it, and other processes: a starved client); throughput is then a lower bound",
    "valid": "1 when the cell ran and its mode was achieved (pooled reused connections at its "
    "concurrency, unpooled opened one per request) on a server core of its own: other processes "
    "using >= 20% of the server's core make it 0 with a note starting `contended:`",
    "status": "`ok`, or what failed (server-start, server-died, client-crashed, disk-full, ...)",
    "note": "free text: why a row is invalid or failed, extra kernel counters, ...",
}

KEY_FIELD = "key"


def _columns() -> tuple[str, ...]:
    """The row's fields with the key's columns in place of `key`, but a dimension added after
    the row's columns were committed right after the column it names (`Dimension.after`)."""
    names = [f.name for f in fields(ResultRow)]
    at = names.index(KEY_FIELD)
    columns = [*names[:at], *(d.column for d in DIMENSIONS if not d.after), *names[at + 1 :]]
    for d in DIMENSIONS:
        if d.after:
            columns.insert(columns.index(d.after) + 1, d.column)
    return tuple(columns)


COLUMNS: tuple[str, ...] = _columns()
_TYPES = {
    **{f.name: str(f.type) for f in fields(ResultRow) if f.name != KEY_FIELD},
    **{d.column: d.kind for d in DIMENSIONS},
}
COLUMN_DOCS: dict[str, str] = {
    name: by_column(name).doc if name in DIMENSION_COLUMNS else _ROW_DOCS[name] for name in COLUMNS
}


def _optional(cast: Any) -> Any:
    """An empty field is None (a figure that does not apply: no delay line)."""
    return lambda text: cast(text) if text != "" else None


_CASTS = {
    "int": int, "float": float, "str": str,
    "int | None": _optional(int), "float | None": _optional(float),
}  # fmt: skip
# Dimension columns whose older files spell values differently (tls 0/1 as none/1.3).
_READS = {d.column: d.read for d in DIMENSIONS if d.read is not None}
# Columns a file may lack: dimensions added after it was written, with the value they had then,
# and the row columns schema 2 added (what a version-1 row, on loopback, holds in them).
_BEFORE: dict[str, Any] = {
    **{d.column: d.before for d in DIMENSIONS if d.before is not ALWAYS},
    **dict.fromkeys(_V2_COLUMNS := ("link_lateness_p50_us", "link_lateness_p99_us",
                                    "link_packets", "link_drops")),
    **dict.fromkeys(_V3_COLUMNS := ("connect_p50_ms", "tls_p50_ms", "ttfb_p50_ms",
                                    "connections_opened_run", "relay_cpu_pct")),
}  # fmt: skip
_ADDED_IN = {**dict.fromkeys(_V2_COLUMNS, 2), **dict.fromkeys(_V3_COLUMNS, 3)}
# Float columns that may be blank: not measured (a target's CPU without --target-pid). NaN in a
# row, an empty field in the file.
BLANK_FLOATS = frozenset({"server_cpu_s", "server_cpu_us_per_req", "server_cpu_pct"})


def row_values(row: ResultRow) -> dict[str, Any]:
    """Column -> value, in column order: the key's fields in place of `key`."""
    values = {f.name: getattr(row, f.name) for f in fields(ResultRow) if f.name != KEY_FIELD}
    values.update({c: getattr(row.key, c) for c in DIMENSION_COLUMNS})
    return {name: values[name] for name in COLUMNS}


def row_from(values: Mapping[str, Any]) -> ResultRow:
    """A ResultRow from column -> value (the inverse of `row_values`)."""
    rest = {k: v for k, v in values.items() if k not in DIMENSION_COLUMNS}
    return ResultRow(key=key_of(values), **rest)


def format_rows(rows: Iterable[ResultRow]) -> str:
    """The CSV text of `rows`, header first; the one writer, so every file has one shape."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: _field(name, v) for name, v in row_values(row).items()})
    return buf.getvalue()


def _field(name: str, value: object) -> str:
    """A column's text: a not-measured BLANK_FLOATS value (NaN) is an empty field."""
    if name in BLANK_FLOATS and isinstance(value, float) and math.isnan(value):
        return ""
    return _format_value(value)


def _format_value(value: object) -> str:
    """Floats keep microsecond precision for ms columns and 6 significant digits elsewhere."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:.1f}"
    return str(value)


def write_rows(path: Path, rows: Sequence[ResultRow]) -> None:
    """Write the whole file atomically (temporary file, fsync, rename)."""
    write_atomic(path, format_rows(rows))


def read_rows(path: Path) -> list[ResultRow]:
    """Parse a results CSV; SchemaError (one line) if it is missing, foreign or corrupt.

    Strict on shape, because a silently padded or truncated row would be measured data made up:
    every row must have exactly the header's fields, and the header exactly this schema's columns.
    The one exception is a dimension added after the file was written: its column may be
    missing, and then holds the value every run had before the dimension existed
    (`Dimension.before`: no emulated delay, say).
    """
    reader = csv.reader(io.StringIO(_read_text(path)))
    try:
        header = next(reader, [])
        if "schema_version" not in header:
            raise SchemaError(
                f"{path}: not a results CSV (no header with schema_version; "
                f"found {len(header)} columns)"
            )
        problem = _header_problem(header)
        rows = [_parse_row(path, reader.line_num, header, problem, raw) for raw in reader if raw]
    except csv.Error as exc:
        raise SchemaError(f"{path}:{reader.line_num}: not a results CSV ({exc})") from None
    if problem:  # reached only without rows: with rows, _parse_row reported it
        raise SchemaError(f"{path}: {problem}")
    return rows


def _read_text(path: Path) -> str:
    """The file as text; UTF-8 (a BOM from a spreadsheet is tolerated), anything else refused."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SchemaError(
            f"{path}: not a results CSV (not UTF-8 text: byte 0x{data[exc.start]:02x} "
            f"at offset {exc.start})"
        ) from None


def _header_problem(header: Sequence[str]) -> str | None:
    """Why a header is not exactly this schema's columns (in any order), or None."""
    missing = [c for c in COLUMNS if c not in header and c not in _BEFORE]
    if sorted(header) == sorted(c for c in COLUMNS if c in header) and not missing:
        return None
    extra = [c for c in header if c not in _TYPES]
    dup = sorted({c for c in header if header.count(c) > 1})
    parts = [
        f"{label}: {_some(names)}"
        for label, names in (("missing", missing), ("unexpected", extra), ("duplicated", dup))
        if names
    ]
    return (
        f"header has {len(header)} columns, schema {SCHEMA_VERSION} has {len(COLUMNS)} "
        f"({'; '.join(parts)})"
    )


def _some(names: Sequence[str], limit: int = 3) -> str:
    """A few names, not forty: the message must stay one readable line."""
    more = f", +{len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _parse_row(
    path: Path, lineno: int, header: Sequence[str], problem: str | None, raw: Sequence[str]
) -> ResultRow:
    """One data record; the version is checked before the header's `problem` (computed once
    per file by read_rows) so a newer file says so."""
    if len(raw) != len(header):
        raise SchemaError(f"{path}:{lineno}: {len(raw)} fields, the header has {len(header)}")
    values = dict(zip(header, raw, strict=True))
    if values["schema_version"] not in READABLE_VERSIONS:
        raise SchemaError(f"{path}:{lineno}: unknown schema_version {values['schema_version']!r}")
    if problem:
        raise SchemaError(f"{path}: {problem}")
    cast: dict[str, Any] = {}
    version = int(values["schema_version"])
    if version < 3 and "connections_opened" in values:  # what the old column counted
        values["connections_opened_run"] = values["connections_opened"]
    for name in COLUMNS:
        if name not in values and _ADDED_IN.get(name, version + 1) <= version:
            raise SchemaError(f"{path}: schema {version} file without its {name} column")
        if name not in values:  # a column newer than the file (_header_problem let it pass)
            cast[name] = _BEFORE[name]
            continue
        if name == "schema_version":  # a version-1 row, read as it now is: the loopback row
            cast[name] = SCHEMA_VERSION
            continue
        if name in BLANK_FLOATS and values[name] == "":
            cast[name] = math.nan
            continue
        try:
            cast[name] = _READS.get(name, _CASTS[str(_TYPES[name])])(values[name])
        except (ValueError, UsageError):
            raise SchemaError(f"{path}:{lineno}: bad value for {name}: {values[name]!r}") from None
    return row_from(cast)


README_BEGIN = (
    "<!-- columns: generated by `python -m benchmarks.records.schema --update`; do not edit -->"
)
README_END = "<!-- end of generated columns -->"


def column_table() -> str:
    """The Markdown table of every column, in CSV order, from COLUMN_DOCS and ResultRow's types."""
    lines = ["| column | type | meaning |", "| --- | --- | --- |"]
    for name in COLUMNS:
        doc = COLUMN_DOCS[name].replace("|", "\\|")
        lines.append(f"| `{name}` | {_TYPES[name]} | {doc} |")
    return "\n".join(lines)


def readme_with_columns(readme: str) -> str:
    """`readme` with the text between the two markers replaced by the current column table."""
    return replace_section(readme, README_BEGIN, README_END, column_table())


def main(argv: list[str] | None = None) -> int:
    """Print the column table, or `--update results/README.md` to rewrite its section."""
    return generated_table_main(
        "python -m benchmarks.records.schema", argv, column_table, README_BEGIN, README_END
    )


if __name__ == "__main__":
    raise SystemExit(main())
