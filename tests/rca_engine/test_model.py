"""rca_engine.model: fitting one mechanism per node, noise reconstruction, sampling and cached IT scorers."""

from __future__ import annotations

import pickle

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from rca_engine.errors import DataError, MechanismError, RCAError, UnknownNodeError
from rca_engine.mechanisms import LinearMechanism, SumMechanism
from rca_engine.model import CausalModel, fit

# cause -> effect: db and cache feed api, api feeds gateway
GRAPH = nx.DiGraph([("db", "api"), ("cache", "api"), ("api", "gateway")])


def latencies(n: int, seed: int = 0, db_extra: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    db = rng.exponential(2.0, n) + db_extra
    cache = rng.exponential(0.5, n)
    api = 1.0 + 2.0 * db + 0.5 * cache + rng.normal(0, 0.3, n)
    gateway = 0.2 + api + rng.exponential(0.2, n)
    return pd.DataFrame({"gateway": gateway, "api": api, "cache": cache, "db": db})


@pytest.fixture(scope="module")
def model() -> CausalModel:
    return fit(GRAPH, latencies(600), "linear", seed=3, reference_size=2000)


def test_nodes_are_topological_and_parents_point_at_their_columns(model: CausalModel) -> None:
    assert sorted(model.nodes) == sorted(GRAPH.nodes) and model.n_rows == 600
    pos = {n: i for i, n in enumerate(model.nodes)}
    assert all(pos[a] < pos[b] for a, b in GRAPH.edges)
    for i, node in enumerate(model.nodes):
        assert {model.nodes[p] for p in model.parent_idx[i]} == set(GRAPH.predecessors(node))
    assert model.mechanism_names() == {"db": "empirical", "cache": "empirical", "api": "linear", "gateway": "linear"}
    assert model.upstream("api")[-1] == "api" and set(model.upstream("api")) == {"db", "cache", "api"}
    with pytest.raises(UnknownNodeError):
        model.upstream("nope")


def test_linear_mechanisms_are_least_squares_on_the_parents(model: CausalModel) -> None:
    data = latencies(600)
    api = model.mechanisms["api"]
    parents = [model.nodes[p] for p in model.parent_idx[model.index["api"]]]
    design = np.column_stack([np.ones(600), data[parents].to_numpy()])
    sol, *_ = np.linalg.lstsq(design, data["api"].to_numpy(), rcond=None)
    np.testing.assert_allclose(api.predict(data[parents].to_numpy()), design @ sol, rtol=1e-9)
    np.testing.assert_allclose(np.sort(api.noise_samples_), np.sort(data["api"].to_numpy() - design @ sol), atol=1e-9)


def test_noise_and_propagation_are_inverse(model: CausalModel) -> None:
    values = model.training
    noise = model.noise_of(values, model.nodes)
    np.testing.assert_allclose(model.propagate(noise, model.nodes), values, atol=1e-9)
    roots = [model.index["db"], model.index["cache"]]
    np.testing.assert_array_equal(noise[:, roots], values[:, roots])  # a root's noise is its value
    sub = model.upstream("api")
    cols = [model.index[n] for n in sub]
    np.testing.assert_allclose(model.noise_of(values[:, cols], sub), noise[:, cols], atol=1e-12)


def test_sample_is_seeded_and_follows_the_fitted_model(model: CausalModel) -> None:
    a, b, c = model.sample(5000, seed=1), model.sample(5000, seed=1), model.sample(5000, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c) and list(a.columns) == model.nodes
    data = latencies(600)
    for node in GRAPH.nodes:  # the model's marginals match the data's
        assert a[node].mean() == pytest.approx(data[node].mean(), rel=0.1)
    assert set(np.round(a["db"], 12)) <= set(np.round(data["db"], 12))  # roots: empirical draws


def test_joint_noise_draws_whole_training_rows() -> None:
    m = fit(GRAPH, latencies(300, seed=4), "linear", joint_noise=True)
    draws = m.draw_noise(500, m.nodes, np.random.default_rng(0))
    rows = {tuple(np.round(r, 9)) for r in m.noise_of(m.training, m.nodes)}
    assert all(tuple(np.round(d, 9)) in rows for d in draws)
    indep = fit(GRAPH, latencies(300, seed=4), "linear").draw_noise(500, m.nodes, np.random.default_rng(0))
    assert sum(tuple(np.round(d, 9)) in rows for d in indep) < 50  # independent draws mix rows
    assert m.draw_noise(3, [], np.random.default_rng(0)).shape == (3, 0)


def test_scorers_are_fitted_once_and_score_like_the_model_marginal(model: CausalModel) -> None:
    s = model.scorer("gateway", base="upper")
    assert model.scorer("gateway", base="upper") is s and model.scorer("gateway") is not s
    sample = model.sample(4000, seed=9)["gateway"].to_numpy()
    q99 = np.quantile(sample, 0.99)
    assert model.it_score("gateway", [q99], base="upper")[0] == pytest.approx(np.log(100), abs=0.3)
    typical = model.it_score("gateway", np.median(sample))[0]
    assert typical < 0.1
    with pytest.raises(DataError, match="must be numbers"):
        model.it_score("gateway", ["slow"])
    with pytest.raises(DataError, match="1 NaN/inf"):
        model.it_score("gateway", [1.0, np.nan])
    with pytest.raises(UnknownNodeError):
        model.scorer("nope")


def test_pickle_keeps_the_model_and_its_scorers(model: CausalModel) -> None:
    model.scorer("api")
    copy = pickle.loads(pickle.dumps(model))
    assert copy.nodes == model.nodes and ("api", "median", "fitted") in copy._scorers
    np.testing.assert_array_equal(copy.it_score("api", [3.0, 30.0]), model.it_score("api", [3.0, 30.0]))
    pd.testing.assert_frame_equal(copy.sample(50, seed=5), model.sample(50, seed=5))


def test_mechanism_specs_per_node_default_to_auto_and_instances_are_copied() -> None:
    given = SumMechanism()
    m = fit(GRAPH, latencies(150), {"gateway": given, "api": "linear"})
    assert m.mechanisms["gateway"] is not given and isinstance(m.mechanisms["gateway"], SumMechanism)
    assert given.noise_samples_.size == 0  # the caller's instance stays unfitted
    assert m.specs["db"] == "auto" and m.mechanisms["db"].name == "empirical"
    with pytest.raises(UnknownNodeError):
        fit(GRAPH, latencies(150), {"nope": "linear"})
    with pytest.raises(MechanismError, match="instance per node"):
        fit(GRAPH, latencies(150), LinearMechanism())
    with pytest.raises(MechanismError, match="name or a dict"):
        fit(GRAPH, latencies(150), 3)  # type: ignore[arg-type]
    with pytest.raises(MechanismError, match="unknown mechanism 'quadratic'"):
        fit(GRAPH, latencies(150), "quadratic")
    for bad in (-0.01, 0.26):
        with pytest.raises(RCAError, match="tail_fraction"):
            fit(GRAPH, latencies(150), "linear", tail_fraction=bad)


def test_incident_rows_inform_f_but_not_the_noise() -> None:
    normal, incident = latencies(200, seed=5), latencies(20, seed=6, db_extra=10.0)
    m = fit(GRAPH, normal, "linear", incident=incident)
    parents = [m.nodes[p] for p in m.parent_idx[m.index["api"]]]
    both = pd.concat([normal, incident])
    design = np.column_stack([np.ones(len(both)), both[parents].to_numpy()])
    sol, *_ = np.linalg.lstsq(design, both["api"].to_numpy(), rcond=None)
    api = m.mechanisms["api"]
    assert api.intercept_ == pytest.approx(sol[0]) and api.coef_ == pytest.approx(sol[1:])
    expected_noise = normal["api"].to_numpy() - np.column_stack([np.ones(200), normal[parents]]) @ sol
    np.testing.assert_allclose(api.noise_samples_, expected_noise, atol=1e-9)
    np.testing.assert_array_equal(m.mechanisms["db"].noise_samples_, normal["db"].to_numpy())  # roots: normal only
    assert m.n_rows == 200 and m.incident.shape == (20, 4)
    one = fit(GRAPH, normal, "linear", incident=incident.iloc[0])  # a single incident row as a Series
    assert one.incident.shape == (1, 4)
