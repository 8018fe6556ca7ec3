"""The benchmark baselines on hand-made data, against independent computations."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd

from benchmarks.baselines import MadScorer, traversal
from benchmarks.common import TopK, rank_by_score


def test_mad_scorer_matches_formula_and_edge_cases():
    rng = np.random.default_rng(0)
    x = rng.normal(10, 2, size=201)
    normal = pd.DataFrame({"a": x, "const": 5.0, "spiky": [1.0] * 200 + [3.0], "few": [1.0] * 5 + [np.nan] * 196})
    scorer = MadScorer().fit(normal)
    probe = pd.DataFrame({"a": [20.0], "const": [5.5], "spiky": [1.2], "few": [100.0]})
    s = scorer.score(probe).iloc[0]
    med = np.median(x)
    expected = abs(20.0 - med) / (np.median(np.abs(x - med)) / 0.6745)
    assert np.isclose(s["a"], expected)
    assert np.isclose(s["const"], 0.5)  # constant column: absolute deviation from the mean
    assert np.isinf(s["spiky"])  # zero MAD but some spread: any deviation is infinitely rare
    assert s["few"] == 0.0  # fewer than 10 values: no scorer
    flags = scorer.anomalous(probe).iloc[0]
    assert flags["a"] == (expected > 5) and flags["const"] and flags["spiky"] and not flags["few"]


def test_traversal_names_the_deepest_anomalous_cause_on_an_anomalous_path():
    # call graph: web -> api -> db, web -> cache; causal graph is its reverse
    causal = nx.DiGraph([("api", "web"), ("db", "api"), ("cache", "web")])
    # db, api, web anomalous: db has no anomalous cause -> the only root cause
    assert traversal(causal, "web", {"web": 6.0, "api": 7.0, "db": 9.0}) == ["db"]
    # cache and api both anomalous root causes; ranked by the score sum along their path to the target
    ranked = traversal(causal, "web", {"web": 6.0, "api": 7.0, "cache": 20.0})
    assert ranked == ["cache", "api"]  # 26 > 13
    # an anomalous node whose path to the target is broken by a normal node is not named
    assert traversal(causal, "web", {"web": 6.0, "db": 9.0}) == ["web"]
    # target not anomalous: no root cause
    assert traversal(causal, "web", {"db": 9.0}) == []


def test_topk_counts_and_ties_are_reproducible():
    assert rank_by_score({"b": 1.0, "a": 1.0, "c": 2.0}) == ["c", "a", "b"]
    t = TopK((1, 3))
    t.add(["x", "y", "z"], "y")
    t.add([], "y")
    t.add(["y"], "y")
    assert t.n == 3 and t.empty == 1
    assert t.hits == {1: 1, 3: 2}
    assert t.cell(3, as_count=True) == "2/3"
