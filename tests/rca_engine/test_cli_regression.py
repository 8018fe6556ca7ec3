"""`whyslow regression` end to end through the installed entry point (subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.datasets import ROOT
from tests.support.regression_periods import periods

WHYSLOW = ROOT / ".venv" / "bin" / "whyslow"


def whyslow(*args: str) -> subprocess.CompletedProcess[str]:
    exe = [str(WHYSLOW)] if WHYSLOW.exists() else [sys.executable, "-m", "plugin.cli"]
    return subprocess.run([*exe, "regression", *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("regression")
    base, comp, own0, own1 = periods(21, a=1.6, db=1.3)
    base.to_csv(d / "before.csv", index=False)
    comp.to_csv(d / "after.csv", index=False)
    comp.drop(columns=["db"]).to_csv(d / "short.csv", index=False)
    base.drop(columns=["db"]).to_csv(d / "short_before.csv", index=False)
    (d / "calls.json").write_text(json.dumps({"edges": [["front", "a"], ["front", "b"], ["b", "db"],
                                                        ["front", "new"]]}))
    (d / "truth.json").write_text(json.dumps({k: float(own1[k].mean() - own0[k].mean()) for k in ("a", "db")}))
    return {p.stem: p for p in d.iterdir()}


def common(files: dict[str, Path], *extra: str) -> list[str]:
    return ["--graph", str(files["calls"]), "--call-graph", "--baseline", str(files["before"]),
            "--comparison", str(files["after"]), "--target", "front", "--mechanisms", "sum", *extra]


def test_table_names_the_shifted_services_in_ms(files):
    out = whyslow(*common(files, "--intervals", "20"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("front p99:") and "observed change" in lines[0]
    assert "noise floor" in lines[1]
    ranked = [line.split()[1] for line in lines[3:]]
    assert ranked[:2] == ["a", "db"]


def test_json_mean_matches_the_own_time_change_and_what_if(files):
    out = whyslow(*common(files, "--stat", "mean", "--json", "--intervals", "0", "--what-if", "a=0.5"))
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    truth = json.loads(files["truth"].read_text())
    for node in ("a", "db"):
        assert payload["contributions"][node] == pytest.approx(truth[node], rel=1e-9)
    assert sum(payload["contributions"].values()) == pytest.approx(payload["modelled_change"], abs=1e-9)
    assert payload["significant"] is True and payload["stat"] == "mean"
    import pandas as pd

    after = pd.read_csv(files["after"])
    w = payload["what_if"]
    assert w["interventions"] == {"a": 0.5}
    assert w["change"] == pytest.approx(-0.5 * float(np.mean(after["a"])), rel=1e-9)


@pytest.mark.parametrize("extra, message", [
    (["--stat", "p101"], "strictly between 0 and 1"),
    (["--stat", "tail"], "threshold"),
    (["--target", "nope"], "target 'nope' is not a node"),
    (["--what-if", "a"], "--what-if expects"),
    (["--what-if", "nope=0.5"], "not upstream"),
    (["--intervals", "1"], "--intervals"),
    (["--mechanisms", "magic"], "--mechanisms"),
])
def test_bad_input_is_one_line_and_status_2(files, extra, message, capsys):
    from plugin.cli import main  # in process: the entry point itself is covered above

    assert main(["regression", *common(files), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_column_and_file(files, capsys):
    from plugin.cli import main

    args = common(files, "--intervals", "0", "--json")
    args[args.index(str(files["after"]))] = str(files["short"])
    assert main(["regression", *args]) == 0  # a column of one table only: a call of that period only
    assert json.loads(capsys.readouterr().out)["kinds"]["b→db"] == "gone"  # the call b -> db
    args[args.index(str(files["before"]))] = str(files["short_before"])
    assert main(["regression", *args]) == 2
    assert "baseline data lacks columns for graph nodes 'db'" in capsys.readouterr().err
    out = whyslow(*["--graph", str(files["calls"]), "--baseline", "/nonexistent.csv", "--comparison",
                    str(files["after"]), "--target", "front"])
    assert out.returncode == 2 and "baseline file not found" in out.stderr


def test_call_count_csvs_make_the_repeated_call_its_own_player(tmp_path):
    """db called twice per request instead of once, each call as slow as before: with the calls CSVs the player is
    the edge b→db and its mean contribution is the added database time (an independent sum over the rows)."""
    rng = np.random.default_rng(31)
    n = 2000

    def period(calls: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        per_call = rng.gamma(2.0, 5.0, n)
        own = {"a": rng.gamma(3.0, 4.0, n), "b": rng.gamma(2.0, 3.0, n), "front": rng.gamma(2.0, 2.0, n)}
        db = calls * per_call
        lat = {"a": own["a"], "db": db, "b": own["b"] + db, "new": np.zeros(n),
               "front": own["front"] + own["a"] + own["b"] + db}
        counts = {"a": np.ones(n), "db": np.full(n, float(calls)), "b": np.ones(n), "new": np.zeros(n),
                  "front": np.ones(n)}
        return lat, counts

    for name, calls in (("before", 1), ("after", 2)):
        lat, counts = period(calls)
        pd.DataFrame(lat).to_csv(tmp_path / f"{name}.csv", index=False)
        pd.DataFrame(counts).to_csv(tmp_path / f"{name}_calls.csv", index=False)
    (tmp_path / "calls.json").write_text(json.dumps({"edges": [["front", "a"], ["front", "b"], ["b", "db"]]}))
    args = ["--graph", str(tmp_path / "calls.json"), "--call-graph", "--baseline", str(tmp_path / "before.csv"),
            "--comparison", str(tmp_path / "after.csv"), "--target", "front", "--mechanisms", "sum",
            "--stat", "mean", "--intervals", "0", "--json"]
    out = whyslow(*args, "--baseline-calls", str(tmp_path / "before_calls.csv"),
                  "--comparison-calls", str(tmp_path / "after_calls.csv"))
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["root_causes"][0] == "b→db" and "db" not in payload["contributions"]
    before = pd.read_csv(tmp_path / "before.csv")["db"]
    assert payload["contributions"]["b→db"] == pytest.approx(before.mean(), rel=0.05)  # one more call per request
    half = whyslow(*args, "--baseline-calls", str(tmp_path / "before_calls.csv"))
    assert half.returncode == 2 and "go together" in half.stderr
