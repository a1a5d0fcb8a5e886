"""nginx's configuration for `python -m servers nginx`: the reference endpoints, as far as nginx
can serve them, under one worker and the keep-alive settings of `ServerOptions`.

Pure text generation (unit-tested); `servers.nginx_server` runs it. What each endpoint becomes:

    GET /             `return 200` with the reference body
    GET /bytes/N      a static file of N bytes, for N in `BYTES_SIZES` (nginx cannot make a body of
                      any length); other sizes 404, a size that is not 1-9 digits 400
    GET /sleep?ms=X   proxied to a delay upstream in the wrapper (nginx cannot wait by itself)
    GET /peer         `return 200` of JSON built from $remote_addr, $remote_port, $connection and
                      $connection_requests (nginx's own connection serial and request count)
    GET /status/N     one `location = /status/N { return N ""; }` per N in 200-599
    GET /close        `keepalive_timeout 0` in that location: nginx closes after the response
    POST              `return` answers any method; POST to a file is turned from 405 into the file
    other paths       404, connection kept

The access log has one tab-separated line per request that reached a location (`LOG_FIELDS`),
so the wrapper counts requests exactly, echoes `--log-connections` lines, and sees nginx's
$connections_active at every response (the peak of open connections).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from servers.endpoints import HELLO, TEXT

# No "unlimited" in nginx: large enough for any run.
UNLIMITED_REQUESTS = 1_000_000_000
# /bytes/N is served from files: every size up to 128 and the common larger ones (2.3 MiB).
BYTES_SIZES = (
    *range(129),
    256, 512, 1000, 1024, 2048, 4096, 5000, 8192, 10000, 16384, 32768, 65536, 100000, 131072,
    262144, 524288, 1000000, 1048576,
)  # fmt: skip
# $connections_active first and $kab_last last: the wrapper counts lines, `\t1\n` endings and
# leading numbers in C (bytes.count, re.findall) and parses whole lines only to echo them.
LOG_FIELDS = (
    "$connections_active",
    "$connection",
    "$connection_requests",
    "$remote_port",
    "$request",  # the request line as received: error_page redirects change $request_method
    "$http_connection",
    "$kab_tls",
    "$kab_last",
)
# $kab_tls on a connection's first request: R (its handshake resumed a session), F (full);
# `-` otherwise, and on plain HTTP. The wrapper counts `\tR\t` and `\tF\t` (escape=default
# turns a tab inside a field into \x09, so those appear only as this field).
KAB_TLS_MAP = (
    'map "$connection_requests$ssl_session_reused" $kab_tls { default "-"; "1r" R; "1." F; }'
)
STATUS_SOCKET = "status.sock"
ACCESS_LOG = "access.log"
PID_FILE = "nginx.pid"
FILES_DIR = "files"
_TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass(frozen=True)
class NginxSpec:
    """Everything the configuration depends on, validated by ServerOptions before it gets here."""

    prefix: Path
    listen: str  # `127.0.0.1:4311` or `[::1]:4311`: the inherited socket's address
    keepalive_timeout_s: float
    keepalive_max: int
    header_timeout_s: float
    delay_upstream: str  # `127.0.0.1:PORT` of the wrapper's /sleep server
    cert: Path | None = None
    key: Path | None = None
    tls_protocols: str = "TLSv1.2 TLSv1.3"  # ssl_protocols: --tls-version pins one


def quoted(text: str, *, variables: bool = False) -> str:
    """A double-quoted nginx string. nginx expands `$name` inside quotes and has no escape for
    `$`, so literal text must not contain one (`variables=True` is for templates)."""
    if not variables and "$" in text:
        raise ValueError(f"nginx cannot quote a literal $: {text!r}")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


def milliseconds(seconds: float) -> str:
    """nginx time in ms (it has no fractional seconds); at least 1 ms for a positive time."""
    return f"{max(1, round(seconds * 1000))}ms"


def keepalive_directive(timeout_s: float) -> str:
    """`keepalive_timeout 1700ms 1;`: the second value makes nginx send `Keep-Alive: timeout=1`,
    whole seconds rounded down like ours (0 sends none); T = 0 turns keep-alive off."""
    if timeout_s <= 0:
        return "keepalive_timeout 0;"
    return f"keepalive_timeout {milliseconds(timeout_s)} {math.floor(timeout_s)};"


def log_format() -> str:
    return f"log_format kab escape=default {quoted(chr(9).join(LOG_FIELDS), variables=True)};"


def _peer_body() -> str:
    return (
        '\'{"client_host": "$remote_addr", "client_port": $remote_port, '
        '"connection_id": $connection, "request_number": $connection_requests}\''
    )


def _status_locations() -> str:
    return "\n".join(
        f'        location = /status/{code} {{ return {code} ""; }}' for code in range(200, 600)
    )


def _tls_lines(spec: NginxSpec) -> str:
    if spec.cert is None or spec.key is None:
        return ""
    # A shared session cache for TLS 1.2 session IDs (nginx's default is none); tickets (1.2's
    # and 1.3's) are on by default, with a key per start.
    return (
        f"        ssl_certificate {spec.cert};\n        ssl_certificate_key {spec.key};\n"
        f"        ssl_protocols {spec.tls_protocols};\n"
        "        ssl_session_cache shared:kab:1m;\n"
    )


def nginx_config(spec: NginxSpec) -> str:
    """The whole nginx.conf: `daemon off`, one worker, everything under `spec.prefix`."""
    p = spec.prefix
    requests = spec.keepalive_max or UNLIMITED_REQUESTS
    temp_paths = "\n".join(f"    {kind}_temp_path {p / kind};" for kind in _TEMP_KINDS)
    ssl = " ssl" if spec.cert is not None else ""
    hello, closing = quoted(HELLO.decode()), quoted("closing\n")
    bad, not_found = quoted("bad request\n"), quoted("not found\n")
    return f"""daemon off;
worker_processes 1;
pid {p / PID_FILE};
error_log /dev/stderr warn;
events {{ worker_connections 4096; }}
http {{
{temp_paths}
    {log_format()}
    map $connection_requests $kab_last {{ default 0; "{requests}" 1; }}
    {KAB_TLS_MAP}
    server {{
        listen unix:{p / STATUS_SOCKET};
        access_log off;
        keepalive_timeout 86400s;
        keepalive_requests {UNLIMITED_REQUESTS};
        location = /status {{ stub_status; }}
    }}
    server {{
        listen {spec.listen}{ssl} backlog=1024;
{_tls_lines(spec)}        server_name _;
        {keepalive_directive(spec.keepalive_timeout_s)}
        keepalive_requests {requests};
        client_header_timeout {milliseconds(spec.header_timeout_s)};
        set $kab_dispatched 1;
        access_log {p / ACCESS_LOG} kab if=$kab_dispatched;
        default_type {quoted(TEXT)};
        location = / {{ return 200 {hello}; }}
        location = /peer {{
            default_type application/json;
            return 200 {_peer_body()};
        }}
        location = /close {{
            keepalive_timeout 0;
            return 200 {closing};
        }}
        location = /sleep {{ proxy_pass http://{spec.delay_upstream}; }}
        location /bytes/ {{
            root {p / FILES_DIR};
            default_type application/octet-stream;
            error_page 404 = @notfound;
            error_page 405 =200 $uri;
        }}
        location ~ "^/bytes/(?!\\d{{1,9}}$)" {{ return 400 {bad}; }}
{_status_locations()}
        location @notfound {{ return 404 {not_found}; }}
        location / {{ return 404 {not_found}; }}
    }}
}}
"""


def write_bytes_files(prefix: Path) -> None:
    """files/bytes/N for every N in BYTES_SIZES, world-readable (the worker is unprivileged)."""
    folder = prefix / FILES_DIR / "bytes"
    folder.mkdir(parents=True)
    for directory in (prefix / FILES_DIR, folder):
        directory.chmod(0o755)
    for size in BYTES_SIZES:
        path = folder / str(size)
        path.write_bytes(b"x" * size)
        path.chmod(0o644)


@dataclass(frozen=True)
class LogLine:
    """One access log line (LOG_FIELDS), as the wrapper needs it."""

    active: int  # $connections_active when the response was done (our status connection too)
    connection_id: int
    request_number: int
    client_port: int
    method: str
    target: str
    connection: str  # the request's Connection header, "-" when absent
    last: bool  # the keepalive_requests-th response on its connection

    def log_connections_line(self) -> str:
        """The reference servers' `--log-connections` line for this request."""
        return (
            f"port={self.client_port} conn={self.connection_id} req={self.request_number} "
            f"{self.method} {self.target} connection={self.connection or '-'}"
        )


def parse_log_line(line: str) -> LogLine | None:
    """A LogLine, or None for a line that is not ours (nginx never writes one, but be safe)."""
    fields = line.split("\t")
    if len(fields) != len(LOG_FIELDS):
        return None
    method, _, rest = fields[4].partition(" ")
    target = rest.rpartition(" ")[0] if " " in rest else rest
    try:
        return LogLine(
            active=int(fields[0]),
            connection_id=int(fields[1]),
            request_number=int(fields[2]),
            client_port=int(fields[3]) if fields[3].isdigit() else 0,
            method=method,
            target=target,
            connection=fields[5],
            last=fields[7] == "1",
        )
    except ValueError:
        return None
