"""The re-implemented PetShop baselines find a hand-injected root cause and run under the paper's protocol."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmarks.petshop import ROW, recall
from benchmarks.petshop_baselines import (
    PUBLISHED_METHODS,
    anomalous_at_trigger,
    circa,
    epsilon_diagnosis,
    it_scores,
    pearson_with,
    random_walk,
    ranked_correlation,
    smooth_traversal,
)
from benchmarks.petshop_data import load_scenario

TARGET = "Front"


def _graph() -> nx.DiGraph:
    """Causal graph (cause -> effect): Db, Cache, Static and Api feed Front; Auth and Ghost feed Api.

    Ghost has no data; Static is constant; Extra is a data column outside the graph."""
    return nx.DiGraph([("Db", "Front"), ("Cache", "Front"), ("Static", "Front"), ("Api", "Front"),
                       ("Auth", "Api"), ("Ghost", "Api")])


def _draw(rng: np.random.Generator, n: int, db_shift: np.ndarray | float = 0.0) -> pd.DataFrame:
    db = rng.normal(10, 1, n) + db_shift
    cache = rng.normal(5, 1, n)
    auth = rng.normal(3, 0.5, n)
    api = auth + rng.normal(2, 0.5, n)
    front = db + cache + api + rng.normal(0, 0.5, n)
    return pd.DataFrame({"Db": db, "Cache": cache, "Auth": auth, "Api": api, "Static": np.ones(n), "Front": front,
                         "Extra": rng.normal(0, 1, n)})


@pytest.fixture(scope="module")
def incident() -> tuple[nx.DiGraph, pd.DataFrame, pd.DataFrame]:
    """Normal period with NaNs; a 40-row abnormal window whose root Db jumps by 15 sd from row ROW on."""
    rng = np.random.default_rng(7)
    normal = _draw(rng, 400)
    holes = rng.random(normal.shape) < 0.05
    holes[:, normal.columns.get_loc("Front")] = False
    normal = normal.mask(holes)
    shift = np.where(np.arange(40) >= ROW, 15.0, 0.0)
    abnormal = _draw(rng, 40, shift)
    abnormal.loc[0, "Cache"] = np.nan
    return _graph(), normal, abnormal


@pytest.mark.parametrize("make", [circa, ranked_correlation, random_walk, smooth_traversal])
def test_injected_root_cause_ranked_first(make, incident):
    graph, normal, abnormal = incident
    ranking = make().rank(graph, TARGET, "latency", normal, abnormal)
    assert ranking[0] == "Db", ranking
    assert "Extra" not in ranking  # data outside the graph is never a candidate
    if make is not smooth_traversal:  # smooth traversal, as upstream, pads a node without data and ranks it
        assert "Ghost" not in ranking


def test_trigger_flags_culprit_and_target_only(incident):
    graph, normal, abnormal = incident
    flagged = anomalous_at_trigger(normal, abnormal, TARGET)
    assert flagged is not None and set(flagged) == {"Db", "Front"}
    # independent MAD score of Db at the trigger row
    db = normal["Db"].dropna().to_numpy()
    mad = np.median(np.abs(db - np.median(db))) / 0.6745
    assert flagged["Db"] == pytest.approx(abs(abnormal["Db"].iloc[ROW] - np.median(db)) / mad)


@pytest.mark.parametrize("make", [ranked_correlation, random_walk])
def test_no_issue_when_target_is_normal(make, incident):
    graph, normal, _ = incident
    quiet = _draw(np.random.default_rng(11), 5)
    assert make().rank(graph, TARGET, "latency", normal, quiet) == []


def test_circa_scores_are_regression_z_scores(incident):
    """Without adjustment CIRCA ranks by max |z| of the parent-regression residual: check against numpy lstsq."""
    graph, normal, abnormal = incident
    n_imp, a_imp = normal.fillna(normal.mean()), abnormal.fillna(abnormal.mean())
    expected = {}
    for node, parents in {"Db": [], "Api": ["Auth"], "Front": ["Db", "Cache", "Static", "Api"]}.items():
        X = np.column_stack([np.ones(len(n_imp))] + [n_imp[p] for p in parents])
        coef = np.linalg.lstsq(X, n_imp[node], rcond=None)[0]
        res = n_imp[node] - X @ coef
        Xa = np.column_stack([np.ones(len(a_imp))] + [a_imp[p] for p in parents])
        expected[node] = float(np.max(np.abs((a_imp[node] - Xa @ coef - res.mean()) / res.std(ddof=0))))
    ranking = circa(top_k=10, adjustment=False).rank(graph, TARGET, "latency", normal, abnormal)
    assert ranking[0] == "Db" and expected["Db"] > 10 > expected["Front"]
    assert ranking.index("Front") > ranking.index("Db")
    # Ghost is marginalised: Api keeps Auth as its only parent, so its score is the one computed above
    assert expected["Api"] < 5


def test_pearson_with_matches_scipy():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(6, 3)), columns=["a", "b", "t"])
    frame.iloc[1, 0] = np.nan
    r, p = pearson_with(frame, "t")
    for col in ("a", "b"):
        ok = frame[[col, "t"]].dropna()
        ref = stats.pearsonr(ok[col], ok["t"])
        assert r[col] == pytest.approx(ref.statistic) and p[col] == pytest.approx(ref.pvalue)


def test_it_scores_match_a_brute_force_count():
    """DoWhy's ITAnomalyScorer over its RescaledMedianCDFQuantileScorer, counted value by value (no DoWhy needed)."""
    rng = np.random.default_rng(5)
    normal = np.column_stack([rng.normal(size=200), np.round(rng.normal(size=200), 1), np.ones(200)])
    sample = np.array([2.9, 0.3, 1.5])
    ours = it_scores(normal, sample)
    n = normal.shape[0]

    def base(col: np.ndarray, x: float) -> float:  # x counted in the sample once more
        less, more, equal = int(np.sum(col < x)), int(np.sum(col > x)), int(np.sum(col == x)) + 1
        p = 2 * min(less + equal / 2, more + equal / 2) / (n + 1)
        return -np.log(p)

    for j in range(normal.shape[1]):
        col = normal[:, j]
        s = base(col, sample[j])
        at_least = sum(base(col, v) >= s for v in col)
        assert ours[j] == pytest.approx(-np.log((at_least + 0.5) / (n + 0.5)))
    assert ours[2] == pytest.approx(np.log(200.5 / 0.5))  # a constant column: any other value is the rarest


def test_epsilon_diagnosis_flags_series_that_repeat_their_normal_shape():
    """ε-Diagnosis (PyRCA's statistic) flags nodes whose abnormal series correlates with their recent normal one."""
    rng = np.random.default_rng(2)
    normal = pd.DataFrame(rng.normal(10, 1, size=(300, 5)), columns=["Db", "Cache", "Api", "Front", "Flat"])
    abnormal = pd.DataFrame(rng.normal(10, 1, size=(5, 5)), columns=normal.columns)
    abnormal["Db"] = 4 * normal["Db"].tail(5).to_numpy() + 10  # the same shape, amplified
    abnormal["Flat"] = 3.0
    ranking = epsilon_diagnosis(top_k=5).rank(_graph(), TARGET, "latency", normal, abnormal)
    assert ranking and ranking[0] == "Db" and "Flat" not in ranking
    # ranked by (m/(m-1))^2 r^2 of the paired series (independent computation with scipy)
    stat = {c: (5 / 4) ** 2 * stats.pearsonr(normal[c].tail(5), abnormal[c]).statistic ** 2 for c in ranking}
    assert stat["Db"] == pytest.approx((5 / 4) ** 2)
    assert [stat[c] for c in ranking] == sorted(stat.values(), reverse=True)


def test_smooth_traversal_rejects_unknown_option():
    with pytest.raises(ValueError, match="absent"):
        smooth_traversal(absent="zero")


def test_methods_run_on_petshop_low_traffic(shared_dataset):
    scenario = load_scenario(shared_dataset("petshop"), "low_traffic")
    for name, make in PUBLISHED_METHODS.items():
        for metric, count in (("latency", 14), ("availability", 12)):
            res = recall(scenario, make(), metric)
            assert res.n == count, (name, metric)
            assert 0.0 <= res.recall(1) <= res.recall(3) <= 1.0, (name, metric)
            if "CIRCA" in name or "smooth" in name:
                assert res.empty == 0, (name, metric)  # these never answer "no issue"
