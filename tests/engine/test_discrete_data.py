"""Constant and integer-valued training data: an unseen value is still a clear outlier (regression tests).

With repeated values at the sample's extremes the fitted tail must not count the atom at the extreme as part
of an event beyond it; the independent reference is DoWhy's counting estimate, which cannot be fooled by ties.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import rca_engine


def test_constant_node_unseen_value_is_an_outlier() -> None:
    graph = nx.DiGraph()
    graph.add_node("x")
    model = rca_engine.fit(graph, pd.DataFrame({"x": [3.0] * 50}))
    fitted = rca_engine.attribute(model, "x", {"x": 7.0})
    counting = rca_engine.attribute(model, "x", {"x": 7.0}, tail="dowhy")
    assert fitted.outlier_score >= counting.outlier_score - np.log(2.0) - 1e-9  # both sides at most the count cap
    assert fitted.outlier_score > 7.0
    assert fitted.contributions["x"] == pytest.approx(fitted.outlier_score)


@pytest.mark.parametrize("mechanisms", ["sum", "linear"])
def test_integer_latencies_far_beyond_the_data(mechanisms: str) -> None:
    rng = np.random.default_rng(0)
    db = rng.integers(2, 4, 500).astype(float)
    api = db + rng.integers(1, 3, 500)
    web = api + rng.integers(1, 3, 500)
    graph = rca_engine.graph_from_edges([("db", "api"), ("api", "web")])
    model = rca_engine.fit(graph, pd.DataFrame({"db": db, "api": api, "web": web}), mechanisms)
    sample = {"db": 3.0, "api": 28.0, "web": 30.0}  # api's own time 25 instead of 1-2: 3x the slowest request
    expl = rca_engine.attribute(model, "web", sample)
    counting = rca_engine.attribute(model, "web", sample, tail="dowhy")
    assert expl.outlier_score >= counting.outlier_score - np.log(2.0) - 1e-9
    assert expl.root_causes[0] == "api"
    assert sum(expl.contributions.values()) == pytest.approx(expl.outlier_score)
