"""Locust users that load a page the way a browser does (issue 11): many users, many pages.

    python -m locust -f locustfiles/pageload.py --host http://127.0.0.1:8080 \\
        [--kab-resources 70] [--kab-size 4096] [--kab-think-time 0] PageUser

Each user loads `/page?n=N&size=B` (or `--kab-path`, when it names another page), parses the
resource URLs out of it, then fetches them six at a time (a browser's HTTP/1.1 limit per host):
`PageUser` keeps its connections across resources and pages (FastHttpUser's pool of six),
`UnpooledPageUser` sends `Connection: close` with every request, so each one is a new
connection, still six at once. Every request is a row of Locust's statistics as usual, and each
whole page is one more, `PAGE /page load`, whose response time is the page-load time (first
byte sent to the last resource's last byte) and whose length is the page's bytes: the number
the web UI charts for a crowd of browsers.

In the harness (`python -m benchmarks run --clients locust-page`, benchmarks.clients.contract)
this file takes locustfiles/keepalive.py's flags and recorder: every HTTP request's raw time
from Locust's `request` event goes into the result's histogram, the page events into its own
(ClientResult.pages, page_latency_us), and the server's counters judge the mode.
"""

from __future__ import annotations

import re
import time
from typing import Any

import gevent.pool
from locust import FastHttpUser, events, task
from locust.env import Environment

from benchmarks.clients.contract import PAGE_CONNECTIONS, PAGE_EVENT_TYPE

# The harness's flags (--kab-output, --kab-warmup, --kab-duration, --kab-path, --kab-ca,
# --kab-insecure, --kab-think-time), its recorder and its connection count: imported as a
# module, so none of its user classes becomes one of this file's.
from locustfiles import keepalive

CONNECTIONS_PER_HOST = PAGE_CONNECTIONS
DEFAULT_PAGE_PATH = "/"  # --kab-path's default: then the page is built from N and B
_SRC = re.compile(r"<(?:img|script|link)\b[^>]*?\s(?:src|href)=\"(/[^/\"][^\"]*)\"")


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    parser.add_argument("--kab-resources", type=int, default=10, help="N, resources per page")
    parser.add_argument("--kab-size", type=int, default=4096, help="bytes per resource")


def resource_paths(html: str) -> list[str]:
    """Same-origin resource paths of a page, in document order."""
    return _SRC.findall(html)


class _PageBase(FastHttpUser):
    abstract = True
    concurrency = CONNECTIONS_PER_HOST  # FastHttpSession's pool: six connections per user
    wait_time = keepalive._think_time
    insecure = False  # https is verified: with --kab-ca, or the system store
    close_each = False

    def __init__(self, environment: Environment) -> None:
        opts = environment.parsed_options
        if opts is not None and (opts.kab_ca or opts.kab_insecure):
            # as keepalive.py's users: our context factory, and `insecure` kept in step with it
            self.ssl_context_factory = keepalive.tls_context_factory(opts.kab_ca or None)
            self.insecure = bool(opts.kab_insecure)
        super().__init__(environment)
        self._pool = gevent.pool.Pool(CONNECTIONS_PER_HOST)

    def _page_path(self) -> str:
        opts = self.environment.parsed_options
        if opts is None:
            return "/page?n=10&size=4096"
        if opts.kab_path != DEFAULT_PAGE_PATH:
            return str(opts.kab_path)
        return f"/page?n={opts.kab_resources}&size={opts.kab_size}"

    def _headers(self) -> dict[str, str]:
        return {"Connection": "close"} if self.close_each else {}

    def _get(self, path: str, name: str) -> int:
        with self.client.get(path, headers=self._headers(), name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")
                return -1
            return len(r.content or b"")

    @task
    def load_page(self) -> None:
        started = time.perf_counter()
        page = self.client.get(self._page_path(), headers=self._headers(), name="/page")
        if page.status_code != 200 or page.text is None:
            return
        sizes = list(self._pool.imap_unordered(lambda p: self._get(p, "/r/[i]"),
                                               resource_paths(page.text)))  # fmt: skip
        failed = sum(s < 0 for s in sizes)
        events.request.fire(
            request_type=PAGE_EVENT_TYPE,
            name="/page load",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=len(page.content or b"") + sum(s for s in sizes if s > 0),
            exception=RuntimeError(f"{failed} resources failed") if failed else None,
            context={},
        )


class PageUser(_PageBase):
    """A browser with keep-alive: six connections kept for every resource and page."""


class UnpooledPageUser(_PageBase):
    """A browser meeting a server without keep-alive: a new connection per request."""

    close_each = True
