"""rca_engine.failures: noisy-OR failure model, IT score of a failure, Shapley attribution of a failed trace.

The numbers are checked against a brute-force enumeration of every noise configuration of small graphs (an
independent computation of the same definitions), and the root causes against known injected origins.
"""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from rca_engine import DataError, NotEnoughDataError, RCAError, UnknownNodeError
from rca_engine.failures import attribute_failure, failure_model, failure_scores, fit_failures


def _chain() -> nx.DiGraph:
    # db -> orders -> checkout -> frontend (callee -> caller); cache -> frontend (a handled callee)
    return nx.DiGraph([("db", "orders"), ("orders", "checkout"), ("checkout", "frontend"), ("cache", "frontend")])


def _brute_force(model, target, observed: dict[str, bool]) -> tuple[float, dict[str, float]]:
    """Exact IT score and Shapley values by enumerating every noise configuration (tiny graphs only)."""
    g = model.graph
    players = [n for n in nx.topological_sort(g) if n in nx.ancestors(g, target) | {target}]
    edges = [(u, v) for v in players for u in g.predecessors(v)]
    mech = model.mechanisms

    def weight(cfg_own, cfg_edge):
        w = 1.0
        for v in players:
            q = mech[v].own_rate
            w *= q if cfg_own[v] else 1 - q
        for (u, v) in edges:
            p = dict(zip(mech[v].parents, mech[v].propagation, strict=True))[u]
            w *= p if cfg_edge[(u, v)] else 1 - p
        return w

    def run(cfg_own, cfg_edge):
        f = {}
        for v in players:
            f[v] = cfg_own[v] or any(f[u] and cfg_edge[(u, v)] for u in g.predecessors(v))
        return f

    configs = []
    for bits in itertools.product([False, True], repeat=len(players) + len(edges)):
        o = dict(zip(players, bits[:len(players)], strict=True))
        e = dict(zip(edges, bits[len(players):], strict=True))
        configs.append((o, e, weight(o, e), run(o, e)))
    p_fail = sum(w for _, _, w, f in configs if f[target])
    consistent = [(o, e, w) for o, e, w, f in configs if all(f[v] == observed[v] for v in players)]
    z = sum(w for _, _, w in consistent)

    def known_edges(v):  # noise of player v the observation informs: whether its failure reached each caller
        return [(v, w) for w in g.successors(v) if w in players and observed[v]]

    def value(coal: frozenset) -> float:
        total = 0.0
        for o_star, e_star, w_star in consistent:
            prob = 0.0
            for o, e, w, f in configs:
                if not f[target] or w == 0.0:
                    continue
                ok = all(o[v] == o_star[v] and all(e[k] == e_star[k] for k in known_edges(v)) for v in coal)
                if ok:
                    # weight of the fixed part removed: fixed noise is certain
                    ww = w
                    for v in coal:
                        q = mech[v].own_rate
                        ww /= q if o[v] else 1 - q
                        for (u, vv) in known_edges(v):
                            p = dict(zip(mech[vv].parents, mech[vv].propagation, strict=True))[u]
                            ww /= p if e[(u, vv)] else 1 - p  # (u, vv) = (v, caller)
                    prob += ww
            total += w_star / z * math.log(max(prob, 1e-300))
        return total

    n = len(players)
    values = {frozenset(s): value(frozenset(s)) for r in range(n + 1) for s in itertools.combinations(players, r)}
    phi = {}
    for p in players:
        others = [q for q in players if q != p]
        acc = 0.0
        for r in range(n):
            for s in itertools.combinations(others, r):
                wgt = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
                acc += wgt * (values[frozenset(s) | {p}] - values[frozenset(s)])
        phi[p] = acc
    return -math.log(p_fail), phi


@pytest.fixture(scope="module")
def chain_model():
    g = _chain()
    own = {"db": 0.01, "orders": 0.005, "checkout": 0.002, "frontend": 0.001, "cache": 0.05}
    prop = {("db", "orders"): 0.95, ("orders", "checkout"): 0.9, ("checkout", "frontend"): 1.0,
            ("cache", "frontend"): 0.05}
    data = failure_model(g, own, prop).sample(40_000, 1)
    return fit_failures(g, data), own, prop


def test_fit_recovers_rates_and_propagation(chain_model):
    model, own, prop = chain_model
    for v, q in own.items():
        assert model.mechanisms[v].own_rate == pytest.approx(q, rel=0.25, abs=0.002)
    assert model.mechanisms["orders"].propagation[0] == pytest.approx(prop[("db", "orders")], abs=0.05)
    # retries at the frontend handle almost every cache error
    assert model.mechanisms["frontend"].propagation[list(model.mechanisms["frontend"].parents).index("cache")] \
        == pytest.approx(0.05, abs=0.03)


def test_unseen_callee_failure_falls_back_to_structural_prior():
    g = nx.DiGraph([("leaf", "api")])
    data = pd.DataFrame({"leaf": np.zeros(200), "api": np.zeros(200)})
    model = fit_failures(g, data)
    assert model.mechanisms["api"].propagation == (1.0,)
    g.edges["leaf", "api"]["propagation_prior"] = 0.5
    assert fit_failures(g, data).mechanisms["api"].propagation[0] == pytest.approx(0.5, abs=0.01)


def test_leaf_error_propagated_two_levels_is_blamed_on_the_leaf(chain_model):
    model, _, _ = chain_model
    sample = {"db": 1, "orders": 1, "checkout": 1, "frontend": 1, "cache": 0}
    expl = attribute_failure(model, "frontend", sample, posterior_draws=256)
    assert expl.root_causes[0] == "db"
    assert sum(expl.contributions.values()) == pytest.approx(expl.outlier_score, abs=1e-9)
    assert expl.contributions["db"] > 0.8 * expl.outlier_score
    assert expl.success_without["db"] > 0.9  # had the db not failed, the request would have succeeded
    score, phi = _brute_force(model, "frontend", {k: bool(v) for k, v in sample.items()})
    assert expl.outlier_score == pytest.approx(score, rel=1e-9)
    for node, value in phi.items():
        assert expl.contributions[node] == pytest.approx(value, abs=0.05 * score)


def test_mid_level_own_failure_with_healthy_callees(chain_model):
    model, _, _ = chain_model
    sample = {"db": 0, "orders": 0, "checkout": 1, "frontend": 1, "cache": 0}
    expl = attribute_failure(model, "frontend", sample, posterior_draws=128)
    assert expl.root_causes[0] == "checkout"
    assert expl.own_failure["checkout"] == 1.0
    assert expl.own_failure["frontend"] < 0.05
    score, phi = _brute_force(model, "frontend", {k: bool(v) for k, v in sample.items()})
    for node, value in phi.items():
        assert expl.contributions[node] == pytest.approx(value, abs=0.03 * score)


def test_handled_error_is_nothing_to_explain(chain_model):
    model, _, _ = chain_model
    expl = attribute_failure(model, "frontend", {"db": 0, "orders": 0, "checkout": 0, "frontend": 0, "cache": 1})
    assert not expl.failed and expl.outlier_score == 0.0 and expl.root_causes == []
    assert expl.handled == ["cache"]


def test_handled_error_beside_a_real_failure_is_not_blamed(chain_model):
    model, _, _ = chain_model
    sample = {"db": 1, "orders": 1, "checkout": 1, "frontend": 1, "cache": 1}
    expl = attribute_failure(model, "frontend", sample, posterior_draws=256)
    assert expl.root_causes[0] == "db"
    assert expl.contributions["cache"] < 0.2 * expl.contributions["db"]
    score, phi = _brute_force(model, "frontend", {k: bool(v) for k, v in sample.items()})
    for node, value in phi.items():
        assert expl.contributions[node] == pytest.approx(value, abs=0.05 * score)


def test_two_independent_failures_share_the_blame():
    g = nx.DiGraph([("pay", "api"), ("stock", "api")])
    own = {"pay": 0.001, "stock": 0.001, "api": 0.0005}
    prop = {("pay", "api"): 1.0, ("stock", "api"): 1.0}
    model = fit_failures(g, failure_model(g, own, prop).sample(50_000, 3))
    expl = attribute_failure(model, "api", {"pay": 1, "stock": 1, "api": 1}, posterior_draws=256)
    assert set(expl.root_causes[:2]) == {"pay", "stock"}
    assert expl.contributions["pay"] == pytest.approx(expl.contributions["stock"], rel=0.3)
    assert expl.success_without["pay"] < 0.1  # the other failure still fails the request


def test_zero_latency_error_only_calls_are_just_outcomes():
    # an error-only callee answers instantly: the failure model sees only its outcome, latency plays no part
    g = nx.DiGraph([("auth", "gw")])
    model = fit_failures(g, pd.DataFrame({"auth": [0] * 500 + [3] * 2, "gw": [0] * 500 + [1] * 2}))
    expl = attribute_failure(model, "gw", {"auth": 2, "gw": 1})
    assert expl.root_causes[0] == "auth"


def test_it_score_is_calibrated():
    g = nx.DiGraph([("a", "b")])
    common = fit_failures(g, pd.DataFrame({"a": np.r_[np.ones(100), np.zeros(900)],
                                           "b": np.r_[np.ones(100), np.zeros(900)]}))
    scores = failure_scores(common, pd.DataFrame({"a": [1, 0], "b": [1, 0]}))
    assert scores.loc[0, "b"] == pytest.approx(-math.log(common.failure_probability("b")))
    assert scores.loc[0, "b"] < 2.5  # a 1-in-10 failure is no incident
    assert scores.loc[1, "b"] == 0.0


def test_permutation_sampling_agrees_with_exact():
    g = nx.DiGraph([(f"l{i}", "mid") for i in range(6)] + [("mid", "top")] + [(f"r{i}", "top") for i in range(6)])
    own = {n: 0.01 for n in g.nodes}
    prop = {e: 0.9 for e in g.edges}
    model = fit_failures(g, failure_model(g, own, prop).sample(20_000, 5))
    sample = {n: 0 for n in g.nodes} | {"l2": 1, "mid": 1, "top": 1}
    exact = attribute_failure(model, "top", sample, method="exact", posterior_draws=128)
    perm = attribute_failure(model, "top", sample, method="permutation", posterior_draws=128)
    assert exact.root_causes[0] == perm.root_causes[0] == "l2"
    assert sum(perm.contributions.values()) == pytest.approx(perm.outlier_score, abs=1e-9)
    for n in g.nodes:
        assert perm.contributions[n] == pytest.approx(exact.contributions[n], abs=0.05 * exact.outlier_score)


def test_bad_input_gets_clear_errors():
    g = nx.DiGraph([("a", "b")])
    with pytest.raises(NotEnoughDataError, match="at least"):
        fit_failures(g, pd.DataFrame({"a": [0, 1], "b": [0, 1]}))
    with pytest.raises(DataError, match="no column"):
        fit_failures(g, pd.DataFrame({"a": [0] * 20}))
    with pytest.raises(DataError, match="NaN"):
        fit_failures(g, pd.DataFrame({"a": [0.0] * 19 + [np.nan], "b": [0] * 20}))
    with pytest.raises(DataError, match="numeric"):
        fit_failures(g, pd.DataFrame({"a": ["x"] * 20, "b": [0] * 20}))
    model = fit_failures(g, pd.DataFrame({"a": [0] * 20, "b": [0] * 20}))
    with pytest.raises(UnknownNodeError):
        attribute_failure(model, "zzz", {"a": 1, "b": 1})


def test_a_handled_error_in_a_failed_request_is_not_blamed():
    # db fails but payments retries and succeeds (handled); cart fails on its own and the frontend fails with it
    g = nx.DiGraph([("db", "payments"), ("payments", "frontend"), ("cart", "frontend")])
    own = {"db": 0.01, "payments": 0.002, "cart": 0.002, "frontend": 0.001}
    prop = {("db", "payments"): 0.3, ("payments", "frontend"): 1.0, ("cart", "frontend"): 1.0}
    model = fit_failures(g, failure_model(g, own, prop).sample(50_000, 11))
    sample = {"db": 1, "payments": 0, "cart": 1, "frontend": 1}
    expl = attribute_failure(model, "frontend", sample, posterior_draws=128)
    assert expl.root_causes[0] == "cart" and expl.handled == ["db"]
    assert expl.contributions["db"] <= 0.02 * expl.outlier_score  # no blame (a blocked failure only lowers the odds)
    score, phi = _brute_force(model, "frontend", {k: bool(v) for k, v in sample.items()})
    assert expl.outlier_score == pytest.approx(score)
    for n in g.nodes:
        assert expl.contributions[n] == pytest.approx(phi[n], abs=0.02 * score)


def test_a_model_with_given_parameters_draws_traffic_at_its_rates():
    g = _chain()
    own = {"db": 0.02, "orders": 0.01, "checkout": 0.0, "frontend": 0.005, "cache": 0.1}
    model = failure_model(g, own, {("cache", "frontend"): 0.2})
    assert model.mechanisms["orders"].propagation == (1.0,)  # edges not given: the structural prior
    data = model.sample(200_000, 0)
    for node in g:  # a tree of calls: the closed form is exact
        assert data[node].mean() == pytest.approx(model.failure_probability(node), abs=0.002)
    with pytest.raises(RCAError, match="no own failure rate"):
        failure_model(g, {"db": 0.1})
    with pytest.raises(RCAError, match="probabilities"):
        failure_model(g, {**own, "db": 1.5})
