"""The Chromium page client: headless Chromium through Playwright, each load in a fresh context.

    python -m benchmarks.pageload.browser --url 'https://198.18.0.2:8443/page?n=70&size=4096' \\
        --loads 3 [--spki BASE64] [--resources 70]          # one batch: argv in, JSON out
    python -m benchmarks.pageload.browser --serve [--spki BASE64]   # batches from stdin

Debian's chromium (`/usr/bin/chromium`) driven by the playwright package from PyPI; Playwright's
own browser download is never used (`executable_path`). The harness runs this process inside
the delay line's client namespace (`line.client_cmd`), so Playwright's driver and every
Chromium process live there and reach the server only through the line. Starting a browser
costs seconds, so `--serve` keeps one browser for a whole run and reads one JSON request per
stdin line (`{"url": ..., "loads": K, "resources": N}`), answering each with one
`RESULT {json}` line; the harness reads the server's counters between batches.

What Chromium is told, and why:
- HTTP/1.1 only: `--disable-http2` (ALPN offers http/1.1 alone; the servers offer nothing
  else either) and `--disable-quic`.
- The server's certificate is trusted by its public key's hash
  (`--ignore-certificate-errors-spki-list`), so Chromium treats the connection as valid (a
  certificate error would change what it does, e.g. what it caches and reuses).
- `--no-proxy-server`, no background networking, no component updates: nothing but the page
  crosses the line.

Per load (a fresh `browser.new_context()`: its own network context, so an empty connection
pool and an empty TLS session cache): Navigation Timing's `loadEventEnd` (the page-load time,
from navigation start) and the document's `responseEnd`; from the DevTools protocol's
`Network.responseReceived`, every response's `connectionId` and `connectionReused`, the
protocol (`http/1.1`) and the TLS version.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.common import OneLineParser

PROG = "python -m benchmarks.pageload.browser"
CHROMIUM = Path("/usr/bin/chromium")
RESULT_FORMAT = 1
DEFAULT_TIMEOUT_S = 60.0
# After the load event, how long to wait for the DevTools events still in flight.
EVENTS_GRACE_S = 2.0
BASE_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-first-run",
    "--no-default-browser-check", "--no-proxy-server", "--disable-quic", "--disable-http2",
    "--metrics-recording-only", "--mute-audio",
)  # fmt: skip


class BrowserError(Exception):
    """Chromium or Playwright is missing, or the browser did not start: one line, exit 2."""


@dataclass(frozen=True)
class BrowserOptions:
    chromium: Path = CHROMIUM
    spki: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S

    def launch_args(self) -> list[str]:
        args = list(BASE_ARGS)
        if self.spki:
            args.append("--ignore-certificate-errors-spki-list=" + ",".join(self.spki))
        return args


def missing() -> str:
    """Why the browser client cannot run here ("" when it can)."""
    if not CHROMIUM.exists():
        return f"no {CHROMIUM} (Debian's chromium package: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    return ""


_NAVIGATION = "JSON.stringify(performance.getEntriesByType('navigation')[0])"
_LOADED = "() => { const n = performance.getEntriesByType('navigation')[0];" \
    " return n && n.loadEventEnd > 0; }"  # fmt: skip


class Browser:
    """One Chromium for many loads; each load in a context of its own."""

    def __init__(self, options: BrowserOptions) -> None:
        from playwright.sync_api import sync_playwright

        self.options = options
        self._pw = sync_playwright().start()
        try:
            self.browser = self._pw.chromium.launch(
                executable_path=str(options.chromium),
                args=options.launch_args(),
                timeout=options.timeout_s * 1000,
            )
        except Exception as exc:
            self._pw.stop()
            raise BrowserError(f"chromium did not start: {str(exc).splitlines()[0]}") from None
        self.version = self.browser.version

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self._pw.stop()

    def load(self, url: str, resources: int | None) -> dict[str, Any]:
        """One page load in a fresh context; the figures, or {"error": ...}."""
        context = self.browser.new_context()
        responses: list[dict[str, Any]] = []
        finished: list[dict[str, Any]] = []
        try:
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.on("Network.responseReceived", lambda event: responses.append(event))
            cdp.on("Network.loadingFinished", lambda event: finished.append(event))
            cdp.send("Network.enable")
            started, cpu_before = time.monotonic(), _tree_cpu_s()
            page.goto(url, wait_until="load", timeout=self.options.timeout_s * 1000)
            page.wait_for_function(_LOADED, timeout=self.options.timeout_s * 1000)
            wall_ms = (time.monotonic() - started) * 1000
            nav = json.loads(page.evaluate(_NAVIGATION))
            expected = None if resources is None else resources + 1
            deadline = time.monotonic() + EVENTS_GRACE_S
            while expected is not None and min(len(responses), len(finished)) < expected:
                if time.monotonic() > deadline:
                    break
                page.wait_for_timeout(20)
            received = sum(int(e.get("encodedDataLength", 0)) for e in finished)
            figures = _load_figures(nav, responses, wall_ms, received)
            figures["cpu_ms"] = (_tree_cpu_s() - cpu_before) * 1000
            return figures
        except Exception as exc:  # Playwright's errors: a timeout, a refused connection
            return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        finally:
            context.close()

    def batch(self, url: str, loads: int, resources: int | None) -> dict[str, Any]:
        return {
            "format": RESULT_FORMAT,
            "client": "chromium",
            "browser_version": self.version,
            "url": url,
            "loads": [self.load(url, resources) for _ in range(loads)],
        }


def _tree_cpu_s() -> float:
    """CPU seconds of this process and all its descendants (Playwright's driver, every
    Chromium process): how much of a load was the browser's own work."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:  # exited meanwhile
            continue
        total += times.user + times.system
    return total


def _load_figures(
    nav: dict[str, Any], responses: list[dict[str, Any]], wall_ms: float, received: int
) -> dict[str, Any]:
    """The load's numbers from Navigation Timing and the responses' connection ids."""
    fetches = []
    for event in responses:
        response = event["response"]
        security = response.get("securityDetails") or {}
        fetches.append(
            {
                "url": response["url"],
                "status": response["status"],
                "connection": response.get("connectionId"),
                "reused": bool(response.get("connectionReused")),
                "protocol": response.get("protocol", ""),
                "tls_version": security.get("protocol", ""),
            }
        )
    connections = {f["connection"] for f in fetches if f["connection"] is not None}
    tls = sorted({f["tls_version"] for f in fetches if f["tls_version"]})
    return {
        "page_load_ms": nav["loadEventEnd"],
        "document_ms": nav["responseEnd"],
        "wall_ms": wall_ms,
        "connections": len(connections),
        "requests": len(fetches),
        "reused": sum(f["reused"] for f in fetches),
        "bytes_received": received,
        "protocols": sorted({f["protocol"] for f in fetches}),
        "tls_version": ",".join(tls),
        "error": "",
        "fetches": fetches,
    }


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def serve(browser: Browser) -> int:
    """`--serve`: one JSON request per stdin line, one `RESULT {json}` line per request."""
    print("READY " + json.dumps({"browser_version": browser.version}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            url, loads = str(request["url"]), int(request.get("loads", 1))
            resources = request.get("resources")
        except (ValueError, KeyError, TypeError) as exc:
            print("RESULT " + json.dumps({"error": f"bad request: {exc}"}), flush=True)
            continue
        result = browser.batch(url, loads, None if resources is None else int(resources))
        print("RESULT " + json.dumps(result), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--url", help="the page to load")
    what.add_argument("--serve", action="store_true", help="batches from stdin, JSON lines")
    p.add_argument("--loads", type=int, default=1)
    p.add_argument("--resources", type=int, default=None, help="wait for N + 1 responses")
    p.add_argument("--spki", action="append", default=[], help="trusted key hash (base64)")
    p.add_argument("--chromium", type=Path, default=CHROMIUM)
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per load, seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.loads <= 10_000:
        sys.stderr.write(f"{PROG}: error: --loads must be between 1 and 10000\n")
        return 2
    why = missing() if args.chromium == CHROMIUM else ""
    if why or not args.chromium.exists():
        sys.stderr.write(f"{PROG}: error: {why or f'no {args.chromium}'}\n")
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)  # unwind: the browser is closed, not orphaned
    try:
        browser = Browser(BrowserOptions(args.chromium, tuple(args.spki), args.timeout))
    except BrowserError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    try:
        if args.serve:
            return serve(browser)
        print(json.dumps(browser.batch(args.url, args.loads, args.resources)))
        return 0
    finally:
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
