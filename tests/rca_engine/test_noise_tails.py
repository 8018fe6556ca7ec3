"""`tail_fraction`: exponential noise tails beyond the training range (calibrated scores from little data)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import rca_engine
from rca_engine.mechanisms import EmpiricalMechanism
from rca_engine.synthetic import random_system


def test_draws_beyond_the_quantile_follow_the_fitted_exponential_tail() -> None:
    rng = np.random.default_rng(0)
    train = rng.lognormal(0.0, 0.5, 400)
    mech = EmpiricalMechanism().fit(np.empty((400, 0)), train)
    draws = mech.draw_noise(400_000, np.random.default_rng(1), tail_fraction=0.1)
    u_hi, u_lo = np.quantile(train, 0.9), np.quantile(train, 0.1)
    excess, deficit = train[train > u_hi] - u_hi, u_lo - train[train < u_lo]
    above, below = draws[draws > u_hi] - u_hi, u_lo - draws[draws < u_lo]
    assert above.mean() == pytest.approx(excess.mean(), rel=0.02)  # the exponential's mean is the mean excess
    assert below.mean() == pytest.approx(deficit.mean(), rel=0.02)
    assert above.size / draws.size == pytest.approx(np.mean(train > u_hi), abs=0.003)  # the body keeps its mass
    assert draws.max() > train.max() and draws.min() < train.min()  # new data goes beyond the training range
    body = draws[(draws >= u_lo) & (draws <= u_hi)]
    assert set(np.unique(body)) <= set(train)  # between the quantiles: training values only
    plain = mech.draw_noise(1000, np.random.default_rng(1))
    assert set(plain) <= set(train)  # tail_fraction=0: DoWhy's empirical draws


def test_atoms_and_small_tails_stay_empirical() -> None:
    # an error count, 95 % zeros: the atom at 0 keeps its mass; the failures get a tail with their mean excess
    counts = np.r_[np.zeros(95), np.arange(1.0, 6.0)]
    mech = EmpiricalMechanism().fit(np.empty((100, 0)), counts)
    draws = mech.draw_noise(50_000, np.random.default_rng(2), tail_fraction=0.1)
    assert draws.min() == 0.0 and np.mean(draws == 0.0) == pytest.approx(0.95, abs=0.01)
    assert draws[draws > 0].mean() == pytest.approx(3.0, rel=0.05) and draws.max() > 5.0
    # fewer than 5 values beyond the quantile: too few to fit a tail, the draws stay empirical
    few = EmpiricalMechanism().fit(np.empty((100, 0)), np.r_[np.zeros(96), np.arange(1.0, 5.0)])
    assert np.all(np.isin(few.draw_noise(50_000, np.random.default_rng(2), tail_fraction=0.1), np.arange(5.0)))
    const = EmpiricalMechanism().fit(np.empty((50, 0)), np.full(50, 3.0))
    assert np.all(const.draw_noise(100, np.random.default_rng(3), tail_fraction=0.2) == 3.0)


def test_rare_normal_requests_are_no_longer_scored_far_too_rare() -> None:
    """With 150 training traces the empirical model flags many times too many normal requests as 1-in-1,000;
    the fitted tails bring the rate close to 1e-3."""
    rng = np.random.default_rng(1)
    system = random_system(6, rng)
    graph = rca_engine.invert_call_graph(list(system.call_graph.edges))
    test = system.simulate(200_000, rng)["s0"].to_numpy()
    rates = {}
    for tail in (0.0, 0.1):
        rate = []
        for rep in range(3):
            train = system.simulate(150, np.random.default_rng(100 + rep))
            model = rca_engine.fit(graph, train, system.structure, seed=rep, tail_fraction=tail)
            rate.append(float(np.mean(model.it_score("s0", test, base="upper") >= np.log(1000.0))))
        rates[tail] = float(np.mean(rate))
    assert rates[0.1] < 0.6 * rates[0.0]
    assert rates[0.1] < 2.5e-3, rates


def test_options_are_validated_and_dowhy_mode_draws_empirically() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(0, 1, 300)
    data = pd.DataFrame({"a": a, "b": a + rng.normal(0, 1, 300)})
    graph = nx.DiGraph([("a", "b")])
    for bad in (-0.1, 0.3):
        with pytest.raises(rca_engine.RCAError, match="tail_fraction"):
            rca_engine.fit(graph, data, "linear", tail_fraction=bad)
    smooth = rca_engine.fit(graph, data, "linear", tail_fraction=0.1)
    plain = rca_engine.fit(graph, data, "linear")
    x = {"a": 3.0, "b": 6.5}
    same = [rca_engine.attribute(m, "b", x, dowhy_compatible=True, seed=1) for m in (smooth, plain)]
    assert same[0].contributions == same[1].contributions
    tails = rca_engine.attribute(smooth, "b", x, seed=1, game="tail")
    assert tails.outlier_score < rca_engine.attribute(plain, "b", x, seed=1, game="tail").outlier_score
