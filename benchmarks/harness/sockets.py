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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC_NET = Path("/proc/net")
ESTABLISHED = "01"
TIME_WAIT = "06"
# Not a connection a client holds: TIME_WAIT, CLOSE, LISTEN
NOT_HELD = frozenset({TIME_WAIT, "07", "0A"})

TCP_COUNTERS = ("ActiveOpens", "PassiveOpens", "AttemptFails", "EstabResets", "CurrEstab")
# Read as well, never printed in the note: it moves with any traffic (a target's activity)
TCP_TRAFFIC = ("InSegs",)
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
    # server ends in any such state (handshake, open, closing): what the server holds, for a
    # namespace that has only the server's ends (a command target on the delay line)
    held_server: int = 0

    @property
    def time_wait(self) -> int:
        return self.time_wait_server + self.time_wait_client


def parse_tcp_table(text: str, port: int) -> SocketCounts:
    """Count one /proc/net/tcp or tcp6 table; lines look like
    `0: 0100007F:1F90 0100007F:A2C4 01 ...` (hex address:port, hex state)."""
    est = tw_server = tw_client = held = held_server = 0
    for line in text.splitlines()[1:]:
        words = line.split(None, 4)
        if len(words) < 4:
            continue
        local_port = _port(words[1])
        remote_port = _port(words[2])
        state = words[3]
        if remote_port == port and state not in NOT_HELD:
            held += 1
        if local_port == port and state not in NOT_HELD:
            held_server += 1
        if state == ESTABLISHED and local_port == port:
            est += 1
        elif state == TIME_WAIT:
            if local_port == port:
                tw_server += 1
            elif remote_port == port:
                tw_client += 1
    return SocketCounts(est, tw_server, tw_client, held, held_server)


def _port(address: str) -> int:
    try:
        return int(address.rsplit(":", 1)[1], 16)
    except (IndexError, ValueError):
        return -1


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
            total.held_server + part.held_server,
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
        ("snmp", "Tcp", TCP_COUNTERS + TCP_TRAFFIC),
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
