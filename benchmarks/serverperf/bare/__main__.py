"""`python -m benchmarks.serverperf.bare NAME [options]`: start one bare app, print its READY line.

The socket is bound here (port 0 by default) and announced only once it listens, exactly like
`servers.runtime`, so `benchmarks.serverperf.targets` starts a bare app and a reference server
the same way. There is no control listener: the READY line says `control=-`.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys

from benchmarks.common import print_error
from benchmarks.serverperf.bare import MODULE, parse_args


def ready_line(sock: socket.socket, name: str) -> str:
    host, port = sock.getsockname()[:2]
    return f"READY http://{host}:{port} control=- pid={os.getpid()} server=bare-{name}"


def main(argv: list[str] | None = None) -> int:
    ns, settings = parse_args(argv)
    try:
        sock = socket.create_server((ns.host, ns.port), backlog=1024)
    except OSError as exc:
        return print_error(
            f"python -m {MODULE}", f"cannot listen on {ns.host}:{ns.port}: {exc.strerror}"
        )
    module = importlib.import_module(f"benchmarks.serverperf.bare.{ns.name}_app")
    module.serve(sock, settings, ready_line(sock, ns.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
