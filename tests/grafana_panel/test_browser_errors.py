"""The panel's "why did this request fail?" view in Debian's headless chromium against a live `whyslow serve`.

Real OTel SDK traffic teaches the backend the shop; then requests fail in `payments` (Status(ERROR) and an
exception event, propagated by the frontend) and others hit the same error but the frontend retries and
succeeds. The page at /ui/?traceId=<failed trace> must name payments first, agree with the REST API, draw the
propagation path (payments -> its call -> the frontend) on the causal graph, and show a handled error apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plugin.demo.shop_traffic import ENTRY, ShopTraffic
from tests.support.serve import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "grafana_panel" / "harness-dist" / "index.html"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
ORIGIN = "payments:POST /pay"
CALL = "net:payments:POST /pay"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, list, list]]:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM} (`make system-deps` installs it)")
    if not HARNESS.exists():
        pytest.skip(f"the panel's standalone page is not built at {HARNESS} (`make panel` builds it)")
    # 150 clean traces make a first failure about 1 in 300 rare: threshold 5 nats (1 in 150) flags it
    srv = ServeProcess(tmp_path_factory.mktemp("panel-errors") / "data", min_traces=100, threshold=5.0,
                       trace_timeout_s=0.3).start()
    shop = ShopTraffic(srv.otlp_grpc, seed=29)
    try:
        shop.send(150)
        srv.wait_for(lambda: any(m["state"] == "ready" for m in srv.get("/api/v1/status")[1]["models"]), timeout=90)
        failed = shop.send(2, fail="payments")
        handled = shop.send(1, fail="payments", handled=True)
        # a request failing in cart after payments retried a failed database query (a handled error)
        failed += shop.send(1, fail="cart", db_retry=True)
        srv.wait_for(lambda: {s.trace_id for s in failed} <= {
            o["trace_id"] for o in srv.get("/api/v1/outliers?kind=error&limit=1000")[1]["outliers"]}, timeout=90)
        yield srv, failed, handled
    finally:
        shop.close()
        srv.stop()


@pytest.fixture(scope="module")
def page(served: Any) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = chromium.new_context(viewport={"width": 1440, "height": 900})
        pg = context.new_page()
        pg.errors = []  # type: ignore[attr-defined]
        pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
        try:
            yield pg
        finally:
            chromium.close()


def _open(page: Any, srv: ServeProcess, trace_id: str, **extra: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"traceId": trace_id, **extra}.items())
    page.goto(f"{srv.http_url}/ui/?{query}")
    page.wait_for_selector('[data-testid="whyslow-panel"]:not([data-status="loading"])', timeout=30_000)
    return page.get_attribute('[data-testid="whyslow-panel"]', "data-status")


def test_failed_request_names_the_originating_service_and_draws_the_propagation(served, page, test_output_dir):
    srv, failed, _ = served
    trace_id = failed[0].trace_id
    assert _open(page, srv, trace_id) == "ok", page.inner_text("body")
    view = page.locator('[data-testid="whyslow-failure"]')
    assert "why did this request fail?" in view.inner_text().lower()
    assert "Passed the error on: the call to payments POST /pay, frontend GET /checkout" in view.inner_text()
    origins = page.locator('[data-testid="whyslow-failure-origin"]')
    assert origins.count() >= 1 and origins.first.get_attribute("data-service") == "payments"
    assert "payments" in page.inner_text('[data-testid="whyslow-failure-verdict"]')
    # the page shows the REST answer for the same trace
    status, expl = srv.get(f"/api/v1/traces/{trace_id}/rca?kind=error")
    assert status == 200 and expl["contributions"][0]["node"] == origins.first.get_attribute("data-node")
    bars = page.locator('[data-testid="whyslow-bar"]')
    assert bars.first.get_attribute("data-service") == "payments"
    # propagation path: payments -> the frontend's call to it -> the frontend, every one of them failed
    failed_nodes = {n.get_attribute("data-node") for n in page.locator('[data-testid="whyslow-graph-node"][data-failed]').all()}
    assert {ORIGIN, CALL, ENTRY} <= failed_nodes
    assert "cart:GET /cart" not in failed_nodes
    assert page.locator('[data-testid="whyslow-graph-edge"][data-propagation]').count() >= 2
    assert page.locator('[data-testid="whyslow-graph-node"][data-handled]').count() == 0
    page.screenshot(path=str(test_output_dir / "panel-error.png"), full_page=True)
    assert page.errors == []


def test_handled_error_in_a_failed_request_is_shown_apart(served, page, test_output_dir):
    srv, failed, _ = served
    trace_id = failed[-1].trace_id
    assert _open(page, srv, trace_id) == "ok", page.inner_text("body")
    status, expl = srv.get(f"/api/v1/traces/{trace_id}/rca?kind=error")
    rows = {c["node"]: c for c in expl["contributions"]}
    db = next(n for n in rows if n.startswith("postgresql:"))
    assert rows[db]["failed"] and rows[db]["handled"] and rows[db]["contribution"] <= 0.05 * expl["outlier_score"]  # not blamed
    assert expl["contributions"][0]["service"] == "cart"
    assert page.locator('[data-testid="whyslow-failure-origin"]').first.get_attribute("data-service") == "cart"
    assert "postgresql" in page.inner_text('[data-testid="whyslow-failure-handled"]')
    node = page.locator(f'[data-testid="whyslow-graph-node"][data-node="{db}"]')
    assert node.get_attribute("data-handled") == "true"
    assert node.locator("rect").get_attribute("stroke-dasharray") == "5 3"
    # the handled error did not travel: no propagation edge leaves it
    assert page.locator('[data-testid="whyslow-graph-edge"][data-propagation]').count() == 2
    page.screenshot(path=str(test_output_dir / "panel-error-handled.png"), full_page=True)
    assert page.errors == []


def test_handled_error_is_shown_apart_and_not_blamed(served, page, test_output_dir):
    srv, _, handled = served
    trace_id = handled[0].trace_id
    # the request succeeded: asked why it failed, there is nothing to explain
    status, expl = srv.get(f"/api/v1/traces/{trace_id}/rca?kind=error")
    assert status == 200 and expl["outlier_score"] == 0.0
    assert _open(page, srv, trace_id, kind="error") in ("ok", "not_outlier")
    assert page.errors == []
