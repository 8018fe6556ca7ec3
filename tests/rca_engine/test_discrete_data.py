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


@pytest.mark.parametrize("seed", range(5))
def test_resampled_root_is_not_an_atom(seed: int) -> None:
    """A root's reference repeats each of its n training values ~M/n times: no atom, so a value just beyond the
    training maximum keeps an honest score (a 1-in-1,000 request is not pushed over the 1-in-10,000 threshold),
    while a far outlier still is one."""
    rng = np.random.default_rng(seed)
    graph = nx.DiGraph()
    graph.add_node("x")
    train = 1.0 + rng.exponential(5.0, 1000)
    model = rca_engine.fit(graph, pd.DataFrame({"x": train}))
    one_in_1000 = 1.0 + 5.0 * np.log(1000.0)
    far = 3.0 * train.max()
    scores = model.it_score("x", [one_in_1000, far])
    assert scores[0] < np.log(10_000.0)
    assert scores[1] > np.log(10_000.0)
