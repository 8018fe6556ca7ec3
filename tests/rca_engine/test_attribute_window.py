"""rca_engine.attribute_window: an incident window's outlier rows explained, their contributions summed."""

from __future__ import annotations

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


def _window(data: pd.DataFrame, slow: dict[int, float], cache_noise: float = 0.0) -> pd.DataFrame:
    """Five normal rows; rows in ``slow`` get that much extra db time (passed on to api and web); every row gets
    ``cache_noise`` extra cache time that does not reach api (an unusual node that never moves the target)."""
    win = data.iloc[10:15].reset_index(drop=True).copy()
    for i, delay in slow.items():
        win.loc[i, ["db", "api", "web"]] += delay
    win["cache"] += cache_noise
    return win


def test_window_sums_the_outlier_rows_explanations():
    data = _data()
    model = rca_engine.fit(GRAPH, data, preset="latency")
    win = _window(data, {1: 40.0, 3: 35.0})
    got = rca_engine.attribute_window(model, "web", win)
    scores = rca_engine.outlier_scores(model, win)["web"].to_numpy()
    expected_rows = [int(i) for i in np.flatnonzero(scores >= 3.0)]
    assert got.rows == expected_rows == [1, 3]
    assert got.window_scores == pytest.approx(list(scores))
    # independent computation: one attribute() per outlier row, summed
    singles = [rca_engine.attribute(model, "web", win.iloc[i]) for i in expected_rows]
    for node in got.contributions:
        assert got.contributions[node] == pytest.approx(sum(e.contributions[node] for e in singles), rel=1e-9)
    assert got.outlier_score == pytest.approx(sum(e.outlier_score for e in singles))
    assert sum(got.contributions.values()) == pytest.approx(got.outlier_score, rel=1e-6)
    assert got.root_causes[0] == "db" and got.shares["db"] > 0.5
    payload = got.to_dict()
    assert payload["root_causes"][0] == "db" and len(payload["explanations"]) == 2  # type: ignore[arg-type]


def test_no_outlier_row_explains_the_most_unusual_one_and_threshold_is_an_option():
    data = _data()
    model = rca_engine.fit(GRAPH, data, preset="latency")
    win = _window(data, {2: 6.0})
    scores = rca_engine.outlier_scores(model, win)["web"].to_numpy()
    high = float(scores.max()) + 1.0
    got = rca_engine.attribute_window(model, "web", win, threshold=high)
    assert got.rows == [int(np.argmax(scores))] and got.threshold == high
    same = rca_engine.attribute(model, "web", win.iloc[got.rows[0]])
    assert got.contributions == pytest.approx(same.contributions)
    via_options = rca_engine.attribute_window(model, "web", win,
                                              options=model.options.replace(window_threshold=high))
    assert via_options.rows == got.rows
    everything = rca_engine.attribute_window(model, "web", win, threshold=0.0)
    assert everything.rows == [0, 1, 2, 3, 4]


def test_a_node_unusual_in_every_row_without_moving_the_target_is_not_summed_in():
    """Normal rows are not explained: their contributions would be noise on the always-unusual node."""
    data = _data()
    model = rca_engine.fit(GRAPH, data, {"api": "sum", "web": "sum"}, preset="latency")
    win = _window(data, {4: 40.0})
    win["cache"] = data["cache"].max() + 5.0  # unusual in every row, api unchanged: cache's noise is not on the path
    got = rca_engine.attribute_window(model, "web", win)
    assert got.rows == [4] and got.root_causes[0] == "db"
    # summing every row instead, cache (whose noise is large in every row, cancelled by api's) collects the most
    every_row = rca_engine.attribute_window(model, "web", win, threshold=0.0)
    assert every_row.root_causes[0] == "cache" and every_row.contributions["cache"] > 3 * got.contributions["cache"]


def test_metrics_preset_fits_f_on_every_row_of_the_window():
    """fit_on_sample: the whole window informs f (fit(..., incident=window)), the outlier rows are explained."""
    rng = np.random.default_rng(4)
    n = 400
    callee = np.zeros(n)  # never failed in normal operation
    other = rng.poisson(3.0, n).astype(float)
    caller = 0.2 * other + rng.poisson(1.0, n)
    data = pd.DataFrame({"callee": callee, "other": other, "caller": caller})
    graph = nx.DiGraph([("callee", "caller"), ("other", "caller")])
    win = pd.DataFrame({"callee": [0.0, 25.0, 30.0, 0.0], "other": [3.0, 3.0, 4.0, 2.0],
                        "caller": [1.0, 26.0, 31.0, 2.0]})
    model = rca_engine.fit(graph, data, preset="metrics")
    got = rca_engine.attribute_window(model, "caller", win)
    assert got.rows == [1, 2] and got.root_causes[0] == "callee"
    direct = rca_engine.fit(graph, data, options=rca_engine.preset("metrics").replace(fit_on_sample=False),
                            incident=win)
    refs = [rca_engine.attribute(direct, "caller", win.iloc[i]) for i in got.rows]
    for node, value in got.contributions.items():
        assert value == pytest.approx(sum(r.contributions[node] for r in refs))
    assert model.incident is None  # the model passed in is not changed


def test_bad_windows_get_clear_errors():
    data = _data()
    model = rca_engine.fit(GRAPH, data, preset="latency")
    with pytest.raises(rca_engine.RCAError, match="DataFrame"):
        rca_engine.attribute_window(model, "web", data.iloc[0])  # type: ignore[arg-type]
    with pytest.raises(rca_engine.RCAError, match="no rows"):
        rca_engine.attribute_window(model, "web", data.iloc[:0])
    with pytest.raises(rca_engine.RCAError, match="target"):
        rca_engine.attribute_window(model, "web", data[["db", "api"]].iloc[:3])
    with pytest.raises(rca_engine.RCAError, match="window_threshold"):
        rca_engine.attribute_window(model, "web", data.iloc[:3], threshold=-1.0)
    bad = data.iloc[:3].copy()
    bad.loc[bad.index[0], "db"] = np.nan
    with pytest.raises(rca_engine.RCAError):
        rca_engine.attribute_window(model, "web", bad)
