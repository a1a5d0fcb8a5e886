"""`python -m servers node`: Node's own http server behind the reference servers' interface.

Python validates the options (one line and exit 2 for bad ones, a busy port, or no node: `apt-get
install nodejs`), binds the listening socket (port 0 works: Node listens on the inherited fd),
writes a generated TLS certificate if asked, then *execs* node with servers/node/server.mjs. So the
process the harness started is node itself: the pid in READY and /counters, the CPU measured and
the SIGTERM sent are node's, and nothing else is left to outlive it.

The script sets `keepAliveTimeout` = T, `maxRequestsPerSocket` = N and `headersTimeout` = H (see
its header for what differs from the reference servers), serves the same endpoints, prints the
same READY line and serves `/counters` from its own second port, with the reference counter
names; close reasons it cannot know (Node's header timeout, errors) are absent.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from servers.external import make_workdir, require_binary, sweep_stale, tls_files
from servers.options import OptionsError, ServerName, ServerOptions
from servers.runtime import bind_listener

SCRIPT = Path(__file__).resolve().parent / "node" / "server.mjs"
KIND = "node"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def node_config(options: ServerOptions, fd: int, host: str, port: int) -> dict[str, object]:
    """The JSON the script reads: every value already validated and in Node's units."""
    scheme = "https" if options.tls else "http"
    return {
        "fd": fd,
        "host": host,
        "urlHost": _url_host(host),
        "url": f"{scheme}://{_url_host(host)}:{port}",
        "keepAliveTimeoutMs": round(options.keepalive_timeout_s * 1000),
        "maxRequests": options.keepalive_max,
        "headersTimeoutMs": max(1, round(options.effective_header_timeout_s * 1000)),
        "logConnections": options.log_connections,
    }


def main(options: ServerOptions) -> int:
    """Exec node; returns only by raising OptionsError (before the exec)."""
    if options.control_socket is not None:
        raise OptionsError(
            "node serves /counters on a TCP port only: --control-socket is not supported"
        )
    binary = require_binary(ServerName.NODE)
    sweep_stale(KIND)
    listener = bind_listener(options)
    host, port = listener.getsockname()[:2]
    config = node_config(options, listener.fileno(), host, port)
    if options.tls:
        workdir = make_workdir(KIND)  # node removes it on exit, the next start after a crash
        try:
            tls = tls_files(options, workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        assert tls is not None
        config.update(
            tls={
                "cert": str(tls.cert),
                "key": str(tls.key),
                # --tls-version as Node's minVersion/maxVersion; null: Node's defaults (1.2-1.3)
                "version": f"TLSv{options.tls_version}" if options.tls_version else None,
            },  # fmt: skip
            ca=str(tls.ca) if tls.ca else None,
            workdir=str(workdir),
        )
    os.set_inheritable(listener.fileno(), True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, [binary, str(SCRIPT), json.dumps(config)])
    return 2  # unreachable
