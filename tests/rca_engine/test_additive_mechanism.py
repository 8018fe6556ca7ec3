"""The `additive` mechanism: least squares shrunk toward the sum structure (coefficient 1 per parent)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import rca_engine
from rca_engine.mechanisms import AdditiveMechanism, LinearMechanism


def test_coefficients_follow_data_where_parents_move_and_the_prior_where_they_do_not() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    moving = rng.normal(0, 1.0, n)
    still = np.zeros(n)  # a callee whose errors (or latency) never moved while the model learned
    y = 0.3 * moving + rng.normal(0, 0.5, n)
    parents = np.column_stack([moving, still])
    additive = AdditiveMechanism().fit(parents, y)
    linear = LinearMechanism().fit(parents, y)
    ols = np.linalg.lstsq(np.column_stack([np.ones(n), moving]), y, rcond=None)[0][1]
    assert additive.coef_[0] == pytest.approx(ols, abs=0.01)  # ample data: the data's coefficient
    assert additive.coef_[1] == pytest.approx(1.0)  # no data: the structural prior
    assert linear.coef_[1] == pytest.approx(0.0)  # least squares: a still parent has no effect
    # the posterior mean of a Gaussian prior N(1, 1) with noise variance sigma^2 and one weakly moving parent
    weak = rng.normal(0, 0.01, n)
    y2 = 0.2 * weak + rng.normal(0, 0.5, n)
    m = AdditiveMechanism().fit(weak[:, None], y2)
    xc, yc = weak - weak.mean(), y2 - y2.mean()
    b_ols = float(xc @ yc / (xc @ xc))
    s2 = float(np.sum((yc - b_ols * xc) ** 2) / (n - 2))
    expected = (xc @ yc + s2 * 1.0) / (xc @ xc + s2)
    assert m.coef_[0] == pytest.approx(expected, rel=1e-9)
    assert m.intercept_ == pytest.approx(y2.mean() - weak.mean() * expected)


def test_fault_in_a_callee_that_never_moved_is_found() -> None:
    """Errors of a callee that were 0 during training reach its caller in full: the callee is the cause."""
    rng = np.random.default_rng(1)
    n = 600
    callee = np.zeros(n)
    other = rng.poisson(3.0, n).astype(float)
    caller = 0.1 * other + rng.poisson(1.0, n)
    graph = nx.DiGraph([("callee", "caller"), ("other", "caller")])
    data = pd.DataFrame({"callee": callee, "other": other, "caller": caller})
    outlier = {"callee": 12.0, "other": 3.0, "caller": 13.3}
    additive = rca_engine.fit(graph, data, "additive")
    expl = rca_engine.attribute(additive, "caller", outlier, base="upper")
    assert expl.root_causes[0] == "callee"
    assert expl.contributions["callee"] > 0.8 * expl.outlier_score
    linear = rca_engine.fit(graph, data, "linear")
    assert rca_engine.attribute(linear, "caller", outlier, base="upper").root_causes[0] == "caller"


def test_additive_takes_the_affine_fast_path_and_rejects_bad_input() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(0, 1, 500)
    data = pd.DataFrame({"a": a, "b": a + rng.normal(0, 0.3, 500)})
    model = rca_engine.fit(nx.DiGraph([("a", "b")]), data, "additive")
    assert model.mechanisms["b"].affine_form() is not None
    assert model.mechanisms["b"].name == "additive"
    with pytest.raises(rca_engine.RCAError):
        AdditiveMechanism(prior_scale=0.0)
    with pytest.raises(rca_engine.RCAError):
        AdditiveMechanism().fit(np.empty((10, 0)), np.zeros(10))
