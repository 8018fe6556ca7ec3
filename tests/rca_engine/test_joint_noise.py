"""joint_noise: Monte-Carlo draws of whole training rows keep a hidden common cause's correlations."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

import rca_engine


def confounded(n: int, seed: int) -> pd.DataFrame:
    """Two services share a hidden load that speeds one up as it slows the other: their sum is narrow."""
    rng = np.random.default_rng(seed)
    load = rng.normal(0.0, 3.0, n)
    a = 10.0 + load + rng.normal(0.0, 0.3, n)
    b = 10.0 - load + rng.normal(0.0, 0.3, n)
    return pd.DataFrame({"a": a, "b": b, "t": a + b + rng.normal(0.0, 0.3, n)})


def test_joint_draws_keep_the_real_spread_of_the_target() -> None:
    data = confounded(4000, 0)
    graph = rca_engine.graph_from_edges([("a", "t"), ("b", "t")])
    sample = {"a": 13.0, "b": 10.0, "t": 23.0}  # t is 3 above its mean: ~5.6 sd of the real t, ~0.7 sd if independent
    indep = rca_engine.attribute(rca_engine.fit(graph, data, "sum"), "t", sample)
    joint_model = rca_engine.fit(graph, data, "sum", joint_noise=True)
    joint = rca_engine.attribute(joint_model, "t", sample)
    real_t = data["t"].to_numpy()
    empirical = -np.log((np.sum(np.abs(real_t - np.median(real_t)) >= 3.0) + 0.5) / (real_t.size + 0.5))
    assert indep.outlier_score < 2.0  # independent draws: the target looks almost normal
    assert joint.outlier_score > 6.0 and joint.outlier_score >= empirical - 1.0  # as rare as the data says
    assert sum(joint.contributions.values()) == pytest.approx(joint.outlier_score)
    assert joint_model.it_score("t", [23.0])[0] > 6.0
    assert pickle.loads(pickle.dumps(joint_model)).joint_noise is True


def test_joint_and_independent_agree_when_noises_are_independent() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.exponential(1.0, 5000), rng.exponential(1.0, 5000)
    data = pd.DataFrame({"a": a, "b": b, "t": a + b + rng.exponential(0.5, 5000)})
    graph = rca_engine.graph_from_edges([("a", "t"), ("b", "t")])
    sample = {"a": 6.0, "b": 1.0, "t": 7.5}
    indep = rca_engine.attribute(rca_engine.fit(graph, data, "sum"), "t", sample)
    joint = rca_engine.attribute(rca_engine.fit(graph, data, "sum", joint_noise=True), "t", sample)
    assert joint.root_causes[0] == indep.root_causes[0] == "a"
    assert joint.outlier_score == pytest.approx(indep.outlier_score, rel=0.2)
