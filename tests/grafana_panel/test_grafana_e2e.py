"""@grafana/plugin-e2e specs (grafana_panel/e2e/) against a real Grafana: run only when GRAFANA_URL points at one
(with the whyslow panel, data source and provisioned dashboard, e.g. the compose stack in deploy/); otherwise this
test is reported as skipped, with the reason, never as passed. Optional: WHYSLOW_TRACE_ID (an explained slow
trace) and WHYSLOW_EXPECT_SERVICE (the service expected first), GRAFANA_ADMIN_USER / GRAFANA_ADMIN_PASSWORD."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PANEL = Path(__file__).resolve().parents[2] / "grafana_panel"

pytestmark = pytest.mark.browser


def test_plugin_e2e_specs_against_a_real_grafana() -> None:
    if not os.environ.get("GRAFANA_URL"):
        pytest.skip("GRAFANA_URL is not set: the @grafana/plugin-e2e specs need a running Grafana "
                    "(e.g. `cd deploy && docker compose up`, then GRAFANA_URL=http://localhost:3000)")
    npx = shutil.which("npx")
    if npx is None or not (PANEL / "node_modules" / "@grafana" / "plugin-e2e").is_dir():
        pytest.skip("grafana_panel/node_modules lacks @grafana/plugin-e2e (`make panel` runs npm ci)")
    proc = subprocess.run([npx, "playwright", "test", "--reporter=list"], cwd=PANEL, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " skipped" not in proc.stdout, proc.stdout[-2000:]
