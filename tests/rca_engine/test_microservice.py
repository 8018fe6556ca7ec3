"""The DoWhy microservice example (shared data): the injected fault in Caching Service is found."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import rca_engine
from tests.support.datasets import shared_dataset

GRAPH_FILE = Path(rca_engine.__file__).parent / "examples" / "microservice_graph.json"


@pytest.fixture(scope="module")
def microservice() -> tuple[rca_engine.CausalModel, pd.DataFrame, pd.DataFrame]:
    d = shared_dataset("dowhy_microservice")
    train = pd.read_csv(d / "rca_microservice_architecture_latencies.csv")
    outlier = pd.read_csv(d / "rca_microservice_architecture_anomaly.csv")
    graph = rca_engine.graph_from_edges(json.loads(GRAPH_FILE.read_text())["edges"])
    return graph, train, outlier


STRUCTURE = {"Product Service": "max", "Caching Service": "linear"}  # all other callers: sequential sum


@pytest.mark.parametrize("mechanisms", ["auto", "linear", "structure"])
def test_caching_service_is_top_root_cause(microservice, mechanisms: str) -> None:
    graph, train, outlier = microservice
    spec: object = mechanisms
    if mechanisms == "structure":
        spec = {n: STRUCTURE.get(n, "sum") for n in graph if graph.in_degree(n)}
    model = rca_engine.fit(graph, train, spec)
    expl = rca_engine.attribute(model, "Website", outlier.iloc[0], seed=0)
    assert expl.root_causes[0] == "Caching Service"
    assert expl.contributions["Caching Service"] > 0.5 * expl.outlier_score
    assert sum(expl.contributions.values()) == pytest.approx(expl.outlier_score, abs=1e-9)
    # had Caching Service's own latency been typical, the website would have been ~2 s faster (the injected fault)
    drop = expl.target_value - expl.counterfactuals["Caching Service"]
    assert 1.0 < drop < 3.0
    assert set(expl.contributions) == set(graph.nodes)


def test_dowhy_compatible_mode_and_batch(microservice) -> None:
    graph, train, outlier = microservice
    model = rca_engine.fit(graph, train, "linear")
    expl = rca_engine.attribute(model, "Website", outlier.iloc[0], dowhy_compatible=True, seed=2)
    assert expl.method == "permutation" and expl.num_permutations == 25 and expl.tail == "dowhy"
    assert expl.root_causes[0] == "Caching Service"
    batch = pd.read_csv(shared_dataset("dowhy_microservice") / "rca_microservice_architecture_anomaly_1000.csv").head(5)
    many = rca_engine.attribute_many(model, "Website", batch, seed=0, num_samples=1000)
    tops = [e.root_causes[0] for e in many]
    assert tops.count("Caching Service") >= 4
