"""`auto` keeps the simplest mechanism unless a richer one is clearly better on held-out rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

import rca_engine
from rca_engine.mechanisms import clearly_better, held_out_errors, parallel_callers, select_auto


def test_clearly_better_needs_significance_and_a_relevant_gain():
    rng = np.random.default_rng(0)
    simple = rng.exponential(1.0, 1000)
    assert not clearly_better(simple, simple)  # equal
    noisy = simple + rng.normal(0.0, 0.05, 1000)  # differences of pure noise
    assert not clearly_better(noisy, simple)
    assert clearly_better(simple * 0.5, simple)  # half the error on every row
    # significant but tiny (0.5 % lower on every row): not worth a richer mechanism
    assert not clearly_better(simple * 0.995, simple)
    assert not clearly_better(np.array([0.1]), np.array([1.0]))  # one held-out row proves nothing


def test_linear_data_gets_linear_mechanisms():
    rng = np.random.default_rng(1)
    n = 3000
    x = rng.normal(0.0, 1.0, (n, 3))
    y = 1.0 + x @ np.array([2.0, -1.0, 0.5]) + rng.normal(0.0, 1.0, n)
    for seed in range(5):  # not one lucky split: gradient boosting is never taken for noise
        assert select_auto(x, y, np.random.default_rng(seed)).name == "linear"


def test_parallel_callers_get_the_maximum():
    rng = np.random.default_rng(2)
    n = 2000
    x = rng.lognormal(2.0, 0.4, (n, 3))
    y = rng.lognormal(1.0, 0.3, n) + x.max(axis=1)  # own time + the slowest of three parallel calls
    mech = select_auto(x, y, np.random.default_rng(0))
    assert mech.name == "maxlinear"
    mech.fit(x, y)
    # independent check: the fitted f is (close to) the max structure
    assert abs(mech.max_coef_ - 1.0) < 0.1 and np.all(np.abs(mech.coef_) < 0.1)


def test_clearly_nonlinear_data_gets_gradient_boosting():
    rng = np.random.default_rng(3)
    n = 3000
    x = rng.uniform(-3.0, 3.0, (n, 1))
    y = 5.0 * np.sin(2.0 * x[:, 0]) + rng.normal(0.0, 0.3, n)
    assert select_auto(x, y, np.random.default_rng(0)).name == "nonlinear"


def test_choice_per_node_is_reported():
    rng = np.random.default_rng(4)
    n = 2000
    a, b = rng.lognormal(2.0, 0.4, n), rng.lognormal(2.0, 0.4, n)
    par = np.maximum(a, b) + rng.lognormal(0.0, 0.3, n)
    seq = par + a * 0 + rng.lognormal(0.5, 0.3, n)
    data = pd.DataFrame({"a": a, "b": b, "par": par, "seq": seq})
    graph = rca_engine.graph_from_edges([("a", "par"), ("b", "par"), ("par", "seq")])
    model = rca_engine.fit(graph, data)
    assert model.mechanism_names() == {"a": "empirical", "b": "empirical", "par": "maxlinear", "seq": "linear"}
    assert isinstance(model.mechanisms["par"], rca_engine.MaxLinearMechanism)


def test_parallel_callers_are_recognised_from_the_rows():
    rng = np.random.default_rng(5)
    n = 1000
    x = rng.lognormal(2.0, 0.4, (n, 3))
    own = rng.lognormal(0.5, 0.3, n)
    assert parallel_callers(x, own + x.max(axis=1))  # waits for the slowest: above the max, below the sum
    assert not parallel_callers(x, own + x.sum(axis=1))  # sequential: never below the sum
    assert not parallel_callers(x[:, :1], own + x[:, 0])  # one parent: nothing to tell
    signed = rng.normal(0.0, 1.0, (n, 2))  # a metric table of another kind: not always above the largest parent
    assert not parallel_callers(signed, signed @ np.array([0.5, 2.0]) + rng.normal(0.0, 1.0, n))


def test_a_parallel_caller_with_a_dominant_callee_gets_the_maximum():
    """The slow callee is the maximum in ~99 % of the rows, so a line fits the rows as well as the maximum does and
    the held-out errors cannot choose; only the rows' structure shows the calls overlap. A fault that makes the fast
    callee the slowest must then reach the caller (a line with coefficient ~0 would put the delay in its noise)."""
    rng = np.random.default_rng(6)
    n = 1000
    slow, fast = rng.lognormal(3.0, 0.2, n), rng.lognormal(2.0, 0.3, n)
    x = np.column_stack([slow, fast])
    par = rng.lognormal(0.5, 0.3, n) + x.max(axis=1)
    seq = rng.lognormal(0.5, 0.3, n) + x.sum(axis=1)
    assert np.mean(fast > slow) < 0.05
    mech = select_auto(x, par, np.random.default_rng(0))
    assert mech.name == "maxlinear"
    mech.fit(x, par)
    delayed = np.array([[20.0, 60.0]])  # the fast callee 60 ms: the caller waits for it
    assert mech.predict(delayed)[0] > 45.0
    assert select_auto(x, seq, np.random.default_rng(0)).name == "linear"


def test_a_candidate_no_better_on_the_first_fold_is_dropped_early():
    rng = np.random.default_rng(7)
    n = 1000
    x = rng.normal(0.0, 1.0, (n, 2))
    y = x @ np.array([1.0, 2.0]) + rng.normal(0.0, 1.0, n)
    folds = list(np.array_split(rng.permutation(n), 5))
    linear = held_out_errors(rca_engine.LinearMechanism, x, y, folds)
    assert linear is not None and linear.shape == (n,)
    # independent check of fold 0: fitted on the other folds by least squares
    train = np.concatenate(folds[1:])
    design = np.column_stack([np.ones(train.size), x[train]])
    coef, *_ = np.linalg.lstsq(design, y[train], rcond=None)
    pred = np.column_stack([np.ones(folds[0].size), x[folds[0]]]) @ coef
    assert np.allclose(linear[: folds[0].size], (y[folds[0]] - pred) ** 2)
    assert held_out_errors(rca_engine.NonlinearMechanism, x, y, folds, rival=linear * 0.0) is None
