"""The client and load-balancer defaults the verdicts compare with, read from defaults.toml.

Data, not code: each entry carries its source, so a reader can check a figure and a maintainer
can add one without touching the verdict logic. Validated once, on load.
"""

from __future__ import annotations

import enum
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import UsageError, generated_table_main

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")


class PeerKind(enum.StrEnum):
    CLIENT = "client"
    LOAD_BALANCER = "load balancer"
    PROXY = "proxy"


@dataclass(frozen=True)
class Peer:
    """One client or load balancer that keeps idle connections to the server."""

    name: str
    kind: PeerKind
    idle_s: float | None  # None: no idle limit
    setting: str
    source: str
    hint_aware_buffer_s: float | None = None  # lowers its limit to Keep-Alive timeout - this
    note: str = ""

    @property
    def fronts_server(self) -> bool:
        """A load balancer or proxy: the fix is usually on the server's side."""
        return self.kind is not PeerKind.CLIENT


_KNOWN = {"name", "kind", "idle_s", "setting", "source", "hint_aware_buffer_s", "note"}


def _entries(path: Path, table: str, known: set[str], required: set[str]) -> list[dict[str, Any]]:
    """Every [[table]] entry of the file, each with only known keys and every required one;
    UsageError naming the entry that is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path.name}: cannot read: {exc}") from None
    entries: list[dict[str, Any]] = data.get(table, [])
    for i, entry in enumerate(entries):
        unknown, missing = set(entry) - known, required - set(entry)
        if unknown or missing:
            raise UsageError(
                f"{path.name} {table} {i}: unknown {unknown or '-'}, missing {missing or '-'}"
            )
    return entries


def load_peers(path: Path = DEFAULTS_FILE) -> list[Peer]:
    """Every [[peer]] of the file; UsageError naming the entry that is wrong."""
    peers = []
    for entry in _entries(path, "peer", _KNOWN, {"name", "kind", "setting", "source"}):
        idle = entry.get("idle_s")
        if idle is not None and not (isinstance(idle, int | float) and idle > 0):
            raise UsageError(f"{path.name} peer {entry['name']!r}: idle_s must be > 0")
        peers.append(
            Peer(
                entry["name"],
                PeerKind(entry["kind"]),
                float(idle) if idle is not None else None,
                entry["setting"],
                entry["source"],
                entry.get("hint_aware_buffer_s"),
                entry.get("note", ""),
            )  # fmt: skip
        )
    return peers


@dataclass(frozen=True)
class ServerDefault:
    """How a server ships: its idle timeout and its limit of requests per connection."""

    name: str
    idle_s: float | None  # None: no idle limit
    max_requests: int | None  # None: no limit
    setting: str
    source: str


_SERVER_KNOWN = {"name", "idle_s", "max_requests", "setting", "source"}


def load_servers(path: Path = DEFAULTS_FILE) -> list[ServerDefault]:
    """Every [[server]] of the file; UsageError naming the entry that is wrong."""
    servers = []
    for entry in _entries(path, "server", _SERVER_KNOWN, {"name", "setting", "source"}):
        idle, most = entry.get("idle_s"), entry.get("max_requests")
        if idle is not None and not (isinstance(idle, int | float) and idle > 0):
            raise UsageError(f"{path.name} server {entry['name']!r}: idle_s must be > 0")
        if most is not None and not (isinstance(most, int) and most > 0):
            raise UsageError(f"{path.name} server {entry['name']!r}: max_requests must be > 0")
        servers.append(ServerDefault(entry["name"], None if idle is None else float(idle), most,
                                     entry["setting"], entry["source"]))  # fmt: skip
    return servers


TABLE_BEGIN = "<!-- defaults table: python -m benchmarks.doctor.defaults --update README.md -->"
TABLE_END = "<!-- end of defaults table -->"


def _seconds(value: float | None) -> str:
    return "no limit" if value is None else f"{value:g} s"


def defaults_table() -> str:
    """The README's table of shipped defaults, servers first, from defaults.toml."""
    lines = [
        "| who | kind | idle timeout | requests per connection | setting | source |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in load_servers():
        most = "no limit" if s.max_requests is None else f"{s.max_requests:,}"
        lines.append(f"| {s.name} | server | {_seconds(s.idle_s)} | {most} | {s.setting} | "
                     f"{s.source} |")  # fmt: skip
    for p in load_peers():
        idle = _seconds(p.idle_s)
        if p.hint_aware_buffer_s is not None:
            idle += f" (or the server's hint minus {p.hint_aware_buffer_s:g} s)"
        lines.append(f"| {p.name} | {p.kind} | {idle} | | {p.setting} | {p.source} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return generated_table_main(
        "python -m benchmarks.doctor.defaults", argv, defaults_table, TABLE_BEGIN, TABLE_END
    )


if __name__ == "__main__":
    sys.exit(main())
