"""`python -m servers NAME [options]`: start one reference server.

Exit status: 0 after SIGTERM or SIGINT, 2 for bad options or a port that cannot be bound.
"""

from __future__ import annotations

import importlib
import sys

from servers.options import OptionsError, ServerName, parse_args
from servers.runtime import build_runtime

# Imported lazily so that `stdlib` never loads uvloop and a bad flag fails fast.
_IMPLEMENTATIONS = {
    ServerName.STDLIB: "servers.stdlib_server",
    ServerName.AIOHTTP: "servers.aiohttp_server",
    ServerName.UVLOOP: "servers.uvloop_server",
}


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        runtime = build_runtime(options)
    except OptionsError as exc:
        sys.stderr.write(f"python -m servers: error: {exc}\n")
        return 2
    module = importlib.import_module(_IMPLEMENTATIONS[options.name])
    module.serve(runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
