"""What the kernel says about the suite's sockets: /proc/net/tcp{,6} and the TCP counters.

The server's own counters say how many connections it accepted; the kernel says what is left
behind. On loopback both ends of a connection show up, so ESTABLISHED is counted on the server
end only (local port = server port: one per open connection), and TIME_WAIT on either end (it
belongs to whichever side closed first: the server when it sends `Connection: close`).

/proc/net/snmp and /proc/net/netstat count for the whole network namespace: exact for a cell
only when the namespace holds nothing but the suite (`--netns`, or `unshare --net` around the
run); `private_netns()` checks that before the counters are trusted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC_NET = Path("/proc/net")
ESTABLISHED = "01"
TIME_WAIT = "06"
# Not a connection a client holds: TIME_WAIT, CLOSE, LISTEN
NOT_HELD = frozenset({TIME_WAIT, "07", "0A"})

TCP_COUNTERS = ("ActiveOpens", "PassiveOpens", "AttemptFails", "EstabResets", "CurrEstab")
TCPEXT_COUNTERS = ("TW", "TWRecycled", "ListenOverflows", "ListenDrops")


@dataclass(frozen=True)
class SocketCounts:
    """Sockets with the server port at one end, from /proc/net/tcp{,6}."""

    established_server: int = 0  # server end of open connections
    time_wait_server: int = 0  # server closed first
    time_wait_client: int = 0  # client closed first
    # client ends in any state but TIME_WAIT (connecting, open, closing): the connections the
    # clients hold at this instant, which an unpooled client's short ones are counted by
    held_client: int = 0

    @property
    def time_wait(self) -> int:
        return self.time_wait_server + self.time_wait_client


def parse_tcp_table(text: str, port: int) -> SocketCounts:
    """Count one /proc/net/tcp or tcp6 table; lines look like
    `0: 0100007F:1F90 0100007F:A2C4 01 ...` (hex address:port, hex state).

    Regular expressions with the port written in (the kernel prints it as four upper-case hex
    digits) pick the states of the lines with the port at one end, in C: an unpooled cell
    leaves tens of thousands of TIME_WAIT lines, and the monitor reads the table during the
    load (once a cell, or every sample against a target), on the client's core."""
    p = f"{port:04X}"  # each pattern starts with the literal `:PORT `, which re searches fast
    local = Counter(re.findall(rf":{p} [0-9A-F]+:[0-9A-F]+ ([0-9A-F]+) ", text))
    remote = Counter(re.findall(rf":{p} ([0-9A-F]+) ", text))  # the state follows the remote
    both = Counter(re.findall(rf":{p} [0-9A-F]+:{p} ([0-9A-F]+) ", text))  # itself: rare
    held = remote.total() - sum(remote[state] for state in NOT_HELD)
    return SocketCounts(
        local[ESTABLISHED], local[TIME_WAIT], remote[TIME_WAIT] - both[TIME_WAIT], held
    )


def socket_counts(port: int, proc_net: Path = PROC_NET) -> SocketCounts:
    total = SocketCounts()
    for name in ("tcp", "tcp6"):
        try:
            text = (proc_net / name).read_text()
        except OSError:
            continue
        part = parse_tcp_table(text, port)
        total = SocketCounts(
            total.established_server + part.established_server,
            total.time_wait_server + part.time_wait_server,
            total.time_wait_client + part.time_wait_client,
            total.held_client + part.held_client,
        )
    return total


def count_entries(proc_net: Path = PROC_NET) -> int:
    """Every TCP socket in the namespace (listeners included)."""
    n = 0
    for name in ("tcp", "tcp6"):
        try:
            n += max(len((proc_net / name).read_text().splitlines()) - 1, 0)
        except OSError:
            continue
    return n


def parse_proto_table(text: str, proto: str) -> dict[str, int]:
    """The `Tcp:` or `TcpExt:` header/value line pair of /proc/net/snmp or /proc/net/netstat."""
    lines = [line.split() for line in text.splitlines() if line.startswith(f"{proto}:")]
    if len(lines) < 2:
        return {}
    header, values = lines[0][1:], lines[1][1:]
    out = {}
    for key, value in zip(header, values, strict=False):
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def kernel_counters(proc_net: Path = PROC_NET) -> dict[str, int]:
    """The namespace's TCP counters of interest (missing files give an empty dict)."""
    out: dict[str, int] = {}
    for name, proto, keys in (
        ("snmp", "Tcp", TCP_COUNTERS),
        ("netstat", "TcpExt", TCPEXT_COUNTERS),
    ):
        try:
            table = parse_proto_table((proc_net / name).read_text(), proto)
        except OSError:
            continue
        out.update({k: table[k] for k in keys if k in table})
    return out


def counters_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Increase of each counter; CurrEstab is a gauge, so its final value is kept instead."""
    out = {}
    for key, value in after.items():
        out[key] = value if key == "CurrEstab" else value - before.get(key, 0)
    return out


def format_counters(
    delta: Mapping[str, int], keys: Iterable[str] = TCP_COUNTERS + TCPEXT_COUNTERS
) -> str:
    """`netns ActiveOpens=16 PassiveOpens=16 ...` for the note column."""
    return "netns " + " ".join(f"{k}={delta[k]}" for k in keys if k in delta)


def private_netns(proc_net: Path = PROC_NET) -> bool:
    """True when this network namespace holds only the suite's sockets, so the kernel counters
    are exact: it has no TCP socket at all yet (as right after `--netns` put us in a new one).
    Checked, never assumed: a flag or a variable could claim it anywhere."""
    return count_entries(proc_net) == 0
