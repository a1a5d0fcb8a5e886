"""The keep-alive lab in a real headless browser (issue 5): `make test-browser`.

Not collected by `make test` (testpaths is tests/): it needs Debian's chromium and the
playwright Python package, which `make test-browser` installs. Playwright drives the system
chromium (`executable_path`); its own browser download (`playwright install`) is never used.

The test does what a person does: open the web UI, pick PooledUser in the class picker, set
users, spawn rate and a think time (a negative one first: the form must show why it is
refused), press Start, see Locust count requests, then open the Server side tab and watch its
numbers move, and the charts page draw them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.test_ui import Lab, lab_process

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
TIMEOUT_MS = 20_000
REFUSED_THINK_TIME = "Kab Think Time must be a number of seconds >= 0, got '-1'"

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - explained by the fixture
    sync_playwright = None  # type: ignore[assignment]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None or not CHROMIUM.exists():
        pytest.fail("needs /usr/bin/chromium and playwright: run `make test-browser`")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    # Keep-alive timeout 1 s, think time 0.2 s: pooled users keep their connections.
    with lab_process(tmp_path / "lab.log", "--keepalive-timeout", "1") as started:
        yield started


def _cell(page: Page, metric: str, column: int) -> str:
    """A cell of the Server side tab's table, by its metric's row; column 1 = now, 2 = total."""
    row = page.get_by_role("row").filter(has=page.get_by_text(metric, exact=True))
    return row.get_by_role("cell").nth(column).inner_text().strip()


def _wait_until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {check}"
        time.sleep(0.5)


def _number(text: str) -> float:
    return float(text) if re.fullmatch(r"[0-9.]+", text) else 0.0


def _start_pooled_test(page: Page) -> None:
    """The start form: PooledUser only, 3 users at 3/s, think time 0.2 s (after a refused -1)."""
    page.get_by_role("button", name=re.compile("start", re.I)).wait_for(timeout=TIMEOUT_MS)
    picker = page.get_by_role("row")
    for name in ("PooledRequestsUser", "UnpooledRequestsUser", "UnpooledUser"):
        picker.filter(has=page.get_by_text(name, exact=True)).get_by_role("checkbox").uncheck()
    pooled = picker.filter(has=page.get_by_text("PooledUser", exact=True)).get_by_role("checkbox")
    expect(pooled).to_be_checked()
    page.locator("input[name=userCount]").fill("3")
    page.locator("input[name=spawnRate]").fill("3")
    page.get_by_text("Custom parameters").click()
    think_time = page.locator("input[name=kabThinkTime]")
    start = page.get_by_role("button", name=re.compile("^start$", re.I))
    think_time.fill("-1")
    start.click()  # refused by the lab's /swarm guard, and the form says why
    expect(page.get_by_text(REFUSED_THINK_TIME)).to_be_visible()
    think_time.fill("0.2")
    start.click()


def test_start_from_the_ui_and_watch_the_server_side(
    browser: Browser, lab: Lab, tmp_path: Path
) -> None:
    _proc, banner = lab
    web = banner["web"][1]
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(web)
    expect(page.get_by_text("User Classes")).to_be_visible()

    _start_pooled_test(page)
    expect(page.get_by_role("tab", name="Statistics")).to_be_visible()
    aggregated = page.get_by_role("row").filter(has=page.get_by_text("Aggregated", exact=True))
    expect(aggregated).to_be_visible()  # Locust itself counts the UI-started test's requests

    page.get_by_role("tab", name="Server side").click()
    _wait_until(lambda: _number(_cell(page, "Requests /s (server)", 2)) > 0)
    first = _number(_cell(page, "Requests /s (server)", 2))
    _wait_until(lambda: _number(_cell(page, "Requests /s (server)", 2)) > first)
    # Pooled users reuse their connections: far more requests than connections.
    assert _number(_cell(page, "Requests per new connection", 2)) > 2
    # Only PooledUser was picked: no unpooled user sent Connection: close.
    assert _cell(page, "Closed by client_requested /s", 2) == "0"
    assert int(_cell(page, "Connections opened /s", 2)) <= 6  # 3 users, a few reconnects at most
    # The think time typed into Custom parameters reached the users: 3 x 1/0.2 s, not thousands.
    assert _number(_cell(page, "Requests /s (server)", 1)) < 100
    page.screenshot(path=str(tmp_path / "server-side-tab.png"))

    charts = browser.new_page()
    charts.goto(web + "/kab/server")
    expect(charts.locator("#chart-conn polyline").first).to_be_attached()
    expect(charts.locator("#rows tbody tr").first).to_be_visible()
    charts.screenshot(path=str(tmp_path / "charts.png"), full_page=True)
    charts.close()

    page.get_by_role("button", name=re.compile("^stop$", re.I)).click()
    expect(page.get_by_text(re.compile("STOPPED", re.I)).first).to_be_visible()
    page.close()
