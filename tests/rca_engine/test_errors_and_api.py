"""Bad input gets a clear RCAError; pickling, determinism, outlier scores, intervals, batch, call-graph helper."""

from __future__ import annotations

import pickle

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import rca_engine


def chain_data(n: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(10, 1, n)
    b = a + rng.normal(5, 1, n)
    c = b + rng.normal(2, 1, n)
    return pd.DataFrame({"a": a, "b": b, "c": c})


GRAPH = nx.DiGraph([("a", "b"), ("b", "c")])


@pytest.fixture(scope="module")
def model() -> rca_engine.CausalModel:
    return rca_engine.fit(GRAPH, chain_data(), "linear")


def test_cycle_is_named() -> None:
    with pytest.raises(rca_engine.GraphError, match=r"cycle: .*a -> b|cycle: .*b -> c"):
        rca_engine.fit(nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a")]), chain_data())


def test_graph_errors() -> None:
    with pytest.raises(rca_engine.GraphError, match="no nodes"):
        rca_engine.fit(nx.DiGraph(), chain_data())
    with pytest.raises(rca_engine.GraphError, match="networkx.DiGraph"):
        rca_engine.fit(nx.Graph([("a", "b")]), chain_data())  # type: ignore[arg-type]
    with pytest.raises(rca_engine.GraphError, match="self-loop"):
        rca_engine.graph_from_edges([("a", "a")])
    with pytest.raises(rca_engine.GraphError, match="pair"):
        rca_engine.graph_from_edges([("a", "b", "c")])  # type: ignore[list-item]


def test_missing_columns_named() -> None:
    with pytest.raises(rca_engine.DataError, match="'c'"):
        rca_engine.fit(GRAPH, chain_data().drop(columns=["c"]))


def test_non_numeric_named() -> None:
    df = chain_data().astype({"b": str})
    df.loc[0, "b"] = "slow"
    with pytest.raises(rca_engine.DataError, match="non-numeric columns 'b'"):
        rca_engine.fit(GRAPH, df)


def test_nans_reported_and_dropna() -> None:
    df = chain_data()
    df.loc[[3, 4, 9], "b"] = np.nan
    with pytest.raises(rca_engine.DataError, match=r"3 rows with NaN.*'b' \(3\).*dropna=True"):
        rca_engine.fit(GRAPH, df)
    model = rca_engine.fit(GRAPH, df, "linear", dropna=True)
    assert model.n_rows == len(df) - 3


def test_not_enough_data() -> None:
    with pytest.raises(rca_engine.NotEnoughDataError, match="10 usable rows; at least 30"):
        rca_engine.fit(GRAPH, chain_data(10))
    assert rca_engine.fit(GRAPH, chain_data(10), "linear", min_rows=5).n_rows == 10


def test_mechanism_errors() -> None:
    with pytest.raises(rca_engine.MechanismError, match="unknown mechanism 'cubic'"):
        rca_engine.fit(GRAPH, chain_data(), "cubic")
    with pytest.raises(rca_engine.MechanismError, match="only for root nodes"):
        rca_engine.fit(GRAPH, chain_data(), {"b": "empirical"})
    with pytest.raises(rca_engine.UnknownNodeError, match="'zz'"):
        rca_engine.fit(GRAPH, chain_data(), {"zz": "sum"})
    with pytest.raises(rca_engine.MechanismError, match="not parents"):
        rca_engine.fit(GRAPH, chain_data(), {"c": rca_engine.SumMechanism(weights={"a": 2.0})})


def test_attribute_input_errors(model: rca_engine.CausalModel) -> None:
    row = {"a": 10.0, "b": 15.0, "c": 30.0}
    with pytest.raises(rca_engine.UnknownNodeError, match="unknown target 'x'"):
        rca_engine.attribute(model, "x", row)
    with pytest.raises(rca_engine.DataError, match="lacks values for nodes 'b'"):
        rca_engine.attribute(model, "c", {"a": 1.0, "c": 2.0})
    with pytest.raises(rca_engine.DataError, match="NaN"):
        rca_engine.attribute(model, "c", {"a": 1.0, "b": float("nan"), "c": 2.0})
    with pytest.raises(rca_engine.RCAError, match="method"):
        rca_engine.attribute(model, "c", row, method="magic")
    with pytest.raises(rca_engine.RCAError, match="tail"):
        rca_engine.attribute(model, "c", row, tail="gumbel")
    with pytest.raises(rca_engine.RCAError, match="unknown game"):
        rca_engine.attribute(model, "c", row, game="poker")
    with pytest.raises(rca_engine.RCAError, match="one sample"):
        rca_engine.attribute(model, "c", pd.DataFrame([row, row]))
    with pytest.raises(rca_engine.RCAError, match="fitted rca_engine model"):
        rca_engine.attribute("model", "c", row)  # type: ignore[arg-type]


def test_sample_formats_agree(model: rca_engine.CausalModel) -> None:
    row = {"a": 10.0, "b": 22.0, "c": 24.0}
    results = [
        rca_engine.attribute(model, "c", s, seed=3).contributions
        for s in (row, pd.Series(row), pd.DataFrame([row]))
    ]
    assert results[0] == results[1] == results[2]
    assert max(results[0], key=results[0].__getitem__) == "b"


def test_pickle_round_trip_and_determinism(model: rca_engine.CausalModel) -> None:
    row = {"a": 14.0, "b": 19.5, "c": 21.0}
    first = rca_engine.attribute(model, "c", row, seed=5)
    again = rca_engine.attribute(model, "c", row, seed=5)
    assert first.contributions == again.contributions
    other = rca_engine.attribute(model, "c", row, seed=6)
    assert other.contributions != first.contributions
    assert other.root_causes[0] == first.root_causes[0] == "a"
    restored = pickle.loads(pickle.dumps(model))
    assert rca_engine.attribute(restored, "c", row, seed=5).contributions == first.contributions
    values = np.array([17.0, 20.0, 30.0])
    assert np.array_equal(restored.it_score("c", values), model.it_score("c", values))


def test_it_score_and_outlier_scores(model: rca_engine.CausalModel) -> None:
    data = chain_data(200, seed=9)
    scores = rca_engine.outlier_scores(model, data)
    assert list(scores.columns) == ["a", "b", "c"] and scores.index.equals(data.index)
    assert float(scores.to_numpy().mean()) == pytest.approx(1.0, abs=0.3)  # E[-log U-ish tail] for normal data
    values = np.array([17.0, 18.0, 30.0, 40.0])
    vec = model.it_score("c", values)
    assert np.allclose(vec, [model.it_score("c", [v])[0] for v in values])
    assert np.all(np.diff(vec[1:]) > 0)  # farther -> rarer, also beyond the sample range
    for c, rel in ((21.0, 0.1), (22.5, 0.25)):  # game="tail": its own Monte-Carlo draws (3,000) agree with
        expl = rca_engine.attribute(model, "c", {"a": 10.0, "b": 15.0, "c": c}, game="tail")  # the reference
        assert expl.outlier_score == pytest.approx(float(model.it_score("c", [c])[0]), rel=rel)
    for base in ("median", "upper"):  # the default counting game reports the model's own score, even far out
        for c in (21.0, 22.5, 40.0):
            expl = rca_engine.attribute(model, "c", {"a": 10.0, "b": 15.0, "c": c}, base=base)
            assert expl.outlier_score == pytest.approx(float(model.it_score("c", [c], base=base)[0]), rel=1e-12)
            assert sum(expl.contributions.values()) == pytest.approx(expl.outlier_score, rel=1e-9)
    assert model.it_score("c", [40.0])[0] > 10  # 13 sd: extrapolated, still ranked


def test_null_player_gets_zero() -> None:
    """A node whose noise never varies cannot contribute (Shapley's null-player property holds exactly)."""
    rng = np.random.default_rng(0)
    a = rng.exponential(1, 500)
    df = pd.DataFrame({"a": a, "z": np.zeros(500), "c": a + rng.exponential(1, 500)})
    model = rca_engine.fit(nx.DiGraph([("a", "c"), ("z", "c")]), df, "sum")
    expl = rca_engine.attribute(model, "c", {"a": 9.0, "z": 0.0, "c": 10.0})
    assert abs(expl.contributions["z"]) < 1e-9  # zero up to floating-point summation order
    assert expl.root_causes[0] == "a" and expl.contributions["a"] > 0.9 * expl.outlier_score


def test_intervals_counterfactuals_and_json(model: rca_engine.CausalModel) -> None:
    row = {"a": 10.0, "b": 22.0, "c": 24.0}  # b's own term is +7 sigma
    expl = rca_engine.attribute(model, "c", row, intervals=8, seed=1, num_samples=1000)
    lo, hi = expl.intervals["b"]
    assert lo <= expl.contributions["b"] + 1e-6 and lo > 0.5 * expl.outlier_score and lo <= hi
    # b's noise at its median (~5) instead of ~12: c drops by ~7
    assert expl.counterfactuals["b"] == pytest.approx(24.0 - 7.0, abs=0.4)
    d = expl.to_dict()
    assert d["root_causes"][0] == "b" and d["intervals"]["b"][0] == lo
    import json

    json.dumps(d)


def test_attribute_many_matches_single(model: rca_engine.CausalModel) -> None:
    rows = pd.DataFrame([{"a": 10.0, "b": 22.0, "c": 24.0}, {"a": 14.0, "b": 19.5, "c": 21.0}])
    many = rca_engine.attribute_many(model, "c", rows, seed=2)
    single = [rca_engine.attribute(model, "c", rows.iloc[i], seed=2) for i in range(2)]
    assert [m.contributions for m in many] == [s.contributions for s in single]


def test_invert_call_graph() -> None:
    call = nx.DiGraph([("web", "api"), ("api", "db")])
    call.nodes["db"]["kind"] = "db"
    causal = rca_engine.invert_call_graph(call)
    assert set(causal.edges) == {("api", "web"), ("db", "api")}
    assert causal.nodes["db"]["kind"] == "db"
    assert set(rca_engine.invert_call_graph([("web", "api")]).edges) == {("api", "web")}
    with pytest.raises(rca_engine.GraphError, match="cycle"):
        rca_engine.invert_call_graph([("a", "b"), ("b", "a")])


def test_sum_max_weights() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.exponential(1, 2000), rng.exponential(2, 2000)
    own = rng.exponential(0.5, 2000)
    df = pd.DataFrame({"a": a, "b": b, "par": np.maximum(a, b) + own, "seq": 2 * a + b + own})
    g = nx.DiGraph([("a", "par"), ("b", "par"), ("a", "seq"), ("b", "seq")])
    model = rca_engine.fit(g, df, {"par": "max", "seq": rca_engine.SumMechanism(weights={"a": 2})})
    assert np.allclose(model.mechanisms["par"].noise_samples_, own)
    assert np.allclose(model.mechanisms["seq"].noise_samples_, own)
    assert model.mechanism_names() == {"a": "empirical", "b": "empirical", "par": "max", "seq": "sum"}


def test_graph_builders_take_adjacency_and_reject_non_iterables() -> None:
    """An adjacency mapping is read as pairs (a key with no callees stays a node); None/str/int is a GraphError."""
    causal = rca_engine.invert_call_graph({"web": ["api", "auth"], "api": ["db"], "auth": []})
    assert set(causal.edges) == {("api", "web"), ("auth", "web"), ("db", "api")}
    g = rca_engine.graph_from_edges({1: [2], 2: [], 3: []})
    assert set(g.edges) == {(1, 2)} and set(g.nodes) == {1, 2, 3}
    for bad in (None, 5, "ab"):
        with pytest.raises(rca_engine.GraphError, match="iterable of"):
            rca_engine.invert_call_graph(bad)  # type: ignore[arg-type]
        with pytest.raises(rca_engine.GraphError, match="iterable of"):
            rca_engine.graph_from_edges(bad)  # type: ignore[arg-type]
    with pytest.raises(rca_engine.GraphError, match="list of nodes per node"):
        rca_engine.invert_call_graph({"web": "api"})


def test_it_score_rejects_nan_and_text(model: rca_engine.CausalModel) -> None:
    """A NaN latency used to score -0.0 (silently 'normal'); text raised a bare ValueError."""
    with pytest.raises(rca_engine.DataError, match="1 NaN/inf"):
        model.it_score("c", [1.0, float("nan")])
    with pytest.raises(rca_engine.DataError, match="must be numbers"):
        model.it_score("c", ["slow"])
