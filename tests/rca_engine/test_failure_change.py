"""rca_engine.failure_change: attribution of an error-rate change to the nodes whose failure mechanism changed.

Synthetic traffic with known changes; the Shapley values are checked against an independent computation: the
target's failure probability of every coalition by enumerating every noise configuration of the noisy-OR model
(own failures and propagations), and the Shapley values by averaging marginal contributions over all orders.
"""

from __future__ import annotations

import itertools
import math

import networkx as nx
import pandas as pd
import pytest

from rca_engine import RCAError, error_rate_change, failure_model, fit_failures
from rca_engine.failure_change import is_tree

# callee -> caller: the database behind payments, payments behind its call from the frontend (a call-gap node), and
# a cache behind cart whose errors cart mostly handles (retries)
GRAPH = nx.DiGraph([("db", "pay"), ("pay", "net_pay"), ("net_pay", "front"), ("cart", "front"), ("cache", "cart")])
OWN = {"db": 0.002, "pay": 0.01, "net_pay": 0.001, "front": 0.002, "cart": 0.005, "cache": 0.02}
PROP = {("cache", "cart"): 0.1}  # every other edge propagates (p = 1)
N = 4000


def simulate(graph: nx.DiGraph, own: dict[str, float], prop: dict[tuple[str, str], float], n: int,
             seed: int) -> pd.DataFrame:
    return failure_model(graph, own, prop).sample(n, seed)


def brute_force(graph: nx.DiGraph, m0, m1, players: list[str], target: str) -> tuple[dict[str, float], float]:
    """Shapley values (pp) and v(all) - v(none) of the rate game by full enumeration (tiny graphs only)."""
    nodes = [n for n in nx.topological_sort(graph) if n in nx.ancestors(graph, target) | {target}]
    edges = [(u, v) for v in nodes for u in graph.predecessors(v)]

    def rate(coalition: frozenset) -> float:
        def params(v):
            return (m1 if v in coalition else m0).mechanisms[v]
        total = 0.0
        for bits in itertools.product([False, True], repeat=len(nodes) + len(edges)):
            o = dict(zip(nodes, bits[:len(nodes)], strict=True))
            e = dict(zip(edges, bits[len(nodes):], strict=True))
            w = 1.0
            for v in nodes:
                q = params(v).own_rate
                w *= q if o[v] else 1.0 - q
            for u, v in edges:
                m = params(v)
                p = m.propagation[m.parents.index(u)]
                w *= p if e[(u, v)] else 1.0 - p
            failed: dict[str, bool] = {}
            for v in nodes:
                failed[v] = o[v] or any(failed[u] and e[(u, v)] for u in graph.predecessors(v))
            total += w * failed[target]
        return total

    values = {frozenset(s): rate(frozenset(s)) for r in range(len(players) + 1)
              for s in itertools.combinations(players, r)}
    phi = dict.fromkeys(players, 0.0)
    orders = list(itertools.permutations(players))
    for order in orders:
        seen: frozenset = frozenset()
        for p in order:
            phi[p] += (values[seen | {p}] - values[seen]) / len(orders)
            seen = seen | {p}
    return {p: v * 100 for p, v in phi.items()}, (values[frozenset(players)] - values[frozenset()]) * 100


def fitted(graph: nx.DiGraph, base: pd.DataFrame, comp: pd.DataFrame, target: str):
    nodes = [n for n in nx.topological_sort(graph) if n in nx.ancestors(graph, target) | {target}]
    sub = graph.subgraph(nodes).copy()
    return fit_failures(sub, base[nodes]), fit_failures(sub, comp[nodes])


@pytest.fixture(scope="module")
def spike():
    """payments' own failure rate 1 % -> 10 %; net_pay and the frontend only propagate it."""
    base = simulate(GRAPH, OWN, PROP, N, seed=1)
    comp = simulate(GRAPH, {**OWN, "pay": 0.10}, PROP, N, seed=2)
    return base, comp, error_rate_change(GRAPH, base, comp, "front", seed=3)


def test_a_service_failing_more_on_its_own_comes_first(spike):
    base, comp, r = spike
    assert r.root_causes[0] == "pay" and r.kinds["pay"] == "own_rate"
    # the callers that only propagate its failures did not change: they are no players
    assert "net_pay" not in r.contributions and "front" not in r.contributions
    assert r.contributions["pay"] == pytest.approx(9.0, abs=2.0)   # pp: 1 % -> 10 %
    assert r.own_rates["pay"][0] < 2.0 and 8.0 < r.own_rates["pay"][1] < 12.0
    assert sum(r.contributions.values()) == pytest.approx(r.modelled_change, abs=1e-9)
    assert r.observed_change == pytest.approx((comp["front"].mean() - base["front"].mean()) * 100)
    assert abs(r.unexplained) < 1.0 and r.significant and r.observed_change > 5 * r.noise_floor
    lo, hi = r.intervals["pay"]
    assert lo < r.contributions["pay"] < hi and r.change_interval is not None
    # had payments not changed, the window's rate would be about the baseline's
    assert r.counterfactuals["pay"] == pytest.approx(r.baseline_value, abs=1.0)
    assert r.computation == "closed_form"


def test_forced_players_get_shapley_values_of_the_exact_game(spike):
    base, comp, _ = spike
    players = ["pay", "net_pay", "front"]
    r = error_rate_change(GRAPH, base, comp, "front", players=players, intervals=0)
    m0, m1 = fitted(GRAPH, base, comp, "front")
    phi, total = brute_force(GRAPH, m0, m1, players, "front")
    assert r.modelled_change == pytest.approx(total, abs=1e-9)
    for p in players:
        assert r.contributions[p] == pytest.approx(phi[p], abs=1e-9)
    assert r.contributions["pay"] > 0.9 * r.modelled_change   # the propagating callers get ~0
    assert abs(r.contributions["net_pay"]) < 0.3 and abs(r.contributions["front"]) < 0.3


def test_two_changes_split_the_change_like_the_brute_force():
    """payments fails more and cart stops handling the cache's errors (its retry was removed): both are players,
    the cache's own rate is unchanged and gets nothing."""
    base = simulate(GRAPH, OWN, PROP, N, seed=5)
    comp = simulate(GRAPH, {**OWN, "pay": 0.05}, {("cache", "cart"): 1.0}, N, seed=6)
    r = error_rate_change(GRAPH, base, comp, "front", intervals=0)
    assert set(r.contributions) == {"pay", "cart"}, r.p_values
    assert r.kinds["cart"] == "propagation" and r.propagation["cart"]["cache"][1] > 90.0
    m0, m1 = fitted(GRAPH, base, comp, "front")
    phi, total = brute_force(GRAPH, m0, m1, ["pay", "cart"], "front")
    assert r.modelled_change == pytest.approx(total, abs=1e-9)
    for p, v in phi.items():
        assert r.contributions[p] == pytest.approx(v, abs=1e-9)
    assert r.contributions["pay"] == pytest.approx(4.0, abs=1.5) and r.contributions["cart"] == pytest.approx(1.8, abs=1.0)


def test_a_shared_callee_is_simulated_with_common_random_numbers():
    """Not a tree: the database is called by payments and by cart. The simulated game agrees with the exact
    enumeration within its sampling error, and the values still sum to the modelled change."""
    g = nx.DiGraph([("db", "pay"), ("db", "cart"), ("pay", "front"), ("cart", "front")])
    own = {"db": 0.005, "pay": 0.005, "cart": 0.005, "front": 0.001}
    prop = {("db", "cart"): 0.5}
    base = simulate(g, own, prop, N, seed=7)
    comp = simulate(g, {**own, "db": 0.08}, prop, N, seed=8)
    assert not is_tree(g, ["db", "pay", "cart", "front"])
    r = error_rate_change(g, base, comp, "front", intervals=0, players=["db", "cart", "pay"])
    assert r.computation == "simulated" and r.root_causes[0] == "db"
    assert sum(r.contributions.values()) == pytest.approx(r.modelled_change, abs=1e-9)
    m0, m1 = fitted(g, base, comp, "front")
    phi, total = brute_force(g, m0, m1, ["db", "cart", "pay"], "front")
    se = math.sqrt(0.1 / 100_000) * 100  # pp: standard error of a simulated rate near 10 %
    assert r.modelled_change == pytest.approx(total, abs=4 * se)
    for p, v in phi.items():
        assert r.contributions[p] == pytest.approx(v, abs=4 * se)
    # the independence approximation of the closed form is biased here (db reaches front by two paths)
    closed = error_rate_change(g, base, comp, "front", intervals=0, players=["db", "cart", "pay"],
                               computation="closed_form")
    assert abs(closed.modelled_change - total) > abs(r.modelled_change - total)


def test_no_change_reports_nothing_beyond_the_noise_floor():
    for seed in range(3):
        base = simulate(GRAPH, OWN, PROP, N, seed=10 + seed)
        comp = simulate(GRAPH, OWN, PROP, N, seed=20 + seed)
        r = error_rate_change(GRAPH, base, comp, "front", intervals=0)
        assert not r.significant and r.contributions == {}, r.p_values
        assert abs(r.observed_change) < 2 * r.noise_floor


def test_a_drop_ranks_the_node_that_recovered_first():
    base = simulate(GRAPH, {**OWN, "cart": 0.08}, PROP, N, seed=30)
    comp = simulate(GRAPH, OWN, PROP, N, seed=31)
    r = error_rate_change(GRAPH, base, comp, "front", intervals=0)
    assert r.root_causes[0] == "cart" and r.contributions["cart"] < -5.0 and r.observed_change < 0


def test_a_call_of_one_period_only_counts_as_never_failing_in_the_other():
    base = simulate(GRAPH, OWN, PROP, N, seed=40).drop(columns=["cache"])
    comp = simulate(GRAPH, OWN, PROP, N, seed=41)
    r = error_rate_change(GRAPH, base, comp, "front", intervals=0)
    assert r.baseline_rows == N and "cache" in r.p_values


def test_bad_input_is_a_clear_error():
    base = simulate(GRAPH, OWN, PROP, 200, seed=50)
    with pytest.raises(RCAError, match="alpha"):
        error_rate_change(GRAPH, base, base, "front", alpha=2.0)
    with pytest.raises(RCAError, match="computation"):
        error_rate_change(GRAPH, base, base, "front", computation="magic")
    with pytest.raises(RCAError, match="intervals"):
        error_rate_change(GRAPH, base, base, "front", intervals=1)
    with pytest.raises(RCAError, match="not upstream"):
        error_rate_change(GRAPH, base, base, "front", players=["nope"])
    with pytest.raises(RCAError, match="no column"):
        error_rate_change(GRAPH, base.drop(columns=["db"]), base.drop(columns=["db"]), "front")
    with pytest.raises(RCAError, match="at least"):
        error_rate_change(GRAPH, base.head(5), base, "front")
    with pytest.raises(RCAError):
        error_rate_change(GRAPH, base, base, "nowhere")
