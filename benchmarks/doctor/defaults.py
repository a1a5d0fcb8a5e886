"""The client and load-balancer defaults the verdicts compare with, read from defaults.toml.

Data, not code: each entry carries its source, so a reader can check a figure and a maintainer
can add one without touching the verdict logic. Validated once, on load.
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import UsageError

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


def load_peers(path: Path = DEFAULTS_FILE) -> list[Peer]:
    """Every [[peer]] of the file; UsageError naming the entry that is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path.name}: cannot read: {exc}") from None
    peers = []
    for i, entry in enumerate(data.get("peer", [])):
        unknown = set(entry) - _KNOWN
        missing = {"name", "kind", "setting", "source"} - set(entry)
        if unknown or missing:
            raise UsageError(
                f"{path.name} peer {i}: unknown {unknown or '-'}, missing {missing or '-'}"
            )
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
