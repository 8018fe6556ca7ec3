"""rca_engine.Options and the presets: one frozen settings object from fit to explanation."""

from __future__ import annotations

import dataclasses
import pickle

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import rca_engine

GRAPH = rca_engine.graph_from_edges([("db", "api"), ("cache", "api"), ("api", "web")])


def _data(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    db, cache = rng.gamma(4.0, 2.0, n), rng.gamma(3.0, 1.0, n)
    api = db + cache + rng.gamma(2.0, 1.0, n)
    web = api + rng.gamma(2.0, 1.0, n)
    return pd.DataFrame({"db": db, "cache": cache, "api": api, "web": web})


def test_options_are_frozen_validated_and_replaceable():
    opts = rca_engine.Options()
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.base = "upper"  # type: ignore[misc]
    for bad in ({"base": "nope"}, {"tail": "nope"}, {"game": "nope"}, {"method": "nope"}, {"tail_fraction": 0.3},
                {"num_samples": 5}, {"mechanisms": "magic"}, {"tolerance": 0.0}):
        with pytest.raises(rca_engine.RCAError):
            rca_engine.Options(**bad)  # type: ignore[arg-type]
    with pytest.raises(rca_engine.RCAError, match="unknown option"):
        opts.replace(bsae="upper")
    assert opts.replace(base="upper").base == "upper" and opts.base == "median"
    assert set(opts.to_dict()) >= {"base", "tail_fraction", "mechanisms", "fit_on_sample"}


def test_presets_hold_what_their_docs_say():
    assert rca_engine.preset("default") == rca_engine.Options()
    lat = rca_engine.preset("latency")
    assert (lat.base, lat.tail_fraction, lat.mechanisms, lat.fit_on_sample) == ("upper", 0.1, "auto", False)
    met = rca_engine.preset("metrics")
    assert (met.base, met.tail_fraction, met.mechanisms, met.fit_on_sample) == ("upper", 0.1, "additive", True)
    assert rca_engine.preset("dowhy").dowhy_compatible
    with pytest.raises(rca_engine.RCAError, match="unknown preset"):
        rca_engine.preset("fast")
    # the backend fits with the latency preset (its settings live in the engine)
    from plugin.models import ENGINE_OPTIONS, SCORE_BASE, TAIL_FRACTION

    assert ENGINE_OPTIONS == lat and SCORE_BASE == "upper" and TAIL_FRACTION == 0.1


def test_model_keeps_its_options_for_scoring_and_attribution():
    data = _data()
    model = rca_engine.fit(GRAPH, data, preset="latency")
    assert model.options == rca_engine.preset("latency") and model.tail_fraction == 0.1
    # outlier_scores uses the model's one-sided base: a very fast request is no outlier
    fast = pd.DataFrame({c: [data[c].min() * 0.5] for c in data.columns})
    assert rca_engine.outlier_scores(model, fast)["web"].iloc[0] < 1e-3
    assert rca_engine.outlier_scores(model, fast, base="median")["web"].iloc[0] > 0.0
    # the one-sided score against an independent count on the model's own reference sample
    slow = data.iloc[[0]].copy()
    slow["web"] = float(data["web"].quantile(0.99))
    score = rca_engine.outlier_scores(model, slow)["web"].iloc[0]
    ref = model.scorer("web").ref_  # the model's reference sample: count the draws at least as slow
    expected = -np.log(np.mean(ref >= slow["web"].iloc[0]))
    assert score == pytest.approx(expected) and expected > 2.0
    # attribution takes base and tail_fraction from the model; keywords and options override single fields
    row = data.iloc[0].copy()
    row["db"] += 40.0
    row["api"] += 40.0
    row["web"] += 40.0
    expl = rca_engine.attribute(model, "web", row)
    assert expl.base == "upper" and expl.root_causes[0] == "db"
    assert sum(expl.contributions.values()) == pytest.approx(expl.outlier_score, rel=1e-6)
    same = rca_engine.attribute(model, "web", row, options=rca_engine.preset("latency"))
    assert same.contributions == expl.contributions
    two_sided = rca_engine.attribute(model, "web", row, base="median")
    assert two_sided.base == "median"
    with pytest.raises(rca_engine.RCAError, match="either preset= or options="):
        rca_engine.attribute(model, "web", row, preset="latency", options=rca_engine.Options())


def test_keyword_arguments_still_work_and_match_the_options_object():
    data = _data()
    by_kw = rca_engine.fit(GRAPH, data, "linear", seed=3, tail_fraction=0.1)
    by_opts = rca_engine.fit(GRAPH, data, options=rca_engine.Options(mechanisms="linear", seed=3, tail_fraction=0.1))
    assert by_kw.options == by_opts.options
    row = data.iloc[5]
    a = rca_engine.attribute(by_kw, "web", row, base="upper", num_samples=500)
    b = rca_engine.attribute(by_opts, "web", row, options=by_opts.options.replace(base="upper", num_samples=500))
    assert a.contributions == b.contributions


def test_old_pickles_without_options_load_with_their_fit_settings():
    model = rca_engine.fit(GRAPH, _data(), "linear", tail_fraction=0.05)
    state = model.__getstate__()
    del state["options"]
    old = rca_engine.CausalModel.__new__(rca_engine.CausalModel)
    old.__setstate__(state)
    assert old.options.tail_fraction == 0.05 and old.options.base == "median"
    assert pickle.loads(pickle.dumps(model)).options == model.options


def test_metrics_preset_fits_f_on_the_explained_row():
    """fit_on_sample = fit(..., incident=row): the same model, the same explanation."""
    rng = np.random.default_rng(4)
    n = 400
    callee = np.zeros(n)  # never moved in normal operation (errors always 0)
    other = rng.poisson(3.0, n).astype(float)
    caller = 0.2 * other + rng.poisson(1.0, n)
    data = pd.DataFrame({"callee": callee, "other": other, "caller": caller})
    graph = nx.DiGraph([("callee", "caller"), ("other", "caller")])
    row = pd.Series({"callee": 30.0, "other": 3.0, "caller": 31.0})
    model = rca_engine.fit(graph, data, preset="metrics")
    expl = rca_engine.attribute(model, "caller", row)
    assert expl.root_causes[0] == "callee"
    direct = rca_engine.fit(graph, data, options=rca_engine.preset("metrics").replace(fit_on_sample=False),
                            incident=row.to_frame().T)
    ref = rca_engine.attribute(direct, "caller", row)
    assert expl.contributions == pytest.approx(ref.contributions)
    # the model passed in is not changed
    assert model.incident is None
