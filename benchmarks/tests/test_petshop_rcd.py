"""RCD (PyRCA's configuration, re-implemented): its CI test, a hand-built incident, and PetShop under the protocol."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmarks.petshop import percent_view, recall
from benchmarks.petshop_baselines import PUBLISHED_METHODS, ci_pvalue, kmeans_binned, rcd
from benchmarks.petshop_data import load_scenario


def _contingency(codes: np.ndarray, x: int, y: int) -> np.ndarray:
    table = np.zeros((codes[:, x].max() + 1, codes[:, y].max() + 1))
    np.add.at(table, (codes[:, x], codes[:, y]), 1)
    return table


@pytest.mark.parametrize("g_test", [False, True])
def test_ci_pvalue_matches_scipy(g_test):
    """Marginal: scipy's chi2_contingency without continuity correction; conditional: its statistics and degrees of
    freedom summed over the strata of the conditioning variable."""
    rng = np.random.default_rng(3)
    n = 600
    s = rng.integers(0, 2, n)
    x = (rng.random(n) < np.where(s == 1, 0.7, 0.4)).astype(np.int64)  # binary, like the F-node
    y = np.minimum(rng.integers(0, 4, n) + (x & s), 3)  # depends on x within stratum s = 1
    codes = np.column_stack([x, y, s])
    lam = "log-likelihood" if g_test else None
    ref = stats.chi2_contingency(_contingency(codes, 0, 1), correction=False, lambda_=lam)
    assert ci_pvalue(codes, 0, 1, g_test=g_test) == pytest.approx(ref.pvalue, rel=1e-9)
    parts = [stats.chi2_contingency(_contingency(codes[s == v], 0, 1), correction=False, lambda_=lam) for v in (0, 1)]
    expected = stats.chi2.sf(sum(p.statistic for p in parts), sum(p.dof for p in parts))
    assert ci_pvalue(codes, 0, 1, [2], g_test=g_test) == pytest.approx(expected, rel=1e-9)
    assert ci_pvalue(codes, 1, 0, [2], g_test=g_test) == pytest.approx(expected, rel=1e-9)  # symmetric in X, Y
    # a constant column has no degrees of freedom: independent (p = 1)
    assert ci_pvalue(np.column_stack([x, np.zeros(n, dtype=np.int64)]), 0, 1) == 1.0


def test_kmeans_bins_keep_small_integers_and_zero_constants():
    values = np.column_stack([np.tile(np.arange(5.0), 20), np.full(100, 7.0), np.linspace(0, 1, 100)])
    codes = kmeans_binned(values, 5)
    np.testing.assert_array_equal(codes[:, 0], values[:, 0])  # 5 distinct values -> 5 bins, one each
    assert (codes[:, 1] == 0).all()
    assert set(codes[:, 2]) == set(range(5)) and (np.diff(codes[:, 2]) >= 0).all()  # ordinal bins


def _incident(seed: int = 11, n_normal: int = 400, n_abnormal: int = 60) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Discrete chain Root -> Child -> Grandchild (each a noisy copy of its cause), six unrelated nodes, one
    constant node and one node without data in the abnormal window. In the abnormal period Root moves from
    {0, 1, 2} to {3, 4}: Child and Grandchild change too, but are independent of F given Root."""
    rng = np.random.default_rng(seed)

    def draw(n: int, abnormal: bool) -> pd.DataFrame:
        root = rng.integers(3, 5, n) if abnormal else rng.integers(0, 3, n)
        child = np.where(rng.random(n) < 0.8, root, rng.integers(0, 5, n))
        grandchild = np.where(rng.random(n) < 0.8, child, rng.integers(0, 5, n))
        frame = pd.DataFrame({"Root": root, "Child": child, "Grandchild": grandchild}, dtype=float)
        for i in range(6):
            frame[f"U{i}"] = rng.integers(0, 5, n).astype(float)
        frame["Const"] = 2.0
        frame["Silent"] = np.nan if abnormal else rng.normal(0, 1, n)
        return frame

    normal, abnormal = draw(n_normal, False), draw(n_abnormal, True)
    normal = normal.mask(rng.random(normal.shape) < 0.03)  # NaNs: mean-imputed
    return normal, abnormal


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_root_cause_ranked_first(seed):
    normal, abnormal = _incident()
    graph = nx.DiGraph([("Root", "Child"), ("Child", "Grandchild"), ("Ghost", "Grandchild")])  # not used by RCD
    ranking = rcd(seed=seed).rank(graph, "Grandchild", "latency", normal, abnormal)
    assert ranking[0] == "Root", ranking
    assert 1 <= len(ranking) <= 3
    assert not {"Const", "Silent", "Ghost"} & set(ranking)  # no variation, no data in the window, no data at all


def test_children_are_independent_of_f_given_root():
    """The premise of the ranking above, checked directly: F depends on Root, and on Child only through Root."""
    normal, abnormal = _incident()
    values = np.vstack([normal.fillna(normal.mean())[["Root", "Child"]], abnormal[["Root", "Child"]]])
    codes = np.column_stack([kmeans_binned(values, 5), np.r_[np.zeros(len(normal)), np.ones(len(abnormal))]])
    codes = codes.astype(np.int64)
    assert ci_pvalue(codes, 2, 0) < 1e-10 and ci_pvalue(codes, 2, 1) < 1e-10
    assert ci_pvalue(codes, 2, 0, [1]) < 1e-10
    assert ci_pvalue(codes, 2, 1, [0]) > 0.01


def test_degenerate_inputs_give_no_answer():
    normal, abnormal = _incident()
    method = rcd()
    assert method.rank(nx.DiGraph(), "Root", "latency", normal[["Silent"]], abnormal[["Silent"]]) == []
    assert method.rank(nx.DiGraph(), "Root", "latency", normal, abnormal.iloc[:0]) == []
    # nothing differs between the periods at any level: no node ever depends on F
    same = pd.DataFrame({"A": np.tile([0.0, 1.0], 50), "B": np.tile([1.0, 0.0], 50)})
    assert method.rank(nx.DiGraph(), "A", "latency", same, same.iloc[:10]) == []


def test_petshop_low_traffic(shared_dataset):
    scenario = load_scenario(shared_dataset("petshop"), "low_traffic")
    assert "RCD (PyRCA config, re-implemented)" in PUBLISHED_METHODS
    method = rcd()
    counts = {"latency": 14, "availability": 12}
    for metric, n in counts.items():
        res = recall(scenario, method, metric)
        assert res.n == n and res.empty == 0  # RCD always names a node on these issues
        assert 0.0 <= res.recall(1) <= res.recall(3) <= 1.0
    # seeded: the same call gives the same ranking
    issue = scenario.issues[0]
    args = (scenario.causal_graph, issue.target_node, issue.target_metric,
            percent_view(scenario.normal, issue.target_metric, issue.statistic),
            percent_view(issue.metrics, issue.target_metric, issue.statistic))
    assert method.rank(*args) == rcd().rank(*args)
