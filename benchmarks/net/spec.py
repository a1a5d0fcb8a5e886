"""What a delay line emulates, validated once at the edge and turned into relay argv in one place.

The addresses come from 198.18.0.0/15, the range RFC 2544 reserves for benchmarking: the server
namespace is 198.18.0.2, client namespace i is 198.18.1.(i + 2). Each namespace routes only
198.18.0.0/15, through its TUN device, to the relay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.net.netns import NetError

SERVER_ADDRESS = "198.18.0.2"
CLIENT_NET = "198.18.1."
LINE_PREFIX = "198.18.0.0/15"
MAX_CLIENTS = 64
MIN_MTU = 576  # the smallest datagram every IPv4 host must accept (RFC 791)
MAX_MTU = 65_535
MAX_RTT_MS = 60_000.0
MIN_QUEUE_PACKETS = 64
# Round trips shorter than this are dominated by the relay's own lateness (tens to hundreds of
# microseconds on a busy machine): say so when one is asked for.
PRECISE_RTT_MS = 5.0


def client_address(index: int) -> str:
    return f"{CLIENT_NET}{index + 2}"


@dataclass(frozen=True)
class LinkSpec:
    """One link of the star, the same for every client: delay, jitter, loss, bandwidth.

    `rtt_ms` is split evenly over the two directions. `jitter_ms` adds a uniform
    [-jitter, +jitter] to each one-way delay, but a packet never leaves before the one queued
    before it for the same destination, so no flow is ever reordered (and the mean delay grows a
    little). `loss_pct` drops each packet independently, in each direction. `bandwidth_mbit`
    serialises the packets for each destination at that rate behind a queue of `queue_packets`
    (default: one bandwidth-delay product, at least 64), dropping arrivals when it is full.
    """

    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    bandwidth_mbit: float | None = None
    queue_packets: int | None = None
    mtu: int = 1500
    clients: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_range("--rtt", self.rtt_ms, 0.0, MAX_RTT_MS, "ms")
        _check_range("--jitter", self.jitter_ms, 0.0, MAX_RTT_MS, "ms")
        _check_range("--loss", self.loss_pct, 0.0, 100.0, "%")
        if self.bandwidth_mbit is not None and not (
            math.isfinite(self.bandwidth_mbit) and self.bandwidth_mbit > 0
        ):
            raise NetError(
                f"--bandwidth must be a positive number of Mbit/s, got {self.bandwidth_mbit}"
            )
        if self.queue_packets is not None and self.queue_packets < 1:
            raise NetError(f"--queue must be at least 1 packet, got {self.queue_packets}")
        if not MIN_MTU <= self.mtu <= MAX_MTU:
            raise NetError(f"--mtu must be between {MIN_MTU} and {MAX_MTU}, got {self.mtu}")
        if not 1 <= self.clients <= MAX_CLIENTS:
            raise NetError(f"--clients must be between 1 and {MAX_CLIENTS}, got {self.clients}")

    @property
    def one_way_ms(self) -> float:
        return self.rtt_ms / 2

    @property
    def effective_queue_packets(self) -> int:
        """The bottleneck's queue: as given, or one bandwidth-delay product of full packets."""
        if self.queue_packets is not None:
            return self.queue_packets
        if self.bandwidth_mbit is None:
            return 0
        bdp_bytes = self.bandwidth_mbit * 1e6 / 8 * self.rtt_ms / 1e3
        return max(MIN_QUEUE_PACKETS, math.ceil(bdp_bytes / self.mtu))

    def relay_argv(self) -> list[str]:
        """The relay's link flags (its devices are added by the line that starts it)."""
        argv = [
            "--one-way-ms", repr(self.one_way_ms),
            "--jitter-ms", repr(self.jitter_ms),
            "--loss-pct", repr(self.loss_pct),
            "--mtu", str(self.mtu),
        ]  # fmt: skip
        if self.bandwidth_mbit is not None:
            argv += ["--bandwidth-mbit", repr(self.bandwidth_mbit)]
            argv += ["--queue-packets", str(self.effective_queue_packets)]
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        return argv

    def describe(self) -> str:
        """`rtt 50 ms, loss 1%, 10 Mbit/s (queue 64)`: for the figures line."""
        parts = [f"rtt {self.rtt_ms:g} ms"]
        if self.jitter_ms:
            parts.append(f"jitter {self.jitter_ms:g} ms")
        if self.loss_pct:
            parts.append(f"loss {self.loss_pct:g}%")
        if self.bandwidth_mbit is not None:
            parts.append(f"{self.bandwidth_mbit:g} Mbit/s (queue {self.effective_queue_packets})")
        if self.mtu != 1500:
            parts.append(f"mtu {self.mtu}")
        return ", ".join(parts)


def _check_range(flag: str, value: float, low: float, high: float, unit: str) -> None:
    if not (math.isfinite(value) and low <= value <= high):  # False for nan
        raise NetError(f"{flag} must be between {low:g} and {high:g} {unit}, got {value}")
