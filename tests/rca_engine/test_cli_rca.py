"""`whyslow rca` end to end through the installed entry point (subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rca_engine
from rca_engine.synthetic import random_system
from tests.support.datasets import ROOT, shared_dataset

WHYSLOW = ROOT / ".venv" / "bin" / "whyslow"
GRAPH_FILE = Path(rca_engine.__file__).parent / "examples" / "microservice_graph.json"


def whyslow(*args: str) -> subprocess.CompletedProcess[str]:
    exe = [str(WHYSLOW)] if WHYSLOW.exists() else [sys.executable, "-m", "plugin.cli"]
    return subprocess.run([*exe, "rca", *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("rca")
    rng = np.random.default_rng(4)
    system = random_system(6, rng)
    system.simulate(800, rng).to_csv(d / "train.csv", index=False)
    fault = "s3"
    pd.concat([system.simulate(1, rng, fault=fault, add=8 * float(np.exp(system.mu[fault]))),
               system.simulate(1, rng, fault="s5", add=8 * float(np.exp(system.mu["s5"])))]).to_csv(d / "sample.csv", index=False)
    (d / "calls.json").write_text(json.dumps({"edges": [list(e) for e in system.call_graph.edges]}))
    (d / "calls.csv").write_text("caller,callee\n" + "".join(f"{a},{b}\n" for a, b in system.call_graph.edges))
    (d / "mech.json").write_text(json.dumps(system.structure))
    (d / "cycle.json").write_text(json.dumps([["s0", "s1"], ["s1", "s0"]]))
    (d / "bad.json").write_text("{not json")
    text = system.simulate(50, rng)
    text["s2"] = "slow"
    text.to_csv(d / "text.csv", index=False)
    return {p.stem + p.suffix.replace(".", "_"): p for p in d.iterdir()}


def test_json_output_finds_injected_faults(files: dict[str, Path]) -> None:
    r = whyslow("--graph", str(files["calls_json"]), "--call-graph", "--train", str(files["train_csv"]),
                "--sample", str(files["sample_csv"]), "--target", "s0", "--json",
                "--mechanisms", str(files["mech_json"]), "--seed", "3")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["root_causes"][0] for row in rows] == ["s3", "s5"]
    for row in rows:
        assert abs(sum(row["contributions"].values()) - row["outlier_score"]) < 1e-6
        assert row["outlier_score"] > 3


def test_one_sided_base_and_additive_mechanisms(files: dict[str, Path]) -> None:
    """--base upper scores only slowness and --mechanisms additive is accepted; the same faults are found and
    the outlier score matches the engine's one-sided score of the target."""
    r = whyslow("--graph", str(files["calls_json"]), "--call-graph", "--train", str(files["train_csv"]),
                "--sample", str(files["sample_csv"]), "--target", "s0", "--json", "--base", "upper",
                "--mechanisms", "additive", "--seed", "3")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["root_causes"][0] for row in rows] == ["s3", "s5"]
    graph = rca_engine.invert_call_graph(json.loads(files["calls_json"].read_text())["edges"])
    model = rca_engine.fit(graph, pd.read_csv(files["train_csv"]), "additive", seed=3)
    sample = pd.read_csv(files["sample_csv"])["s0"].to_numpy()
    upper, two_sided = model.it_score("s0", sample, base="upper"), model.it_score("s0", sample, base="median")
    np.testing.assert_allclose(upper, two_sided + np.log(2.0), rtol=1e-6)  # one tail instead of two
    for row, t in zip(rows, upper, strict=True):
        assert row["base"] == "upper"
        assert row["outlier_score"] == pytest.approx(t, rel=1e-9)  # the score the model itself gives
    bad = whyslow("--graph", str(files["calls_json"]), "--call-graph", "--train", str(files["train_csv"]),
                  "--sample", str(files["sample_csv"]), "--target", "s0", "--base", "lower")
    assert bad.returncode == 2 and "--base" in bad.stderr
    tails = whyslow("--graph", str(files["calls_json"]), "--call-graph", "--train", str(files["train_csv"]),
                    "--sample", str(files["sample_csv"]), "--target", "s0", "--json", "--base", "upper",
                    "--mechanisms", "additive", "--seed", "3", "--tail-fraction", "0.1")
    assert tails.returncode == 0, tails.stderr
    smooth = rca_engine.fit(graph, pd.read_csv(files["train_csv"]), "additive", seed=3, tail_fraction=0.1)
    for line, t in zip(tails.stdout.splitlines(), smooth.it_score("s0", sample, base="upper"), strict=True):
        row = json.loads(line)
        assert row["outlier_score"] == pytest.approx(t, rel=1e-9)  # the fitted tails reach the scorer
    out_of_range = whyslow("--graph", str(files["calls_json"]), "--call-graph", "--train", str(files["train_csv"]),
                           "--sample", str(files["sample_csv"]), "--target", "s0", "--tail-fraction", "0.5")
    assert out_of_range.returncode == 2 and "tail_fraction" in out_of_range.stderr
    assert "Traceback" not in out_of_range.stderr


def test_table_output_with_csv_graph_and_intervals(files: dict[str, Path]) -> None:
    r = whyslow("--graph", str(files["calls_csv"]), "--call-graph", "--train", str(files["train_csv"]),
                "--sample", str(files["sample_csv"]), "--target", "s0", "--mechanisms", "sum", "--intervals", "4",
                "--num-samples", "500", "--top", "3")
    assert r.returncode == 0, r.stderr
    assert "row 0: s0 =" in r.stdout and "outlier score" in r.stdout and "95% interval" in r.stdout
    assert "s0 would be" in r.stdout and "#" in r.stdout
    first_row = r.stdout.split("row 1:")[0].splitlines()
    assert first_row[2].split()[1] == "s3"  # rank 1 line
    assert len(first_row) == 2 + 3  # header lines + top 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--graph", "missing.json"], "graph file not found"),
        (["--graph", "{bad_json}"], "not valid JSON"),
        (["--graph", "{cycle_json}"], "cycle"),
        (["--target", "nope"], "target 'nope' is not a node"),
        (["--train", "missing.csv"], "training data file not found"),
        (["--train", "{text_csv}"], "non-numeric"),
        (["--mechanisms", "cubic"], "--mechanisms must be one of"),
    ],
)
def test_errors_are_one_line_exit_2(files: dict[str, Path], args: list[str], message: str) -> None:
    base = {"--graph": str(files["calls_json"]), "--train": str(files["train_csv"]),
            "--sample": str(files["sample_csv"]), "--target": "s0"}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v.format(**{k2: str(p) for k2, p in files.items()})
    flat = [x for kv in base.items() for x in kv]
    r = whyslow(*flat, "--call-graph")
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_dowhy_microservice_example() -> None:
    d = shared_dataset("dowhy_microservice")
    r = whyslow("--graph", str(GRAPH_FILE), "--train", str(d / "rca_microservice_architecture_latencies.csv"),
                "--sample", str(d / "rca_microservice_architecture_anomaly.csv"), "--target", "Website", "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["root_causes"][0] == "Caching Service"


@pytest.fixture(scope="module")
def odd_names(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chain '1' -> 'my db' -> 'Web site' (numeric, spaced names) with '1' slowed in the sample."""
    d = tmp_path_factory.mktemp("rca_shapes")
    rng = np.random.default_rng(7)
    a = rng.exponential(1, 400)
    b = a + rng.exponential(1, 400)
    pd.DataFrame({"1": a, "my db": b, "Web site": b + rng.exponential(1, 400)}).to_csv(d / "train.csv", index=False)
    pd.DataFrame({"1": [12.0], "my db": [12.5], "Web site": [13.0]}).to_csv(d / "slow.csv", index=False)
    return d


@pytest.mark.parametrize(
    ("name", "content", "call_graph"),
    [
        ("adjacency.json", json.dumps({"1": ["my db"], "my db": ["Web site"]}), False),
        ("calls_adjacency.json", json.dumps({"Web site": ["my db"], "my db": [1]}), True),
        ("numeric.json", json.dumps([[1, "my db"], ["my db", "Web site"]]), False),
        ("nodelink.json", json.dumps({"nodes": [{"id": 1}, {"id": "my db"}, {"id": "Web site"}],
                                      "links": [{"source": 1, "target": "my db"},
                                                {"source": "my db", "target": "Web site"}]}), False),
        ("srcdst.csv", "src,dst\n1,my db\nmy db,Web site\n", False),
        ("semicolon.csv", "cause;effect\n1;my db\nmy db;Web site\n", False),
        ("tabs.tsv", "1\tmy db\nmy db\tWeb site\n", False),
    ],
)
def test_graph_file_shapes(odd_names: Path, name: str, content: str, call_graph: bool) -> None:
    """Plausible graph files (adjacency, numeric names, node-link, other delimiters/headers) all read the same graph."""
    (odd_names / name).write_text(content)
    r = whyslow("--graph", str(odd_names / name), *(["--call-graph"] if call_graph else []),
                "--train", str(odd_names / "train.csv"), "--sample", str(odd_names / "slow.csv"),
                "--target", "Web site", "--mechanisms", "sum", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["contributions"]) == {"1", "my db", "Web site"}
    assert out["root_causes"][0] == "1"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (json.dumps({"a": 1}), "adjacency object"),
        (json.dumps([[None, "a"]]), "node names must be non-empty strings or numbers"),
        (json.dumps([[True, "a"]]), "node names must be non-empty strings or numbers"),
    ],
)
def test_bad_graph_shapes_one_line(odd_names: Path, content: str, message: str) -> None:
    (odd_names / "bad_shape.json").write_text(content)
    r = whyslow("--graph", str(odd_names / "bad_shape.json"), "--train", str(odd_names / "train.csv"),
                "--sample", str(odd_names / "slow.csv"), "--target", "Web site")
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_tab_and_semicolon_separated_data(odd_names: Path) -> None:
    """A TSV training table and a semicolon sample (European spreadsheet export) read like the comma CSVs."""
    pd.read_csv(odd_names / "train.csv").to_csv(odd_names / "train.tsv", sep="\t", index=False)
    pd.read_csv(odd_names / "slow.csv").to_csv(odd_names / "slow_semi.csv", sep=";", index=False)
    (odd_names / "chain.json").write_text(json.dumps([["1", "my db"], ["my db", "Web site"]]))
    runs = [whyslow("--graph", str(odd_names / "chain.json"), "--train", str(odd_names / train),
                    "--sample", str(odd_names / sample), "--target", "Web site", "--mechanisms", "sum", "--json")
            for train, sample in (("train.csv", "slow.csv"), ("train.tsv", "slow_semi.csv"))]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert json.loads(runs[1].stdout)["contributions"] == json.loads(runs[0].stdout)["contributions"]


@pytest.mark.parametrize("knob", [["--num-samples", "100000000"], ["--num-samples", "10"], ["--intervals", "100000"],
                                  ["--intervals", "-1"]])
def test_cost_knobs_are_bounded(odd_names: Path, knob: list[str]) -> None:
    """10^8 Monte-Carlo samples used to run for 36 s in 10.7 GB; out-of-range knobs are a one-line error now."""
    (odd_names / "chain.json").write_text(json.dumps([["1", "my db"], ["my db", "Web site"]]))
    r = whyslow("--graph", str(odd_names / "chain.json"), "--train", str(odd_names / "train.csv"),
                "--sample", str(odd_names / "slow.csv"), "--target", "Web site", *knob)
    assert r.returncode == 2 and "--num-samples 100..1,000,000" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_fit_on_sample_lets_the_incident_inform_the_mechanisms(tmp_path: Path) -> None:
    """--fit-on-sample: the sample rows also fit f (rca_engine.fit's incident=); same numbers as in process."""
    from tests.support.incident_rows import GRAPH, normal_and_incident

    normal, incident = normal_and_incident(0)
    normal.to_csv(tmp_path / "train.csv", index=False)
    incident.to_csv(tmp_path / "incident.csv", index=False)
    (tmp_path / "graph.json").write_text(json.dumps([list(e) for e in GRAPH.edges]))
    common = ["--graph", str(tmp_path / "graph.json"), "--train", str(tmp_path / "train.csv"), "--sample",
              str(tmp_path / "incident.csv"), "--target", "api", "--mechanisms", "linear", "--base", "upper",
              "--json", "--seed", "1"]
    with_incident, plain = whyslow(*common, "--fit-on-sample"), whyslow(*common)
    assert with_incident.returncode == 0 and plain.returncode == 0, with_incident.stderr + plain.stderr
    rows = [json.loads(line) for line in with_incident.stdout.splitlines()]
    assert len(rows) == 5 and all(r["root_causes"][0] == "db" for r in rows)
    model = rca_engine.fit(GRAPH, normal, "linear", seed=1, incident=incident)
    for i, row in enumerate(rows):
        expl = rca_engine.attribute(model, "api", incident.iloc[[i]], seed=1, base="upper", num_samples=3000)
        assert row["contributions"] == pytest.approx(expl.contributions, abs=1e-9)
    assert [json.loads(line)["root_causes"][0] for line in plain.stdout.splitlines()].count("db") <= 2
