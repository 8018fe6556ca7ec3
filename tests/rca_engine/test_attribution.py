"""rca_engine.attribution: contributions against a brute-force Shapley computation of the same game, evaluated
independently (float64 propagation through the model, counting over every coalition, every permutation)."""

from __future__ import annotations

import itertools
from math import factorial

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import rca_engine
from rca_engine.attribution import Attributor

# cause -> effect: a feeds b, b and d feed the target c
GRAPH = nx.DiGraph([("a", "b"), ("b", "c"), ("d", "c")])


def data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.exponential(2.0, n)
    b = 1.0 + 0.5 * a + rng.exponential(1.0, n)
    d = rng.exponential(1.5, n)
    c = np.maximum(b, d) + rng.exponential(0.5, n)
    return pd.DataFrame({"a": a, "b": b, "c": c, "d": d})


def brute_force(att: Attributor, values: np.ndarray, game: str) -> tuple[np.ndarray, float]:
    """Shapley values of v(S) = log P(target >= x | noises of S fixed at the observed ones), P counted on the
    Attributor's own Monte-Carlo draws ("dowhy": (count + 0.5) / (M + 0.5)); and v(empty)."""
    model, players = att.model, att.players
    n, m = len(players), att.num_samples
    fixed = model.noise_of(values[None, :], players)[0]
    draws = att.mc_noise64.T  # M x players, the exact draws
    x = values[-1]
    v = {}
    for code in range(2**n):
        noise = draws.copy()
        members = [j for j in range(n) if code >> j & 1]
        noise[:, members] = fixed[members]
        y = model.propagate(noise, players)[:, -1]
        count = np.sum(y >= x - 1e-6 * (1 + abs(x)))
        v[code] = min(np.log((count + 0.5) / (m + 0.5)), 0.0) if game == "dowhy" else np.log(max(count, 1) / m)
    v[2**n - 1] = 0.0
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        code = 0
        for j in order:
            phi[j] += v[code | 1 << j] - v[code]
            code |= 1 << j
    return phi / factorial(n), v[0]


@pytest.mark.parametrize("mechanisms", ["linear", {"b": "linear", "c": "max"}])
def test_exact_contributions_are_the_shapley_values_of_the_counting_game(mechanisms) -> None:
    model = rca_engine.fit(GRAPH, data(500, 0), mechanisms, seed=2)
    sample = {"a": 2.0, "b": 9.0, "c": 9.6, "d": 1.0}  # b's own noise is far beyond normal
    att = Attributor(model, "c", base="upper", tail="dowhy", game="counting", num_samples=1000, seed=5)
    values = model.values_of(sample, att.players)[0]
    expl = att.explain(values)
    phi, v_empty = brute_force(att, values, "dowhy")
    got = np.array([expl.contributions[p] for p in att.players])
    np.testing.assert_allclose(got, phi, atol=1e-3)
    assert expl.outlier_score == pytest.approx(-v_empty, abs=1e-9)  # tail "dowhy": the counting score itself
    assert got.sum() == pytest.approx(expl.outlier_score, abs=1e-9)  # efficiency
    assert expl.root_causes[0] == "b" and expl.method == "exact"


def test_the_default_game_keeps_the_counting_shares_and_the_fitted_tail_score() -> None:
    model = rca_engine.fit(GRAPH, data(500, 1), "linear", seed=3)
    sample = {"a": 2.0, "b": 14.0, "c": 14.5, "d": 1.0}  # beyond every simulated value: counting saturates
    expl = rca_engine.attribute(model, "c", sample, base="upper", seed=4, num_samples=1000)
    att = Attributor(model, "c", base="upper", num_samples=1000, seed=4)
    values = model.values_of(sample, att.players)[0]
    phi, _ = brute_force(att, values, "dowhy")
    score = model.it_score("c", [sample["c"]], base="upper")[0]
    assert expl.outlier_score == pytest.approx(score, rel=1e-6)  # the score the detector computes
    got = np.array([expl.contributions[p] for p in att.players])
    np.testing.assert_allclose(got / score, phi / phi.sum(), atol=0.01)  # shares of the counting game
    assert expl.root_causes[0] == "b"


def test_a_node_whose_noise_cannot_matter_gets_nothing() -> None:
    graph = nx.DiGraph([("a", "c"), ("z", "c")])
    rng = np.random.default_rng(6)
    a = rng.exponential(2.0, 400)
    frame = pd.DataFrame({"a": a, "z": rng.normal(0, 1, 400), "c": a + rng.exponential(0.3, 400)})
    model = rca_engine.fit(graph, frame, {"c": rca_engine.SumMechanism({"a": 1.0, "z": 0.0})})
    expl = rca_engine.attribute(model, "c", {"a": 12.0, "z": 3.0, "c": 12.2}, base="upper", method="exact")
    assert expl.contributions["z"] == 0.0 and expl.root_causes[0] == "a"


def test_counterfactuals_set_one_noise_to_its_median() -> None:
    model = rca_engine.fit(GRAPH, data(500, 2), "linear", seed=1)
    sample = {"a": 2.0, "b": 9.0, "c": 9.6, "d": 1.0}
    expl = rca_engine.attribute(model, "c", sample, base="upper")
    players = model.upstream("c")
    values = model.values_of(sample, players)[0]
    fixed = model.noise_of(values[None, :], players)[0]
    for j, node in enumerate(players):
        noise = fixed.copy()
        noise[j] = np.median(model.mechanisms[node].noise_samples_)
        assert expl.counterfactuals[node] == pytest.approx(model.propagate(noise[None, :], players)[0, -1])
    assert expl.counterfactuals["b"] < sample["c"] - 5.0  # a typical b would have made c normal


def test_permutation_sampling_agrees_with_exact_and_options_are_checked() -> None:
    model = rca_engine.fit(GRAPH, data(500, 3), "linear", seed=0)
    sample = {"a": 2.0, "b": 9.0, "c": 9.6, "d": 1.0}
    exact = rca_engine.attribute(model, "c", sample, base="upper", method="exact", seed=2)
    sampled = rca_engine.attribute(model, "c", sample, base="upper", method="permutation", seed=2,
                                   num_samples=3000, tolerance=0.002, max_permutations=2048)
    for node in exact.contributions:
        assert sampled.contributions[node] == pytest.approx(exact.contributions[node], abs=0.05 * exact.outlier_score)
    assert sampled.method == "permutation" and sampled.num_permutations >= 32
    for kwargs, message in [({"method": "magic"}, "unknown method"), ({"game": "poker"}, "unknown game"),
                            ({"num_samples": 10}, "at least 100"), ({"intervals": 1}, "at least 2")]:
        with pytest.raises(rca_engine.RCAError, match=message):
            rca_engine.attribute(model, "c", sample, **kwargs)
    with pytest.raises(rca_engine.RCAError, match="fitted rca_engine model"):
        rca_engine.attribute("model", "c", sample)  # type: ignore[arg-type]
