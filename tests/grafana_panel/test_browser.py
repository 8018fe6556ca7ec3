"""The panel's standalone page in Debian's headless chromium against a live `whyslow serve`.

Real OTel SDK traffic (OTLP gRPC) teaches the backend a small shop, then traces with `payments` made slow are
sent; the page at /ui/?traceId=<slow trace> must rank `payments` first, agree with the REST API, and show
every other state (no trace, unknown trace, learning, not an outlier). A second backend run with
--auth-token checks the page's sign-in form (401 first, then the token, then the explanation; sign out).
Screenshots (light and dark) go to test-output/.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.serve import ServeProcess
from plugin.demo.shop_traffic import ENTRY, ShopTraffic

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "grafana_panel" / "harness-dist" / "index.html"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
NORMAL_TRACES = 150
SLOW_MS = 400.0
SLOW_SERVICE = "payments"
VIEWPORT = {"width": 1440, "height": 900}

pytestmark = pytest.mark.browser


@dataclass
class Live:
    srv: ServeProcess
    slow: list[Any]
    normal: list[Any]
    home: list[Any]

    def ui(self, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{self.srv.http_url}/ui/" + (f"?{query}" if query else "")


def _model_ready(srv: ServeProcess, entry: str) -> bool:
    status, body = srv.get("/api/v1/status")
    return status == 200 and any(m["entry"] == entry and m["state"] == "ready" for m in body["models"])


def _outlier_ids(srv: ServeProcess) -> set[str]:
    status, body = srv.get("/api/v1/outliers?limit=1000")
    return {o["trace_id"] for o in body["outliers"]} if status == 200 else set()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM} (`make system-deps` installs it)")
    if not HARNESS.exists():
        pytest.skip(f"the panel's standalone page is not built at {HARNESS} (`make panel` builds it)")
    srv = ServeProcess(tmp_path_factory.mktemp("panel") / "data", min_traces=100, window=1000,
                       refit_interval_s=3600, trace_timeout_s=0.3).start()
    traffic = ShopTraffic(srv.otlp_grpc, seed=23)
    try:
        normal = traffic.send(NORMAL_TRACES)
        home = traffic.send_home(3)
        srv.wait_for(lambda: _model_ready(srv, ENTRY), timeout=60)
        slow = traffic.send(2, slow=SLOW_SERVICE, slow_ms=SLOW_MS)
        srv.wait_for(lambda: {s.trace_id for s in slow} <= _outlier_ids(srv), timeout=90)
        yield Live(srv, slow, normal, home)
    finally:
        traffic.close()
        srv.stop()


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()


def _state(page: Any) -> str:
    page.wait_for_selector('[data-testid="whyslow-panel"]:not([data-status="loading"])', timeout=30_000)
    return page.get_attribute('[data-testid="whyslow-panel"]', "data-status")


def _luminance(css_rgb: str) -> float:
    r, g, b = (int(x) for x in re.findall(r"\d+", css_rgb)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _latency_ms(text: str) -> float:
    """Reads the panel's latency text ("842 ms", "1.24 s") back as ms."""
    m = re.fullmatch(r"([\d,.]+) (ms|s)", text.strip())
    assert m, text
    value = float(m.group(1).replace(",", ""))
    return value * 1000 if m.group(2) == "s" else value


SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")


def _rarity(text: str) -> float:
    """Reads "1 in 10,900 requests", "1 in 2.5 × 10¹⁵ requests" or "1 in 10³⁰⁴ requests" back as a number."""
    m = re.fullmatch(r"1 in (?:([\d,.]+)|(?:([\d.]+) × )?10([⁰¹²³⁴⁵⁶⁷⁸⁹]+)) requests", text.strip())
    assert m, text
    if m.group(1):
        return float(m.group(1).replace(",", ""))
    return float(m.group(2) or 1.0) * 10.0 ** int(m.group(3).translate(SUPERSCRIPT))


@pytest.mark.parametrize(("theme", "intervals"), [("light", 0), ("dark", 20)])
def test_slow_service_is_the_first_bar(live: Live, page: Any, theme: str, intervals: int, test_output_dir: Path) -> None:
    sent = live.slow[1 if intervals else 0]  # a stored explanation with intervals is reused by later queries
    params = {"traceId": sent.trace_id, "theme": theme} | ({"intervals": str(intervals)} if intervals else {})
    page.goto(live.ui(**params))
    assert _state(page) == "ok", page.inner_text("body")
    bars = page.locator('[data-testid="whyslow-bar"]')
    assert bars.count() >= 2
    assert bars.first.get_attribute("data-rank") == "1"
    assert bars.first.get_attribute("data-service") == SLOW_SERVICE, [
        bars.nth(i).get_attribute("data-node") for i in range(bars.count())
    ]

    # the page shows what the REST API computed for the same trace, in the same order
    status, expl = live.srv.get(f"/api/v1/traces/{sent.trace_id}/rca?intervals={intervals}")
    assert status == 200, expl
    shown = [bars.nth(i).get_attribute("data-node") for i in range(bars.count())]
    assert shown == [c["node"] for c in expl["contributions"]][: len(shown)]
    for i, c in enumerate(expl["contributions"][: len(shown)]):
        assert float(bars.nth(i).get_attribute("data-contribution")) == pytest.approx(c["contribution"], abs=1e-9)
    whiskers = page.locator('[data-testid="whyslow-whisker"]')
    if intervals:
        # one whisker per bar, spanning the bootstrap interval the backend computed for that node
        assert whiskers.count() == len(shown)
        for i, c in enumerate(expl["contributions"][: len(shown)]):
            whisker = bars.nth(i).locator('[data-testid="whyslow-whisker"]')
            assert float(whisker.get_attribute("data-lo")) == pytest.approx(c["contribution_lo"], abs=1e-9)
            assert float(whisker.get_attribute("data-hi")) == pytest.approx(c["contribution_hi"], abs=1e-9)
    else:
        assert whiskers.count() == 0
    assert page.inner_text('[data-testid="whyslow-entry"]').replace("\n", " ").strip() == ENTRY.replace(":", " ", 1)
    # the latency shown is the root span's duration that was sent (to the panel's rounding)
    assert _latency_ms(page.inner_text('[data-testid="whyslow-latency"]')) == pytest.approx(sent.latency_ms, abs=0.51)
    assert "would have taken" in bars.first.inner_text()
    assert _rarity(page.inner_text('[data-testid="whyslow-rarity"]')) == pytest.approx(expl["rarer_than"], rel=0.06)
    graph_nodes = page.locator('[data-testid="whyslow-graph-node"]')
    assert graph_nodes.count() >= len(shown)
    assert page.locator(f'[data-testid="whyslow-graph-node"][data-node="{ENTRY}"]').count() == 1

    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (_luminance(background) > 200) == (theme == "light"), background
    page.screenshot(path=str(test_output_dir / f"panel-{theme}.png"), full_page=True)
    assert page.errors == []


def test_states(live: Live, page: Any, test_output_dir: Path) -> None:
    page.goto(live.ui(theme="dark"))
    assert _state(page) == "no_trace"

    page.goto(live.ui(traceId="ab" * 16))
    assert _state(page) == "unknown_trace"

    page.goto(live.ui(traceId=live.home[0].trace_id))
    assert _state(page) == "learning"
    assert "Still learning" in page.inner_text('[data-testid="whyslow-state"]')

    median = statistics.median(s.latency_ms for s in live.normal)
    typical = min(live.normal, key=lambda s: abs(s.latency_ms - median))
    page.goto(live.ui(traceId=typical.trace_id, theme="light"))
    assert _state(page) == "not_outlier"
    assert "Not an outlier" in page.inner_text('[data-testid="whyslow-state"]')
    page.screenshot(path=str(test_output_dir / "panel-not-outlier-light.png"))

    page.goto(live.ui(traceId="not-a-trace-id"))
    assert _state(page) == "error"
    assert page.errors == []


def test_outlier_list_opens_a_slow_trace(live: Live, page: Any) -> None:
    page.goto(live.ui())
    items = page.locator('[data-testid="outlier-item"]')
    items.first.wait_for(timeout=30_000)
    listed = {items.nth(i).get_attribute("data-trace-id") for i in range(items.count())}
    assert {s.trace_id for s in live.slow} <= listed
    target = live.slow[1].trace_id
    page.click(f'[data-testid="outlier-item"][data-trace-id="{target}"]')
    assert _state(page) == "ok"
    assert f"traceId={target}" in page.url
    assert page.locator('[data-testid="whyslow-bar"]').first.get_attribute("data-service") == SLOW_SERVICE
    assert page.errors == []


def test_narrow_panel_and_linked_highlight(live: Live, browser: Any, test_output_dir: Path) -> None:
    """A phone-sized window: bars then graph stacked, still readable; hovering a bar lights its graph node."""
    context = browser.new_context(viewport={"width": 760, "height": 1100})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(live.ui(traceId=live.slow[0].trace_id, theme="dark"))
        assert _state(page) == "ok"
        first = page.locator('[data-testid="whyslow-bar"]').first
        assert first.get_attribute("data-service") == SLOW_SERVICE
        graph = page.locator('[data-testid="whyslow-graph"]')
        assert graph.bounding_box()["y"] > page.locator('[data-testid="whyslow-bars"]').bounding_box()["y"]
        first.hover()
        node = page.locator(f'[data-testid="whyslow-graph-node"][data-node="{first.get_attribute("data-node")}"]')
        assert node.get_attribute("data-highlighted") == "true"
        page.screenshot(path=str(test_output_dir / "panel-narrow-dark.png"), full_page=True)
        assert errors == []
    finally:
        context.close()


AUTH_TOKEN = "panel-test-token-91c2e"


@pytest.fixture(scope="module")
def live_auth(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Live]:
    """A second backend started with --auth-token (a smaller shop: 80 normal traces, 2 slow)."""
    srv = ServeProcess(tmp_path_factory.mktemp("panel-auth") / "data", auth_token=AUTH_TOKEN, min_traces=60,
                       window=1000, refit_interval_s=3600, trace_timeout_s=0.3).start()
    traffic = ShopTraffic(srv.otlp_grpc, seed=31, headers={"authorization": f"Bearer {AUTH_TOKEN}"})
    try:
        normal = traffic.send(80)
        srv.wait_for(lambda: _model_ready(srv, ENTRY), timeout=60)
        slow = traffic.send(2, slow=SLOW_SERVICE, slow_ms=SLOW_MS)
        srv.wait_for(lambda: {s.trace_id for s in slow} <= _outlier_ids(srv), timeout=90)
        yield Live(srv, slow, normal, [])
    finally:
        traffic.close()
        srv.stop()


def test_auth_token_sign_in_and_out(live_auth: Live, page: Any) -> None:
    """With --auth-token the page first shows the sign-in form (the backend answered 401), then, with the
    token entered, the slowed service is the first bar; the token stays out of the URL, lives in
    sessionStorage, goes on every /query, and sign out forgets it."""
    sent_auth: list[str | None] = []
    page.on("request", lambda req: sent_auth.append(req.headers.get("authorization"))
            if req.url.endswith("/query") else None)
    page.goto(live_auth.ui(traceId=live_auth.slow[0].trace_id, theme="dark"))
    form = page.locator('[data-testid="auth-form"]')
    form.wait_for(timeout=30_000)
    assert page.get_attribute('[data-testid="auth-token"]', "type") == "password"
    assert _state(page) == "error"
    assert sent_auth and all(a is None for a in sent_auth)

    page.fill('[data-testid="auth-token"]', AUTH_TOKEN)
    page.click('[data-testid="auth-submit"]')
    page.wait_for_selector('[data-testid="whyslow-bar"]', timeout=30_000)
    assert _state(page) == "ok"
    assert page.locator('[data-testid="whyslow-bar"]').first.get_attribute("data-service") == SLOW_SERVICE
    assert form.count() == 0
    assert AUTH_TOKEN not in page.url
    assert page.evaluate("() => Object.values(sessionStorage)") == [AUTH_TOKEN]
    assert page.evaluate("() => Object.values(localStorage)") == []
    assert f"Bearer {AUTH_TOKEN}" in sent_auth
    page.wait_for_selector(f'[data-testid="outlier-item"][data-trace-id="{live_auth.slow[0].trace_id}"]',
                           timeout=30_000)

    page.reload()  # same tab: still signed in
    page.wait_for_selector('[data-testid="whyslow-bar"]', timeout=30_000)
    assert page.locator('[data-testid="auth-form"]').count() == 0

    page.click('[data-testid="sign-out"]')
    page.locator('[data-testid="auth-form"]').wait_for(timeout=30_000)
    assert page.evaluate("() => Object.values(sessionStorage)") == []
    assert not page.errors  # type: ignore[attr-defined]
