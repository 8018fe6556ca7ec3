"""distribution_change / what_if on synthetic regressions with known truth, against independent computations.

The systems are sums of independent own times (call graph front -> a, front -> b, b -> db; structure "sum"), so:
- for the mean, each node's Shapley value is exactly the change of its mean own time (the game is additive);
- for a quantile, a brute-force Monte Carlo over the four coalitions of two players (own code, independent
  draws from the generator) gives the Shapley values to compare with.
"""

from __future__ import annotations

import time

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import rca_engine
from rca_engine.synthetic import random_system
from tests.support.regression_periods import GRAPH, SUM, N, own_times, periods, table


def brute_force_shapley(draw_old, draw_new, players: list[str], q: float, n: int = 400_000) -> dict[str, float]:
    """Shapley values of the q-quantile of front by direct Monte Carlo per coalition (two players)."""
    rng_old, rng_new = np.random.default_rng(101), np.random.default_rng(202)
    old, new = draw_old(n, rng_old), draw_new(n, rng_new)

    def value(coalition: set[str]) -> float:
        own = {k: (new[k] if k in coalition else old[k]) for k in old}
        return float(np.quantile(own["front"] + own["a"] + own["b"] + own["db"] + own["new"], q))

    a, b = players
    v = {frozenset(): value(set()), frozenset({a}): value({a}), frozenset({b}): value({b}),
         frozenset({a, b}): value({a, b})}
    phi_a = 0.5 * (v[frozenset({a})] - v[frozenset()]) + 0.5 * (v[frozenset({a, b})] - v[frozenset({b})])
    phi_b = 0.5 * (v[frozenset({b})] - v[frozenset()]) + 0.5 * (v[frozenset({a, b})] - v[frozenset({a})])
    return {a: phi_a, b: phi_b}


def test_two_shifted_services_mean_equals_own_time_change():
    base, comp, own0, own1 = periods(1, a=1.5, db=1.3)
    r = rca_engine.distribution_change(GRAPH, base, comp, "front", stat="mean", mechanisms=SUM)
    assert set(r.contributions) == {"a", "db"}
    for node in ("a", "db"):  # the mean game is additive: Shapley value = change of the mean own time
        assert r.contributions[node] == pytest.approx(own1[node].mean() - own0[node].mean(), rel=1e-9)
    assert sum(r.contributions.values()) == pytest.approx(r.modelled_change, abs=1e-9)
    assert r.root_causes[0] == "a"  # a moved by ~6 ms, db by ~3 ms
    assert r.significant and r.observed_change > r.noise_floor
    lo, hi = r.intervals["a"]
    assert lo < r.contributions["a"] < hi and lo > 0


def test_two_shifted_services_p99_against_brute_force():
    base, comp, _, _ = periods(2, a=1.6, db=1.3)
    r = rca_engine.distribution_change(GRAPH, base, comp, "front", stat="p99", mechanisms=SUM)
    truth = brute_force_shapley(lambda n, g: own_times(n, g), lambda n, g: own_times(n, g, a=1.6, db=1.3),
                                ["a", "db"], 0.99)
    assert r.root_causes[:2] == ["a", "db"]
    assert sum(r.contributions.values()) == pytest.approx(r.modelled_change, abs=1e-9)
    for node in ("a", "db"):  # 2,000 rows per period: the p99 of one sample is within a few ms of the truth
        lo, hi = r.intervals[node]
        assert abs(r.contributions[node] - truth[node]) < max(0.35 * truth[node], 3.0), (node, r.contributions, truth)
        assert lo - 2.0 < truth[node] < hi + 2.0
    assert abs(r.unexplained) < 2 * r.noise_floor


NEW_EDGE = rca_engine.CallEdge(callers=("front",), callee="new")


def test_new_call_is_a_player_of_kind_new():
    base, comp, _, own1 = periods(3, new=True)
    r = rca_engine.distribution_change(GRAPH, base, comp, "front", stat="mean", mechanisms=SUM)
    assert r.root_causes[0] == NEW_EDGE and r.kinds[NEW_EDGE] == "new"
    assert r.contributions[NEW_EDGE] == pytest.approx(own1["new"].mean(), rel=1e-9)
    assert r.counterfactuals[NEW_EDGE] == pytest.approx(r.comparison_value - r.contributions[NEW_EDGE], rel=1e-6)


def test_a_column_in_one_table_only_is_a_call_of_that_period():
    base, comp, _, own1 = periods(3, new=True)
    r = rca_engine.distribution_change(GRAPH, base.drop(columns=["new"]), comp, "front", stat="mean", mechanisms=SUM,
                                       intervals=0)
    assert r.root_causes[0] == NEW_EDGE and r.kinds[NEW_EDGE] == "new"
    assert r.contributions[NEW_EDGE] == pytest.approx(own1["new"].mean(), rel=1e-9)
    gone = rca_engine.distribution_change(GRAPH, comp, base.drop(columns=["new"]), "front", stat="mean",
                                          mechanisms=SUM, intervals=0)
    assert gone.kinds[NEW_EDGE] == "gone"
    assert gone.contributions[NEW_EDGE] == pytest.approx(-own1["new"].mean(), rel=1e-9)


def test_without_call_counts_a_repeated_call_moves_the_callee():
    """Without counts the engine cannot tell a second call from a slower one: the callee's own time moved (with
    counts the edge b->db is the player: tests/rca_engine/test_call_structure.py)."""
    base, comp, own0, own1 = periods(4, db_calls=2)
    r = rca_engine.distribution_change(GRAPH, base, comp, "front", stat="p95", mechanisms=SUM)
    assert r.root_causes[0] == "db" and r.kinds["db"] == "changed"
    assert "b" not in r.contributions or abs(r.contributions["b"]) < 0.1 * r.contributions["db"]
    mean = rca_engine.distribution_change(GRAPH, base, comp, "front", stat="mean", mechanisms=SUM)
    assert mean.contributions["db"] == pytest.approx(own1["db"].mean() - own0["db"].mean(), rel=1e-9)


def test_partial_fault_on_five_percent_of_requests_is_found():
    base, comp, _, _ = periods(5, partial=0.05)
    r = rca_engine.distribution_change(GRAPH, base, comp, "front", stat="p99", mechanisms=SUM)
    assert r.root_causes[0] == "a" and r.significant
    assert r.p_values["a"] < 1e-3


@pytest.mark.parametrize("seed", [10, 11, 12, 13])
@pytest.mark.parametrize("stat", ["p99", "mean"])
def test_null_case_reports_nothing_beyond_the_noise_floor(seed, stat):
    base, comp, _, _ = periods(seed)
    r = rca_engine.distribution_change(GRAPH, base, comp, "front", stat=stat, mechanisms=SUM)
    assert not r.significant
    assert abs(r.observed_change) <= r.noise_floor
    for node, (lo, hi) in r.intervals.items():  # a node that slipped through the test explains nothing
        assert lo <= 0.0 <= hi or abs(r.contributions[node]) < r.noise_floor, (node, r.contributions)


def test_tail_probability_statistic():
    base, comp, _, _ = periods(6, a=1.5)
    threshold = float(np.quantile(base["front"], 0.95))
    r = rca_engine.distribution_change(GRAPH, base, comp, "front", stat=f"tail>{threshold}", mechanisms=SUM)
    assert r.stat.startswith("tail>") and r.root_causes == ["a"]
    assert r.baseline_value == pytest.approx(float((base["front"] > threshold).mean()))
    assert r.comparison_value == pytest.approx(float((comp["front"] > threshold).mean()))
    assert 0.0 < r.contributions["a"] <= 1.0


def test_learned_mechanism_change_is_attributed_to_the_changed_node():
    rng = np.random.default_rng(8)
    graph = rca_engine.graph_from_edges([("x", "y"), ("y", "z")])

    def draw(coef: float) -> pd.DataFrame:
        x = rng.gamma(3.0, 2.0, N)
        y = coef * x + rng.normal(10, 1, N)
        return pd.DataFrame({"x": x, "y": y, "z": y + rng.normal(5, 1, N)})

    base, comp = draw(2.0), draw(3.0)
    r = rca_engine.distribution_change(graph, base, comp, "z", stat="mean", mechanisms="linear")
    assert r.root_causes[0] == "y"
    assert "x" not in r.contributions
    # only y's f changed: its contribution is the change of the mean of z, (3 - 2) * E[x] = 6 ms
    assert r.contributions["y"] == pytest.approx(comp["z"].mean() - base["z"].mean(), abs=0.5)
    assert r.contributions["y"] == pytest.approx(6.0, abs=0.6)


def test_permutation_estimator_on_many_players_matches_the_additive_truth():
    rng = np.random.default_rng(8)
    names = [f"s{i}" for i in range(14)]
    graph = rca_engine.graph_from_edges([(n, "entry") for n in names])

    def draw(scale: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        own = rng.gamma(2.0, 3.0, (N, len(names))) * scale
        frame = pd.DataFrame(own, columns=names)
        frame["entry"] = own.sum(axis=1) + rng.gamma(2.0, 1.0, N)
        return frame, own

    scale = 1.0 + 0.1 * np.arange(1, 15)  # all 14 changed, the last most
    (base, own0), (comp, own1) = draw(np.ones(14)), draw(scale)
    r = rca_engine.distribution_change(graph, base, comp, "entry", stat="mean", mechanisms=SUM, intervals=0)
    assert r.method == "permutation" and len(r.contributions) >= 12
    assert sum(r.contributions.values()) == pytest.approx(r.modelled_change, abs=1e-9)
    for i, node in enumerate(names):
        if node in r.contributions:
            assert r.contributions[node] == pytest.approx(own1[:, i].mean() - own0[:, i].mean(), abs=1e-6)
    assert r.root_causes[0] == "s13"


def test_what_if_scaled_own_time_mean_is_exact():
    _, comp, _, own1 = periods(9, a=1.5)
    w = rca_engine.what_if(GRAPH, comp, "front", {"a": 0.7}, stat="mean", mechanisms=SUM)
    assert w.current_value == pytest.approx(comp["front"].mean())
    assert w.change == pytest.approx(-0.3 * own1["a"].mean(), rel=1e-9)
    lo, hi = w.interval
    assert lo < w.predicted_value < hi


def test_what_if_baseline_distribution_recovers_the_baseline_p99():
    base, comp, _, _ = periods(10, a=1.8)
    w = rca_engine.what_if(GRAPH, comp, "front", {"a": "baseline"}, stat="p99", baseline=base, mechanisms=SUM)
    truth = float(np.quantile(table(own_times(400_000, np.random.default_rng(5))).front, 0.99))
    lo, hi = w.interval
    assert lo - 2.0 < truth < hi + 2.0
    assert w.predicted_value < w.current_value - 10.0
    both = rca_engine.what_if(GRAPH, comp, "front", {"a": "-30%", "b": 0.5}, stat="p99", mechanisms=SUM)
    assert set(both.per_node) == {"a", "b"}
    assert both.predicted_value < min(both.per_node.values())


def test_errors_are_clear():
    base, comp, _, _ = periods(11)
    with pytest.raises(rca_engine.RCAError, match="unknown stat"):
        rca_engine.distribution_change(GRAPH, base, comp, "front", stat="p-1", mechanisms=SUM)
    with pytest.raises(rca_engine.RCAError, match="between 0 and 1"):
        rca_engine.distribution_change(GRAPH, base, comp, "front", stat="p100", mechanisms=SUM)
    with pytest.raises(rca_engine.UnknownNodeError):
        rca_engine.distribution_change(GRAPH, base, comp, "nope", mechanisms=SUM)
    with pytest.raises(rca_engine.DataError, match="baseline data lacks columns for graph nodes 'db'"):
        rca_engine.distribution_change(GRAPH, base.drop(columns=["db"]), comp.drop(columns=["db"]), "front",
                                       mechanisms=SUM)
    with pytest.raises(rca_engine.RCAError, match="threshold"):
        rca_engine.distribution_change(GRAPH, base, comp, "front", stat="tail", mechanisms=SUM)
    with pytest.raises(rca_engine.RCAError, match="needs the baseline"):
        rca_engine.what_if(GRAPH, comp, "front", {"a": "baseline"}, mechanisms=SUM)
    with pytest.raises(rca_engine.RCAError, match="not upstream"):
        rca_engine.what_if(GRAPH, comp, "b", {"a": 0.5}, mechanisms=SUM)
    with pytest.raises(rca_engine.RCAError, match="factor"):
        rca_engine.what_if(GRAPH, comp, "front", {"a": -1}, mechanisms=SUM)


def test_statistics_parse():
    assert rca_engine.target_statistic("p99").q == pytest.approx(0.99)
    assert rca_engine.target_statistic("P99.9").q == pytest.approx(0.999)
    assert rca_engine.target_statistic(0.9).name == "p90"
    assert rca_engine.target_statistic("median").name == "p50"
    assert rca_engine.target_statistic("tail", threshold=250).threshold == 250.0
    x = np.arange(1, 101, dtype=float)
    assert rca_engine.target_statistic("tail>90").of(x) == pytest.approx(0.10)
    assert rca_engine.target_statistic("mean").of(x) == pytest.approx(50.5)


def test_25_nodes_at_2000_rows_is_fast():
    rng = np.random.default_rng(25)
    system = random_system(25, rng)
    base, comp = system.simulate(N, rng), system.simulate(N, rng, fault="s3", factor=2.0)
    assert isinstance(system.causal_graph, nx.DiGraph)
    rca_engine.distribution_change(system.causal_graph, base, comp, system.entry, mechanisms=dict(system.structure))
    started = time.perf_counter()
    r = rca_engine.distribution_change(system.causal_graph, base, comp, system.entry, stat="p99",
                                       mechanisms=dict(system.structure))
    elapsed = time.perf_counter() - started
    assert r.root_causes[0] == "s3"
    assert elapsed < 3.0  # about 0.3 s with 50 bootstrap replicates (benchmarks/regression.py); slack for busy CI
