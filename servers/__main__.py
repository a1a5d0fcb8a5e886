"""`python -m servers NAME [options]`: start one reference server, or nginx or Node behind the
same interface (servers/nginx_server.py, servers/node_server.py).

Exit status: 0 after SIGTERM or SIGINT, 2 for bad options, a port that cannot be bound or a
binary that is not installed, 1 when nginx exits by itself.
"""

from __future__ import annotations

import importlib
import sys

from servers.options import EXTERNAL_SERVERS, OptionsError, ServerName, parse_args
from servers.runtime import build_runtime

# Imported lazily so that `stdlib` never loads uvloop and a bad flag fails fast.
_IMPLEMENTATIONS = {
    ServerName.STDLIB: "servers.stdlib_server",
    ServerName.AIOHTTP: "servers.aiohttp_server",
    ServerName.UVLOOP: "servers.uvloop_server",
    # Third-party servers behind the same interface: `main(options) -> exit status`.
    ServerName.NGINX: "servers.nginx_server",
    ServerName.NODE: "servers.node_server",
}


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    module = importlib.import_module(_IMPLEMENTATIONS[options.name])
    try:
        if options.name in EXTERNAL_SERVERS:
            return int(module.main(options))
        runtime = build_runtime(options)
    except OptionsError as exc:
        return _error(exc)
    module.serve(runtime)
    return 0


def _error(exc: OptionsError) -> int:
    sys.stderr.write(f"python -m servers: error: {exc}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
