"""Fast paths for learned (non-affine) mechanisms: tabulated tree ensembles, bucketed binning, and the affine
decomposition down to a few non-affine nodes. Each is checked against the plain computation it replaces."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import rca_engine
from rca_engine.attribution import Attributor
from rca_engine.mechanisms import Bins, NonlinearMechanism


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_tabulated_trees_equal_the_ensembles_own_predictions(k):
    rng = np.random.default_rng(k)
    x = rng.lognormal(1.0, 0.5, (1500, k))
    y = 3.0 * np.sin(x).sum(axis=1) + x.max(axis=1) + rng.normal(0.0, 0.2, 1500)
    mech = NonlinearMechanism().fit(x, y)
    cols = [rng.lognormal(1.0, 0.8, (40, 300)).astype(np.float32) for _ in range(k)]  # beyond the training range too
    noise = rng.normal(size=(40, 300)).astype(np.float32)
    fast = mech.evaluate_columns(cols, noise.copy())
    plain = mech.predict(np.stack([c.reshape(-1) for c in cols], axis=1).astype(np.float64)).reshape(noise.shape) + noise
    np.testing.assert_allclose(fast, plain, rtol=0, atol=2e-5 * (1.0 + np.abs(plain).max()))


def test_bins_equal_searchsorted():
    rng = np.random.default_rng(0)
    for trial in range(100):
        t = np.sort(rng.normal(0.0, 1.0, int(rng.integers(1, 80)))).astype(np.float32)
        if trial % 3 == 0:
            t = np.unique(np.round(t, 1)).astype(np.float32)  # clustered and equal-spaced thresholds
        x = np.concatenate([rng.normal(0.0, 2.0, 3000).astype(np.float32), t,
                            np.nextafter(t, np.float32(np.inf)), np.nextafter(t, np.float32(-np.inf))])
        assert np.array_equal(Bins(t)(x), np.searchsorted(t, x, side="left")), trial


def _parallel_world(n: int = 3000, seed: int = 0) -> tuple[rca_engine.CausalModel, pd.Series]:
    rng = np.random.default_rng(seed)
    a, b, c = (rng.lognormal(2.0, 0.3, n) for _ in range(3))
    fan = np.maximum(a, b) + rng.lognormal(0.5, 0.3, n)  # parallel callees: not affine
    mid = fan + c + rng.lognormal(0.5, 0.3, n)
    top = 2.0 * mid + rng.lognormal(0.5, 0.3, n)
    data = pd.DataFrame({"a": a, "b": b, "c": c, "fan": fan, "mid": mid, "top": top})
    graph = rca_engine.graph_from_edges([("a", "fan"), ("b", "fan"), ("fan", "mid"), ("c", "mid"), ("mid", "top")])
    model = rca_engine.fit(graph, data)
    row = data.iloc[7].copy()
    row["a"] += 30.0
    row["fan"] = max(row["a"], row["b"]) + 1.0
    row["mid"] = row["fan"] + row["c"] + 1.0
    row["top"] = 2.0 * row["mid"] + 1.0
    return model, row


def test_frontier_path_equals_the_graph_pass():
    model, row = _parallel_world()
    assert model.mechanism_names()["fan"] == "maxlinear" and model.mechanism_names()["top"] == "linear"
    fast = Attributor(model, "top")
    assert fast.affine is None and fast.frontier is not None
    slow = Attributor(model, "top")
    slow.frontier = None
    values = model.values_of(row, fast.players)[0]
    e_fast, e_slow = fast.explain(values), slow.explain(values)
    assert e_fast.root_causes[0] == "a"
    for node, c in e_slow.contributions.items():
        assert e_fast.contributions[node] == pytest.approx(c, abs=1e-3)


def test_forty_gradient_boosted_nodes_attribute_in_about_a_second():
    """~40 nodes, every non-root mechanism gradient boosting: one attribution (CPU time, the machine is shared)."""
    from rca_engine.synthetic import random_system

    rng = np.random.default_rng(0)
    system = random_system(40, rng, p_parallel=0.5)
    normal = system.simulate(1000, rng)
    model = rca_engine.fit(system.causal_graph, normal, "nonlinear")
    lat = system.simulate(1, rng, fault="s5", add=3.0 * float(normal[system.entry].std()))
    rca_engine.attribute(model, system.entry, lat.iloc[0], max_permutations=32)  # tables and scorer built once
    t = time.process_time()
    expl = rca_engine.attribute(model, system.entry, lat.iloc[0])
    cpu = time.process_time() - t
    assert expl.root_causes[0] == "s5"
    assert cpu < 3.0, cpu  # ~1 s on a quiet core; generous for a shared CI machine
