"""Exactness: engine vs. an independent closed-form computation on linear-Gaussian SCMs.

For Y = Σ c_j N_j with Gaussian noises, fixing the noises of a coalition S leaves Y ~ N(Σ_S c_j n_j, Σ_¬S c_j² σ_j²),
so every v(S) = log P(|Y - m| >= |y - m|) has a closed form; the brute force enumerates all coalitions and applies
the Shapley formula directly (no code shared with the engine).
"""

from __future__ import annotations

import itertools
from math import factorial

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import rca_engine
from rca_engine.scoring import ITScorer


def brute_force_shapley(coef: np.ndarray, sd: np.ndarray, noise: np.ndarray,
                        one_sided: bool = False) -> tuple[np.ndarray, float]:
    """Shapley values of v(S) = log P(|Y_S| >= |y|) (``one_sided``: log P(Y_S >= y)) for Y = Σ c_j N_j,
    N_j ~ N(0, sd_j²) (marginal median 0)."""
    n = coef.size
    y = float(coef @ noise)

    def v(members: tuple[int, ...]) -> float:
        s = set(members)
        mu = sum(coef[j] * noise[j] for j in s)
        var = sum((coef[j] * sd[j]) ** 2 for j in range(n) if j not in s)
        if var == 0:
            return 0.0
        sig = np.sqrt(var)
        if one_sided:
            return float(norm.logsf((y - mu) / sig))
        return float(np.logaddexp(norm.logcdf((-abs(y) - mu) / sig), norm.logcdf((mu - abs(y)) / sig)))

    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for k in range(n):
            for subset in itertools.combinations(others, k):
                w = factorial(k) * factorial(n - k - 1) / factorial(n)
                phi[i] += w * (v(tuple(subset) + (i,)) - v(subset))
    return phi, -v(())


def linear_gaussian(edges: dict[tuple[str, str], float], sd: dict[str, float], n: int, seed: int) -> tuple[nx.DiGraph, pd.DataFrame]:
    graph = nx.DiGraph()
    graph.add_nodes_from(sd)
    graph.add_edges_from(edges)
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for v in nx.topological_sort(graph):
        data[v] = rng.normal(0, sd[v], n) + sum(w * data[a] for (a, b), w in edges.items() if b == v)
    return graph, pd.DataFrame(data)


def noise_coefficients(graph: nx.DiGraph, edges: dict[tuple[str, str], float], target: str, nodes: list[str]) -> np.ndarray:
    """c_j = total effect of node j's noise on the target (sum over directed paths of edge-weight products)."""
    out = []
    for j in nodes:
        total = 0.0
        for path in nx.all_simple_paths(graph, j, target) if j != target else [[target]]:
            total += float(np.prod([edges[(a, b)] for a, b in zip(path, path[1:], strict=False)]))
        out.append(total)
    return np.array(out)


EDGES = {("A", "B"): 0.8, ("B", "D"): 0.5, ("C", "D"): 0.7, ("A", "C"): 0.3}
SD = {"A": 1.0, "B": 1.0, "C": 0.5, "D": 0.6}


@pytest.mark.parametrize("game", ["counting", "tail"])
@pytest.mark.parametrize("base", ["zscore", "median", "upper"])
def test_exact_shapley_matches_closed_form(base: str, game: str) -> None:
    graph, data = linear_gaussian(EDGES, SD, 20000, seed=0)
    model = rca_engine.fit(graph, data, "linear")
    nodes = ["A", "B", "C", "D"]
    noise = np.array([2.2, 0.4, -0.3, 0.8])  # A is the root cause
    values: dict[str, float] = {}
    for v, e in zip(nodes, noise, strict=True):
        values[v] = e + sum(w * values[a] for (a, b), w in EDGES.items() if b == v)
    expl = rca_engine.attribute(model, "D", values, method="exact", num_samples=20000, base=base, seed=4,
                                game=game)
    coef = noise_coefficients(graph, EDGES, "D", nodes)
    phi, score = brute_force_shapley(coef, np.array([SD[v] for v in nodes]), noise, one_sided=base == "upper")
    got = np.array([expl.contributions[v] for v in nodes])
    assert expl.outlier_score == pytest.approx(score, abs=0.1 * score)
    assert np.max(np.abs(got - phi)) < 0.08 * score + 0.05, (got, phi)
    assert expl.root_causes[0] == "A"
    assert got.sum() == pytest.approx(expl.outlier_score, abs=1e-9)


def test_gaussian_tail_closed_form() -> None:
    """The fitted tail ranks events beyond the sample range and tracks -log P(|Z| >= z) for a Gaussian."""
    ref = np.random.default_rng(1).standard_normal(10000)
    z = np.array([1.0, 2.0, 3.0, 4.0, 4.5, 5.0, 6.0])
    truth = -np.log(2 * norm.sf(z))
    fitted = ITScorer("zscore", "fitted").fit(ref).score(z)
    counting = ITScorer("zscore", "dowhy").fit(ref).score(z)
    assert np.all(np.diff(fitted) > 0)  # keeps ranking extreme events
    inside = z <= np.abs(ref).max()
    assert np.all(np.abs(fitted - truth)[inside] < 0.2 * truth[inside] + 0.1)
    # beyond the largest sample the tail continues along its tangent: conservative for a Gaussian, not far off
    assert np.all(fitted[~inside] <= truth[~inside] + 0.1)
    assert np.all(fitted[~inside] >= 0.75 * truth[~inside])
    cap = np.log((10000 + 0.5) / 0.5)
    assert counting[-1] == pytest.approx(cap) and counting[-2] == pytest.approx(cap)  # DoWhy's estimator saturates
    median_fitted = ITScorer("median", "fitted").fit(ref).score(z)
    assert np.all(np.diff(median_fitted) > 0)
    assert np.all(np.abs(median_fitted[:4] - truth[:4]) < 0.15 * truth[:4] + 0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exponential_tail_closed_form(seed: int) -> None:
    """Latency-like exponential tails: the extrapolation is accurate far beyond the sample (truth is linear)."""
    ref = np.random.default_rng(seed).exponential(1.0, 10000)
    x = np.array([5.0, 8.0, 10.0, 15.0, 20.0, 40.0])  # the sample ends near 9-10
    truth_z = x  # P(|X - 1| >= x - 1) = P(X >= x) = e^-x for x > 2
    truth_median = x - np.log(2.0)  # two-sided: 2 P(X >= x)
    got_z = ITScorer("zscore", "fitted").fit(ref).score(x)
    got_median = ITScorer("median", "fitted").fit(ref).score(x)
    got_upper = ITScorer("upper", "fitted").fit(ref).score(x)
    got_upper_counting = ITScorer("upper", "dowhy").fit(ref).score(x[:1])
    assert np.all(np.abs(got_z - truth_z) < 0.2 * truth_z), got_z
    assert np.all(np.abs(got_median - truth_median) < 0.2 * truth_median), got_median
    assert np.all(np.abs(got_upper - x) < 0.2 * x), got_upper  # one-sided: -log P(X >= x) = x
    assert got_upper_counting[0] == pytest.approx(-np.log((np.sum(ref >= 5.0) + 0.5) / 10000.5))
    assert np.all(np.diff(got_z) > 0) and np.all(np.diff(got_median) > 0) and np.all(np.diff(got_upper) > 0)


def test_upper_base_ignores_small_values() -> None:
    """One-sided: an unusually small value (a fast request) is no outlier; a large one scores as two-sided + log 2."""
    ref = np.random.default_rng(3).standard_normal(20000)
    upper = ITScorer("upper", "fitted").fit(ref)
    median = ITScorer("median", "fitted").fit(ref)
    assert upper.score(np.array([-4.0]))[0] < 1e-3 and median.score(np.array([-4.0]))[0] > 8.0
    assert upper.score(np.array([3.0]))[0] == pytest.approx(-norm.logsf(3.0), rel=0.1)
    assert upper.score(np.array([3.0]))[0] == pytest.approx(median.score(np.array([3.0]))[0] + np.log(2), abs=0.05)


def test_sampling_shapley_close_to_exact_on_13_nodes() -> None:
    rng = np.random.default_rng(7)
    names = [f"n{i}" for i in range(13)]
    edges: dict[tuple[str, str], float] = {}
    for i in range(12):  # every node feeds a later one, so all 12 others are ancestors of n12
        for j in {int(rng.integers(i + 1, 13)), int(rng.integers(i + 1, 13))}:
            edges[(names[i], names[j])] = float(rng.uniform(0.3, 0.7))
    sd = {v: 1.0 for v in names}
    graph, data = linear_gaussian(edges, sd, 3000, seed=8)
    target = names[-1]
    players = rca_engine.upstream_order(graph, target)
    assert len(players) >= 12
    noise = {v: 0.0 for v in names}
    noise[players[2]] = 4.0  # root cause
    values: dict[str, float] = {}
    for v in nx.topological_sort(graph):
        values[v] = noise[v] + sum(w * values[a] for (a, b), w in edges.items() if b == v)
    model = rca_engine.fit(graph, data, "linear")
    exact = rca_engine.attribute(model, target, values, method="exact", seed=5, num_samples=2000)
    approx = rca_engine.attribute(model, target, values, method="permutation", seed=5, num_samples=2000)
    err = max(abs(exact.contributions[v] - approx.contributions[v]) for v in players)
    assert err < 0.05 * exact.outlier_score
    assert exact.root_causes[0] == approx.root_causes[0] == players[2]
    assert sum(approx.contributions.values()) == pytest.approx(approx.outlier_score, abs=1e-9)
