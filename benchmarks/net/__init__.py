"""A real network on one machine: namespaces joined by a user-space delay line (issue 10).

The kernel here has no netem, so `tc` cannot add delay; it has TUN devices and network
namespaces. `DelayLine` puts a server and one or more clients in namespaces of their own whose
only route is a TUN device, and a relay process forwards every packet between the devices after
the one-way delay: handshakes, FIN/RST and TLS records are all delayed, and the kernel's own
TCP (slow start, delayed ACKs, retransmits, Nagle) runs as on a real path.
"""

from benchmarks.net.line import DelayLine, Endpoint, LinkStats
from benchmarks.net.netns import NetError
from benchmarks.net.spec import LinkSpec

__all__ = ["DelayLine", "Endpoint", "LinkSpec", "LinkStats", "NetError"]
