"""The built plugin (grafana_panel/dist/module.js) loaded the way Grafana's frontend loads plugins, in chromium.

No Grafana server can run here, but its loader can: grafana_panel/loader-dist is a small host that exposes
@grafana/data, @grafana/ui, react, react-dom and @emotion/css (the real npm packages the plugin builds against)
to SystemJS under an import map, as Grafana's sharedDependencies map does, and imports
`public/plugins/whyslow-rootcause-panel/module.js` through SystemJS's AMD extra. Playwright serves the page from a
Grafana-like origin: the plugin's files from dist/, and Grafana's data source proxy path
(`/api/datasources/proxy/uid/whyslow/query`) forwarded to a live `whyslow serve` that has learned the shop and
seen `payments` made slow. The PanelPlugin's panel must rank `payments` first (as the REST API does), in the dark
and light themes, and react to options changed through the plugin's own options builder.
Screenshots go to test-output/ (loader-*.png).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.support.serve import ServeProcess
from plugin.demo.shop_traffic import ENTRY, ShopTraffic

ROOT = Path(__file__).resolve().parents[2]
PANEL = ROOT / "grafana_panel"
LOADER = PANEL / "loader-dist"
DIST = PANEL / "dist"
PLUGIN_ID = json.loads((PANEL / "src" / "plugin.json").read_text(encoding="utf-8"))["id"]
ORIGIN = "http://grafana.test"
PLUGIN_PREFIX = f"/public/plugins/{PLUGIN_ID}/"
PROXY_QUERY = "/api/datasources/proxy/uid/whyslow/query"
SHARED = {"@emotion/css", "@grafana/data", "@grafana/ui", "react", "react-dom", "react-dom/client"}
VIEWPORT = {"width": 1400, "height": 700}
CHROMIUM = Path("/usr/bin/chromium")
SLOW_SERVICE = "payments"

pytestmark = pytest.mark.browser


@dataclass
class Shop:
    srv: ServeProcess
    slow: list[Any]


def _ready_and_explained(srv: ServeProcess, slow: list[Any] | None) -> bool:
    """The shop's model is fitted (slow None), or every slow trace is an explained outlier."""
    if slow is None:
        status, body = srv.get("/api/v1/status")
        return status == 200 and any(m["entry"] == ENTRY and m["state"] == "ready" for m in body["models"])
    status, body = srv.get("/api/v1/outliers?limit=1000")
    return status == 200 and {s.trace_id for s in slow} <= {o["trace_id"] for o in body["outliers"]}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """`whyslow serve` that has learned the shop (80 traces, real OTLP) and explained two with payments slowed."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM} (`make system-deps` installs it)")
    if not (LOADER / "index.html").exists() or not (DIST / "module.js").exists():
        pytest.skip("the plugin or the loader page is not built (`make panel` builds grafana_panel/dist and "
                    "grafana_panel/loader-dist)")
    srv = ServeProcess(tmp_path_factory.mktemp("loader") / "data", min_traces=60, window=1000,
                       refit_interval_s=3600, trace_timeout_s=0.3).start()
    traffic = ShopTraffic(srv.otlp_grpc, seed=41)
    try:
        traffic.send(80)
        srv.wait_for(lambda: _ready_and_explained(srv, None), timeout=60)
        slow = traffic.send(2, slow=SLOW_SERVICE, slow_ms=400.0)
        srv.wait_for(lambda: _ready_and_explained(srv, slow), timeout=90)
        yield Shop(srv, slow)
    finally:
        traffic.close()
        srv.stop()


def _dark(css_rgb: str) -> bool:
    r, g, b = (int(x) for x in re.findall(r"\d+", css_rgb)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 128


def _content_type(path: Path) -> str:
    return {".js": "application/javascript", ".html": "text/html", ".json": "application/json",
            ".svg": "image/svg+xml", ".map": "application/json"}.get(path.suffix, "application/octet-stream")


@pytest.fixture()
def grafana(live: Shop) -> Iterator[Any]:
    """A chromium page whose origin plays Grafana: files from loader-dist/ and dist/, the proxy to whyslow serve."""
    from playwright.sync_api import sync_playwright

    proxied: list[dict[str, Any]] = []

    def serve(route: Any) -> None:
        request = route.request
        path = urlparse(request.url).path
        if path == PROXY_QUERY and request.method == "POST":
            proxied.append(json.loads(request.post_data or "{}"))
            response = route.fetch(url=live.srv.http_url + "/query")  # Grafana's proxy: same body, server side
            route.fulfill(response=response)
            return
        base, rel = (DIST, path[len(PLUGIN_PREFIX):]) if path.startswith(PLUGIN_PREFIX) else (LOADER, path.lstrip("/"))
        file = (base / (rel or "index.html")).resolve()
        if base.resolve() in file.parents and file.is_file():
            route.fulfill(status=200, body=file.read_bytes(), content_type=_content_type(file))
        else:
            route.fulfill(status=404, body=f"not found: {path}", content_type="text/plain")

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM),
                                      args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        context = chromium.new_context(viewport=VIEWPORT)
        context.route(f"{ORIGIN}/**", serve)
        page = context.new_page()
        page.errors = []  # type: ignore[attr-defined]
        page.proxied = proxied  # type: ignore[attr-defined]
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        try:
            yield page
        finally:
            chromium.close()


def _open(page: Any, trace_id: str, theme: str) -> None:
    page.goto(f"{ORIGIN}/?var-traceId={trace_id}&theme={theme}")
    page.wait_for_function("() => window.__loader && window.__loader.state !== 'loading'", timeout=60_000)
    loader = page.evaluate("() => window.__loader")
    assert loader["state"] == "ready", loader.get("error")
    page.wait_for_selector('[data-testid="whyslow-panel"]:not([data-status="loading"])', timeout=30_000)


def _bars(page: Any) -> list[str]:
    bars = page.locator('[data-testid="whyslow-bar"]')
    return [bars.nth(i).get_attribute("data-node") for i in range(bars.count())]


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_plugin_loads_through_systemjs_and_ranks_the_slow_service(live: Shop, grafana: Any, theme: str,
                                                                   test_output_dir: Path) -> None:
    page = grafana
    sent = live.slow[0]
    _open(page, sent.trace_id, theme)

    # loaded as Grafana loads it: module.js through SystemJS, every bare import resolved by the import map
    loader = page.evaluate("() => window.__loader")
    assert loader["imports"] == {name: f"package:{name}" for name in SHARED}
    urls = {r["id"]: r["url"] for r in loader["resolved"]}
    assert urls[f"{PLUGIN_PREFIX}module.js"] == f"{ORIGIN}{PLUGIN_PREFIX}module.js"
    asked = {i for i in urls if not i.startswith(("/", "http", "package:"))}
    assert {"@grafana/data", "@grafana/ui", "react"} <= asked <= SHARED, asked
    assert all(urls[i] == f"package:{i}" for i in asked)
    amd_deps = re.match(r'define\((\[[^\]]*\])', (DIST / "module.js").read_text(encoding="utf-8"))
    assert amd_deps and set(json.loads(amd_deps.group(1))) == asked  # what the AMD module declares, no more
    assert loader["optionPaths"] == ["topK", "showIntervals", "units", "showGraph"]
    assert loader["options"] == {"topK": 5, "showIntervals": True, "units": "auto", "showGraph": True}

    # the query went through Grafana's proxy path as the JSON data source sends it, $traceId replaced
    (body,) = page.proxied
    assert body["targets"][0]["target"] == "rca" and body["targets"][0]["payload"] == {"traceId": sent.trace_id}

    assert page.get_attribute('[data-testid="whyslow-panel"]', "data-status") == "ok"
    status, expl = live.srv.get(f"/api/v1/traces/{sent.trace_id}/rca")
    assert status == 200
    shown = _bars(page)
    assert len(shown) >= 2
    assert page.locator('[data-testid="whyslow-bar"]').first.get_attribute("data-service") == SLOW_SERVICE
    assert shown == [c["node"] for c in expl["contributions"]][: len(shown)]
    assert page.locator('[data-testid="whyslow-graph-node"]').count() >= len(shown)
    # PanelChrome (from the shared @grafana/ui) frames the panel with the dashboard's title, variable replaced
    assert f"Why was trace {sent.trace_id} slow?" in page.inner_text('[data-testid="loader-panel"]')
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert _dark(background) == (theme == "dark"), background
    page.screenshot(path=str(test_output_dir / f"loader-{theme}.png"))
    assert page.errors == []


def test_options_changed_through_the_plugins_options_builder(live: Shop, grafana: Any,
                                                             test_output_dir: Path) -> None:
    page = grafana
    _open(page, live.slow[1].trace_id, "dark")
    all_bars = _bars(page)
    assert page.locator('[data-testid="whyslow-graph"]').count() == 1

    # top contributors: the number editor the builder asked for (addNumberInput, min 1, integer)
    top_k = page.locator('[data-testid="option-topK"] input')
    top_k.fill("1")
    top_k.press("Enter")
    page.wait_for_function("() => window.__loader.options.topK === 1")
    assert _bars(page) == all_bars[:1]
    assert page.locator('[data-testid="whyslow-bar"]').first.get_attribute("data-service") == SLOW_SERVICE
    top_k.fill("0")  # below the builder's minimum: clamped to 1
    top_k.press("Enter")
    assert page.evaluate("() => window.__loader.options.topK") == 1

    # the causal graph switch (addBooleanSwitch) removes the graph
    page.locator('[data-testid="option-showGraph"] label').last.click()
    page.wait_for_function("() => window.__loader.options.showGraph === false")
    assert page.locator('[data-testid="whyslow-graph"]').count() == 0

    # latency units (addRadio): seconds
    page.locator('[data-testid="option-units"] input[type="radio"][title="s"]').check()
    page.wait_for_function("() => window.__loader.options.units === 's'")
    latency = page.inner_text('[data-testid="whyslow-latency"]').strip()
    assert re.fullmatch(r"[\d.]+ s", latency), latency
    assert float(latency.split()[0]) == pytest.approx(live.slow[1].latency_ms / 1000, abs=0.006)
    page.screenshot(path=str(test_output_dir / "loader-options-dark.png"))
    assert page.errors == []
