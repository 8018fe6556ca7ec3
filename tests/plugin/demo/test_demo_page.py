"""The web page the demo points to (/ui/?traceId=...) shows, in headless chromium, the same explanation the
demo printed: the injected service first, in the REST API's order. Then Ctrl-C ends a --keep-running demo
cleanly with its verdict as the last line."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = Path("/usr/bin/chromium")
HARNESS = ROOT / "grafana_panel" / "harness-dist" / "index.html"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _lines(proc: subprocess.Popen, out: queue.Queue) -> None:
    for line in proc.stdout:
        out.put(line.rstrip("\n"))
    out.put(None)


def test_demo_page_shows_the_injected_fault_first(test_output_dir):
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM} (`make system-deps` installs it)")
    if not HARNESS.exists():
        pytest.skip(f"the panel's standalone page is not built at {HARNESS} (`make panel` builds it)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHYSLOW_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "plugin.cli", "demo", "--warmup-traces", "300", "--fault-traces", "5",
         "--fault", "order-db", "--no-progress", "--keep-running", "--seed", "5"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc, lines), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while not any(s.startswith("Still serving") for s in seen):
            assert time.monotonic() < deadline, "\n".join(seen)
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "\n".join(seen) + proc.stderr.read()
            seen.append(line)
        text = "\n".join(seen)
        assert "VERDICT: PASS top root cause Order DB matches injected fault" in text
        m = re.search(r"(http://127\.0\.0\.1:\d+)/ui/\?traceId=([0-9a-f]{32})", text)
        assert m, text
        base, trace_id = m.groups()
        with urllib.request.urlopen(f"{base}/api/v1/traces/{trace_id}/rca", timeout=60) as resp:
            expl = json.loads(resp.read())
        assert expl["contributions"][0]["service"] == "order-db"

        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.goto(f"{base}/ui/?traceId={trace_id}")
                page.wait_for_selector('[data-testid="whyslow-panel"]:not([data-status="loading"])', timeout=60_000)
                assert page.get_attribute('[data-testid="whyslow-panel"]', "data-status") == "ok"
                bars = page.locator('[data-testid="whyslow-bar"]')
                assert bars.count() >= 1
                assert bars.first.get_attribute("data-service") == "order-db"
                shown = [bars.nth(i).get_attribute("data-node") for i in range(bars.count())]
                assert shown == [c["node"] for c in expl["contributions"]][: len(shown)]
                page.screenshot(path=str(test_output_dir / "demo-page-order-db.png"), full_page=True)
            finally:
                browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    rest = []
    while (line := lines.get(timeout=10)) is not None:
        rest.append(line)
    assert rc == 0, "\n".join(seen + rest)
    assert rest[-1].startswith("VERDICT: PASS"), rest
