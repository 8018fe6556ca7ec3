"""The provisioned dashboards typecheck against @grafana/schema's Dashboard type (the npm version the panel builds
against), with the TypeScript compiler: grafana_panel/scripts/check-dashboards.js (also run by `npm run typecheck`).
Broken copies (an unknown variable type, a grid position without height, a misspelt field) must be rejected."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PANEL = ROOT / "grafana_panel"
SCRIPT = PANEL / "scripts" / "check-dashboards.js"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))


def _check(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the panel build needs it: `make panel`)")
    if not (PANEL / "node_modules" / "@grafana" / "schema").is_dir() or not (PANEL / "node_modules" / "typescript").is_dir():
        pytest.skip("grafana_panel/node_modules lacks @grafana/schema or typescript (`make panel` runs npm ci)")
    return subprocess.run([node, str(SCRIPT), *map(str, files)], cwd=PANEL, capture_output=True, text=True,
                          timeout=300)


def test_provisioned_dashboards_are_schema_dashboards() -> None:
    assert DASHBOARDS
    proc = _check(*DASHBOARDS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("valid @grafana/schema Dashboard") == len(DASHBOARDS)


def test_broken_dashboards_are_rejected(tmp_path: Path) -> None:
    good = json.loads(DASHBOARDS[0].read_text(encoding="utf-8"))
    breakages = {
        "variable": (lambda d: d["templating"]["list"][0].update(type="textboxx"), "VariableType"),
        "gridpos": (lambda d: d["panels"][0]["gridPos"].pop("h"), "'h' is missing"),
        "field": (lambda d: d.update(titel="x"), "'\"titel\"' does not exist"),
        "tooltip": (lambda d: d.update(graphTooltip="shared"), "DashboardCursorSync"),
    }
    files = []
    for name, (breaking, _) in breakages.items():
        broken = json.loads(json.dumps(good))
        breaking(broken)
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(broken), encoding="utf-8")
    proc = _check(*files)
    assert proc.returncode == 1
    for name, (_, message) in breakages.items():
        lines = [ln for ln in proc.stderr.splitlines() if f"{name}.json" in ln]
        assert lines and any(message in ln for ln in lines), (name, proc.stderr)
