"""The affine fast path (rca_engine.affine) gives the general graph pass's attribution, only faster.

The general path propagates every coalition's noise node by node (float32); the fast path writes the target as
const + Σ c_j N_j. Same seed, same Monte-Carlo draws: contributions, outlier score and counterfactuals must agree
up to float rounding. Path coefficients are checked against an independent sum over all paths.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import rca_engine
from rca_engine.affine import affine_target
from rca_engine.attribution import Attributor
from rca_engine.mechanisms import LinearMechanism
from rca_engine.synthetic import random_system
from tests.support.datasets import shared_dataset

GRAPH_FILE = Path(rca_engine.__file__).parent / "examples" / "microservice_graph.json"


def linear_scm(graph: nx.DiGraph, rows: int, rng: np.random.Generator,
               fault: Hashable | None = None,
               size: float = 6.0) -> tuple[pd.DataFrame, dict[tuple[Hashable, Hashable], float]]:
    """Rows of a linear SCM on ``graph`` (random weights, skewed noise, sd 0.7) and one extra row in which
    ``fault``'s noise is ``size`` larger."""
    weights = {e: float(rng.uniform(0.8, 1.5)) for e in graph.edges}
    out: dict[Hashable, np.ndarray] = {}
    for v in nx.topological_sort(graph):
        noise = rng.gamma(2.0, 0.5, rows + 1) + float(rng.uniform(0, 2))
        if v == fault:
            noise[-1] += size
        out[v] = noise + sum((weights[(p, v)] * out[p] for p in graph.predecessors(v)), np.zeros(rows + 1))
    return pd.DataFrame(out), weights


def fast_and_general(att: Attributor, values: np.ndarray, **kw: object) -> tuple[rca_engine.Explanation,
                                                                               rca_engine.Explanation]:
    assert att.affine is not None
    fast = att.explain(values, **kw)  # type: ignore[arg-type]
    affine, att.affine = att.affine, None
    try:
        general = att.explain(values, **kw)  # type: ignore[arg-type]
    finally:
        att.affine = affine
    return fast, general


def assert_same(fast: rca_engine.Explanation, general: rca_engine.Explanation) -> None:
    tol = 1e-3 * max(abs(general.outlier_score), 1.0)
    assert fast.outlier_score == pytest.approx(general.outlier_score, abs=tol)
    for v, c in general.contributions.items():
        assert fast.contributions[v] == pytest.approx(c, abs=tol), v
    for v, t in general.counterfactuals.items():
        assert fast.counterfactuals[v] == pytest.approx(t, rel=1e-9, abs=1e-9)
    assert sum(fast.contributions.values()) == pytest.approx(fast.outlier_score, abs=1e-9)


def path_coefficients(graph: nx.DiGraph, weights: dict[tuple[Hashable, Hashable], float],
                      target: Hashable) -> dict[Hashable, float]:
    """Σ over all paths j -> target of the product of edge weights (independent of the engine's sweep)."""
    out = {target: 1.0}
    for j in nx.ancestors(graph, target):
        total = 0.0
        for path in nx.all_simple_paths(graph, j, target):
            total += float(np.prod([weights[(a, b)] for a, b in zip(path, path[1:], strict=False)]))
        out[j] = total
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_linear_graph_fast_path_equals_general_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    edges = [(a, b) for a, b in nx.gnp_random_graph(9, 0.35, seed=seed, directed=True).edges if a < b]
    graph = nx.DiGraph()
    graph.add_nodes_from(range(9))
    graph.add_edges_from(edges)
    graph.add_edges_from((v, 8) for v in range(8) if graph.out_degree(v) == 0)  # one sink: every node upstream of 8
    data, weights = linear_scm(graph, 3000, rng, fault=3, size=12.0)
    model = rca_engine.fit(graph, data.iloc[:-1], "linear")
    att = Attributor(model, 8, seed=seed)
    values = model.values_of(data.iloc[-1], att.players)[0]
    fast, general = fast_and_general(att, values)
    assert_same(fast, general)
    assert fast.outlier_score > 3.0 and fast.root_causes[0] == 3
    # the path coefficients are the (fitted) sums over paths of edge-weight products
    fitted = {(p, v): float(w) for v in graph for p, w in zip(model.mechanisms[v].parents_,
                                                              getattr(model.mechanisms[v], "coef_", []), strict=False)}
    expected = path_coefficients(graph, fitted, 8)
    assert att.affine is not None
    for j, v in enumerate(att.players):
        assert att.affine.coef[j] == pytest.approx(expected[v], rel=1e-9)
    # and close to the true ones (least squares on 3,000 rows)
    true = path_coefficients(graph, weights, 8)
    for j, v in enumerate(att.players):
        assert att.affine.coef[j] == pytest.approx(true[v], rel=0.1, abs=0.05)


@pytest.mark.parametrize("options", [{}, {"game": "tail"}, {"tail": "dowhy"}, {"dowhy_compatible": True},
                                     {"method": "permutation", "num_samples": 500}])
def test_sum_graph_all_modes(options: dict[str, object]) -> None:
    rng = np.random.default_rng(7)
    system = random_system(10, rng, p_parallel=0.0)  # sequential calls only: every caller is a sum
    train = system.simulate(2000, rng)
    model = rca_engine.fit(system.causal_graph, train, system.structure)
    out = system.simulate(1, rng, fault="s4", add=8 * float(np.exp(system.mu["s4"])))
    kw = {k: v for k, v in options.items() if k != "method"}
    att = Attributor(model, system.entry, method=str(options.get("method", "auto")), **kw)  # type: ignore[arg-type]
    values = model.values_of(out.iloc[0], att.players)[0]
    fast, general = fast_and_general(att, values, max_permutations=32)
    assert_same(fast, general)
    if not options.get("dowhy_compatible"):
        assert fast.root_causes[0] == "s4"
    # a sum's path coefficients are call counts: 1 per path here
    expected = path_coefficients(system.causal_graph, dict.fromkeys(system.causal_graph.edges, 1.0), system.entry)
    assert att.affine is not None
    assert att.affine.coef.tolist() == pytest.approx([expected[v] for v in att.players])


def test_microservice_graph_with_linear_mechanisms() -> None:
    graph = rca_engine.graph_from_edges(json.loads(GRAPH_FILE.read_text())["edges"])
    data, _ = linear_scm(graph, 4000, np.random.default_rng(5), fault="Caching Service", size=20.0)
    model = rca_engine.fit(graph, data.iloc[:-1], "linear")
    att = Attributor(model, "Website", seed=3)
    assert len(att.players) == 11 and att.method == "exact"
    fast, general = fast_and_general(att, model.values_of(data.iloc[-1], att.players)[0])
    assert_same(fast, general)
    assert fast.root_causes[0] == "Caching Service"
    # the public API takes the fast path and gives the same explanation
    api = rca_engine.attribute(model, "Website", data.iloc[-1], seed=3)
    assert api.contributions == fast.contributions and api.outlier_score == fast.outlier_score
    # tail="dowhy" fits the scorer on the same Monte-Carlo draws, so v(∅) is its (float64) log tail of x exactly
    att = Attributor(model, "Website", seed=3, tail="dowhy")
    values = model.values_of(data.iloc[-1], att.players)[0]
    score = att.explain(values).outlier_score
    assert score == pytest.approx(-float(att.scorer.log_tail(np.array([values[-1]]))[0]), abs=1e-12)


def test_dowhy_microservice_data_linear() -> None:
    d = shared_dataset("dowhy_microservice")
    train = pd.read_csv(d / "rca_microservice_architecture_latencies.csv")
    outlier = pd.read_csv(d / "rca_microservice_architecture_anomaly.csv")
    graph = rca_engine.graph_from_edges(json.loads(GRAPH_FILE.read_text())["edges"])
    model = rca_engine.fit(graph, train, "linear")
    att = Attributor(model, "Website")
    fast, general = fast_and_general(att, model.values_of(outlier.iloc[0], att.players)[0])
    assert_same(fast, general)
    assert fast.root_causes[0] == "Caching Service"


def test_max_node_uses_general_path_and_still_works() -> None:
    rng = np.random.default_rng(11)
    system = random_system(8, rng, p_parallel=0.0)
    caller = next(v for v in system.causal_graph if system.causal_graph.in_degree(v) >= 2)
    structure = dict(system.structure, **{caller: "max"})
    system.structure = structure
    model = rca_engine.fit(system.causal_graph, system.simulate(2000, rng), structure)
    out = system.simulate(1, rng, fault="s3", add=8 * float(np.exp(system.mu["s3"])))
    att = Attributor(model, system.entry)
    assert att.affine is None  # a max of two or more callees is not affine
    expl = att.explain(model.values_of(out.iloc[0], att.players)[0])
    assert expl.root_causes[0] == "s3"
    assert sum(expl.contributions.values()) == pytest.approx(expl.outlier_score, abs=1e-9)


def test_max_of_one_parent_and_nonlinear_and_custom_mechanisms() -> None:
    graph = rca_engine.graph_from_edges([("a", "b"), ("b", "c")])
    rng = np.random.default_rng(2)
    a = rng.normal(5, 1, 500)
    b = 2 * a + rng.normal(0, 1, 500)
    data = pd.DataFrame({"a": a, "b": b, "c": b + rng.normal(0, 1, 500)})
    single_max = rca_engine.fit(graph, data, {"b": "max", "c": "sum"})  # max of one parent: w * parent, affine
    aff = affine_target(single_max, ["a", "b", "c"])
    assert aff is not None and aff.coef.tolist() == [1.0, 1.0, 1.0]
    assert affine_target(rca_engine.fit(graph, data, {"b": "nonlinear", "c": "linear"}), ["a", "b", "c"]) is None

    class Squared(LinearMechanism):  # declares the inherited affine form but evaluates something else
        def predict(self, parents: np.ndarray) -> np.ndarray:
            return np.asarray(parents, dtype=float)[:, 0] ** 2 * 0.1

        def evaluate_columns(self, columns: list[np.ndarray], noise: np.ndarray) -> np.ndarray:
            noise += 0.1 * columns[0] ** 2
            return noise

    custom = rca_engine.fit(graph, data, {"b": Squared(), "c": "linear"})
    assert affine_target(custom, ["a", "b", "c"]) is None  # the check against propagate catches it
    assert rca_engine.attribute(custom, "c", data.iloc[0]).outlier_score >= 0.0
