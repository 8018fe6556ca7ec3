"""The panel's regression view in Debian's headless chromium against a live `whyslow serve`: normal OTLP traffic
40 minutes ago, then cart +25 ms on every request in the last minutes; /ui/?view=regression for the last 10
minutes (baseline: the hour before) must show cart first with the change the REST API reports."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, HARNESS, VIEWPORT
from tests.support.serve import ServeProcess
from plugin.demo.shop_traffic import ENTRY, ShopTraffic

SLOW_MS = 25.0
TRACES = 200

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM} (`make system-deps` installs it)")
    if not HARNESS.exists():
        pytest.skip(f"the panel's standalone page is not built at {HARNESS} (`make panel` builds it)")
    server = ServeProcess(tmp_path_factory.mktemp("panel-regression") / "data", min_traces=5000, window=5000,
                          trace_timeout_s=0.3).start()
    traffic = ShopTraffic(server.otlp_grpc, seed=31)
    try:
        now = time.time_ns()
        traffic.send(TRACES, start=now - 40 * 60 * 10**9, spacing_ms=100)
        traffic.send(TRACES, slow="cart", slow_ms=SLOW_MS, start=now - 5 * 60 * 10**9, spacing_ms=100)
        server.wait_for(lambda: server.get("/api/v1/graph?entry=" + quote(ENTRY))[1].get("traces", 0) >= 2 * TRACES,
                        timeout=90)
        yield server
    finally:
        traffic.close()
        server.stop()


@pytest.fixture(scope="module")
def page(srv: ServeProcess) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(viewport=VIEWPORT)
            pg = context.new_page()
            pg.errors = []  # type: ignore[attr-defined]
            pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
            yield pg
        finally:
            chromium.close()


def _ms(text: str) -> float:
    m = re.search(r"([+−-])([\d.,]+) (ms|s)", text)
    assert m, text
    value = float(m.group(2).replace(",", "")) * (1000.0 if m.group(3) == "s" else 1.0)
    return -value if m.group(1) in "−-" else value


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_regression_view_names_cart_with_its_change(srv, page, theme, test_output_dir):
    query = {"view": "regression", "entry": ENTRY, "stat": "mean", "from": "now-10m", "to": "now", "theme": theme}
    page.goto(f"{srv.http_url}/ui/?{urlencode(query)}")
    page.wait_for_selector('[data-testid="whyslow-regression"]', timeout=30_000)
    assert page.get_attribute('[data-testid="whyslow-panel"]', "data-status") == "regression"
    assert page.get_attribute('[data-testid="whyslow-regression"]', "data-status") == "changed"
    rows = page.query_selector_all('[data-testid="whyslow-regression-row"]')
    assert rows and rows[0].get_attribute("data-service") == "cart"
    shown = _ms(rows[0].query_selector('[data-testid="whyslow-regression-value"]').inner_text())
    api = srv.get("/api/v1/regression?" + urlencode({"entry": ENTRY, "stat": "mean", "from": "now-10m"}))[1]
    assert api["contributions"][0]["service"] == "cart"
    assert shown == pytest.approx(api["contributions"][0]["contribution"], abs=0.06)  # shown to 0.1 ms
    assert shown == pytest.approx(SLOW_MS, abs=1.5)
    observed = _ms(page.inner_text('[data-testid="whyslow-regression-observed"]'))
    assert observed == pytest.approx(api["observed_change"], abs=0.06)
    assert "had this not changed" in rows[0].inner_text()
    assert "hour before" in page.inner_text('[data-testid="whyslow-regression"]')
    assert page.inner_text("body").count("Why did latency change?") == 1
    assert not page.errors  # type: ignore[attr-defined]
    page.screenshot(path=str(test_output_dir / f"panel-regression-{theme}.png"), full_page=True)


def test_regression_view_without_data_says_why(srv, page):
    query = {"view": "regression", "entry": ENTRY, "from": "2020-01-01T00:00:00Z", "to": "2020-01-01T00:15:00Z"}
    page.goto(f"{srv.http_url}/ui/?{urlencode(query)}")
    page.wait_for_selector('[data-testid="whyslow-regression"][data-status="error"]', timeout=30_000)
    assert "holds 0 complete traces" in page.inner_text('[data-testid="whyslow-regression"]')
