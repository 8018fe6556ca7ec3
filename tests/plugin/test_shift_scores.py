"""Shift scores (plugin.shift_scores) and the combined window ranking (plugin.incident_ranking) on constructed data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from plugin.incident import resolve_edge_ends
from plugin.incident_ranking import (
    MINUTE_NS,
    MinuteVerdicts,
    mask_implicated,
    node_ends,
    rank_window,
    shift_report,
)
from plugin.shift_scores import exceedance_logp, own_times, service_evidence, shift_scores
from tests.support.shift_traffic import ENTRY, graph, periods, traffic


def test_own_times_undo_the_structure():
    rng = np.random.default_rng(1)
    frame = traffic(50, rng)
    own = own_times(frame, graph())
    assert own["pay:POST /pay"].to_numpy() == pytest.approx((frame["pay:POST /pay"] - frame["pg:SELECT"]).to_numpy())
    assert own[ENTRY].to_numpy() == pytest.approx(
        (frame[ENTRY] - frame["net:cart:GET /cart"] - frame["net:pay:POST /pay"]).to_numpy())
    frame.loc[frame.index[0], "cart:GET /cart"] = 0.0  # not called in that trace
    assert np.isnan(own_times(frame, graph())["cart:GET /cart"].iloc[0])


def test_exceedance_logp_is_fishers_exact_test():
    rng = np.random.default_rng(2)
    n, m = rng.integers(1, 400, 300), rng.integers(1, 400, 300)
    k, b = np.minimum(rng.integers(0, 80, 300), n), np.minimum(rng.integers(0, 80, 300), m)
    ours = exceedance_logp(k, n, b, m)
    reference = hypergeom.logsf(k - 1, n + m, k + b, n)  # scipy: P(X >= k)
    tested = (k > 0) & (k * (n + m) > n * (k + b))
    assert ours[tested] == pytest.approx(reference[tested], abs=1e-9)
    assert (ours[~tested] == 0).all()  # no more than the expected share: nothing to test


def shift(base: pd.DataFrame, win: pd.DataFrame):
    g = graph()
    return shift_scores({ENTRY: own_times(base, g)}, {ENTRY: own_times(win, g)}, {ENTRY: g})


def test_a_partial_fault_during_drift_is_found_and_nothing_else():
    """pay's own time x2 on 5 % of the requests while everything drifts 20 % slower: pay is the only node shifted."""
    rng = np.random.default_rng(3)
    report = shift(traffic(3000, rng), traffic(1500, rng, scale=1.2, slow="pay:POST /pay"))
    assert report.drift == pytest.approx(1.2, rel=0.03)
    top = report.significant(np.log(20))
    assert [n.node for n in top] == ["pay:POST /pay"], [(n.node, n.score) for n in top]
    assert top[0].test != "p50"  # the median did not move beyond the drift; the upper quantiles did
    singles, pairs, seen = service_evidence(report, 0.0)
    scores = resolve_edge_ends(singles, pairs, seen=seen)
    assert max(scores, key=scores.get) == "pay"


@pytest.mark.parametrize("scale", [1.0, 1.3])
def test_no_change_or_pure_drift_scores_nothing(scale):
    """Calibration: with no fault (same distribution, or every node scaled alike) no node reaches 3 nats."""
    rng = np.random.default_rng(4)
    for _ in range(5):
        report = shift(traffic(1000, rng), traffic(500, rng, scale=scale))
        assert report.top_score < np.log(20), [(n.node, n.score) for n in report.significant(0.1)]


def test_null_scores_are_calibrated():
    """Under no change, P(top score >= s) <= e^-s (Bonferroni): at s = 1 at most ~37 % of windows."""
    rng = np.random.default_rng(5)
    tops = [shift(traffic(300, rng), traffic(100, rng)).top_score for _ in range(60)]
    assert np.mean(np.array(tops) >= 1.0) <= np.exp(-1.0) + 0.1


def test_a_sustained_network_delay_names_the_callee_not_the_caller():
    rng = np.random.default_rng(6)
    win = traffic(200, rng)
    win["net:cart:GET /cart"] += 40.0
    win[ENTRY] += 40.0
    report = shift(traffic(600, rng), win)
    top = report.significant(np.log(20))[0]
    assert top.node == "net:cart:GET /cart" and top.caller_service == "fe" and top.effect_ms == pytest.approx(40, 0.1)
    singles, pairs, seen = service_evidence(report, 0.0)
    scores = resolve_edge_ends(singles, pairs, seen=seen)
    assert max(scores, key=scores.get) == "cart"


def test_rank_window_names_the_partial_fault_and_leaves_out_an_earlier_incident():
    """Baseline: 30 minutes with, 20 minutes before the window, 3 minutes where cart was x3 on every request (an
    earlier incident). Window: pay x2 on 8 % of the requests. No outliers: the shift names pay; the earlier
    incident's minutes are left out of the baseline."""
    rng = np.random.default_rng(7)
    lo = 100_000 * MINUTE_NS
    minutes = []
    for m in range(-60, 0):
        slow = "cart:GET /cart" if -20 <= m < -17 else None
        minutes.append(traffic(60, rng, slow=slow, factor=3.0, fraction=1.0, start_ns=lo + m * MINUTE_NS))
    win = traffic(300, rng, slow="pay:POST /pay", fraction=0.08, start_ns=lo)
    verdicts = MinuteVerdicts()
    out = rank_window([], periods(pd.concat(minutes), win, lo), verdicts=verdicts, attribution=False)
    assert out["shift"]["changed"] and out["services"][0]["service"] == "pay", out["services"]
    excluded = [(e["from_ms"] * 1_000_000 - lo) // MINUTE_NS for e in out["baseline"]["excluded"]]
    assert {-20, -19, -18} <= set(excluded) and len(excluded) <= 5, excluded
    first = lo // MINUTE_NS  # verdicts are kept per unix minute
    assert verdicts.incidents(frozenset([ENTRY]), first - 30, first) == sorted(first + m for m in excluded)
    assert verdicts.incidents(frozenset(["another entry"]), first - 30, first) == []  # judged per set of entries


def test_rank_window_names_nobody_without_change():
    rng = np.random.default_rng(8)
    lo = 100_000 * MINUTE_NS
    base = pd.concat([traffic(60, rng, start_ns=lo + m * MINUTE_NS) for m in range(-60, 0)])
    out = rank_window([], periods(base, traffic(300, rng, start_ns=lo), lo))
    assert out["services"] == [] and not out["shift"]["changed"] and out["evidence"] == []


def test_traces_the_detector_flagged_are_left_out_of_the_baseline():
    """A flagged trace is not normal behaviour (model training leaves it out too): it is left out of the baseline,
    and no minute is excluded for it."""
    rng = np.random.default_rng(9)
    lo = 100_000 * MINUTE_NS
    base = pd.concat([traffic(60, rng, start_ns=lo + m * MINUTE_NS) for m in range(-60, 0)])
    p = periods(base, traffic(300, rng, start_ns=lo), lo)
    flagged = base.index[(base["__start_unix_nano"] >= lo - 12 * MINUTE_NS).to_numpy()][:2]
    p.outlier_ids = frozenset(flagged)
    out = rank_window([], p, attribution=False)
    assert out["baseline"]["excluded"] == [] and out["services"] == []
    assert out["baseline"]["traces"] == 30 * 60 - 2
    assert not p.baseline[ENTRY].index.isin(flagged).any()


def test_an_earlier_incident_is_left_out_only_for_its_service():
    """pay x3 on every request 20 minutes ago (3 minutes), and again in the window: the earlier minutes are left out
    of pay's nodes only (the calls into pay and pay's own time), so the window's pay is still a shift against pay's
    normal minutes (and so are pay's outgoing DB calls), while cart and the frontend keep every baseline value (checked against a direct count)."""
    rng = np.random.default_rng(11)
    lo = 100_000 * MINUTE_NS
    minutes = [traffic(20, rng, slow="pay:POST /pay" if -20 <= m < -17 else None, factor=3.0, fraction=1.0,
                       start_ns=lo + m * MINUTE_NS, spacing_ns=3 * 10**9) for m in range(-60, 0)]
    p = periods(pd.concat(minutes), traffic(60, rng, slow="pay:POST /pay", factor=3.0, fraction=1.0, start_ns=lo,
                                            spacing_ns=3 * 10**9), lo)
    out = rank_window([], p, attribution=False)
    assert out["services"][0]["service"] == "pay", out["services"]
    excluded = {(e["from_ms"] * 1_000_000 - lo) // MINUTE_NS: e["services"] for e in out["baseline"]["excluded"]}
    assert {-20, -19, -18} <= set(excluded) and all(v == ["pay"] for v in excluded.values()), excluded
    nodes = {n["node"]: n for n in out["shift"]["nodes"]}
    assert nodes["pay:POST /pay"]["baseline_n"] == 20 * (30 - len(excluded))
    report = shift_report(p)  # the baseline sizes of the nodes of the other services: every value kept
    sizes = {n.node: n.baseline_n for n in report.nodes}
    assert sizes["cart:GET /cart"] == sizes[ENTRY] == 30 * 20
    assert sizes["pg:SELECT"] == 20 * (30 - len(excluded))  # a call pay makes (a DB call): pay's outgoing calls


def test_mask_implicated_blanks_the_implicated_services_nodes_in_their_minutes():
    rng = np.random.default_rng(12)
    g = graph()
    frame = traffic(6, rng, spacing_ns=30 * 10**9)  # two rows per minute 0, 1, 2
    own = own_times(frame, g)
    minutes = frame["__start_unix_nano"].to_numpy() // MINUTE_NS
    rows = np.array([True, True, True, True, False, True])
    out = mask_implicated(own, minutes, rows, {1: frozenset({"pay"}), 2: frozenset({"fe"})}, node_ends(g, own.columns))
    expected = own[rows].copy()
    for i, m in zip(expected.index, minutes[rows], strict=True):
        if m == 1:  # pay's own time, the call into it and its DB call
            expected.loc[i, ["pay:POST /pay", "net:pay:POST /pay", "pg:SELECT"]] = np.nan
        if m == 2:  # the frontend's own time and its outgoing calls (their caller)
            expected.loc[i, [ENTRY, "net:cart:GET /cart", "net:pay:POST /pay"]] = np.nan
    pd.testing.assert_frame_equal(out, expected)


def test_one_chance_outlier_does_not_outvote_a_clear_shift():
    """Kinds of evidence are weighted by how surely they say the window changed (nats): one outlier among 300
    traces at a 1e-4 chance rate weighs -log(1 - e^-0.03) = 3.5 nats; pay's shift far more, so pay leads though
    the outlier's explanation blames cart alone (independent computation of the combined score below)."""
    rng = np.random.default_rng(10)
    lo = 100_000 * MINUTE_NS
    base = pd.concat([traffic(60, rng, start_ns=lo + m * MINUTE_NS) for m in range(-60, 0)])
    p = periods(base, traffic(300, rng, slow="pay:POST /pay", fraction=0.3, start_ns=lo), lo)
    p.outlier_rate = 1e-4
    blame_cart = {"trace_id": "ab" * 16, "entry": ENTRY, "graph": [],
                  "contributions": [{"node": "cart:GET /cart", "service": "cart", "kind": "span", "contribution": 12.0}]}
    out = rank_window([blame_cart], p, attribution=False)
    assert out["evidence"] == ["outliers", "shift"] and out["services"][0]["service"] == "pay"
    w_out = -np.log1p(-np.exp(-300 * 1e-4))
    w_shift = max(n["score"] for n in out["shift"]["nodes"])
    score = {s["service"]: s["score"] for s in out["services"]}
    pay_share = next(s["evidence"]["shift"] for s in out["services"] if s["service"] == "pay")
    assert score["cart"] == pytest.approx(w_out / (w_out + w_shift))
    assert score["pay"] == pytest.approx(w_shift * pay_share / (w_out + w_shift))


def test_minute_verdicts_mean_the_same_whoever_judged_first():
    """Continuous detection asks with its alert level (1 in 1,000) and shares the minute verdicts with the endpoint
    (here, a modest earlier incident on cart that the alert level alone would judge over fewer minutes):
    the baseline the endpoint then uses is the one it would have judged alone."""
    rng = np.random.default_rng(13)
    lo = 100_000 * MINUTE_NS
    minutes = [traffic(20, rng, slow="cart:GET /cart" if -12 <= m < -9 else None, factor=1.6, fraction=0.5,
                       start_ns=lo + m * MINUTE_NS, spacing_ns=3 * 10**9) for m in range(-60, 0)]
    win = traffic(60, rng, start_ns=lo, spacing_ns=3 * 10**9)
    shared = MinuteVerdicts()
    rank_window([], periods(pd.concat(minutes), win, lo), min_score=float(np.log(1000)), attribution=False,
                verdicts=shared)
    after_watch = rank_window([], periods(pd.concat(minutes), win, lo), attribution=False, verdicts=shared)
    alone = rank_window([], periods(pd.concat(minutes), win, lo), attribution=False, verdicts=MinuteVerdicts())
    assert after_watch["baseline"] == alone["baseline"] and alone["baseline"]["excluded"]
    assert {e["services"][0] for e in alone["baseline"]["excluded"]} == {"cart"}


def test_by_service_pools_a_services_nodes_each_over_its_own_median():
    """Two operations of cart, 3 window values each, all far above every baseline value: per node, 3 values give
    p = 1 / C(n + 3, 3) at best, which after the correction for the nodes tested is not significant; pooled per
    service (each node's values over its own baseline median) the 6 values give p = 1 / C(2n + 6, 6) (the
    exact-test bound, computed here independently) and cart is implicated."""
    from math import comb

    from collector_processor import CallGraph, NodeInfo

    rng = np.random.default_rng(14)
    g = CallGraph("fe:GET /")
    names = ["net:cart:GET /cart", "net:cart:POST /cart"] + [f"net:s{i}:GET /" for i in range(40)]
    g.nodes = {"fe:GET /": NodeInfo("fe", "GET /", "span", "sum")}
    for name in names:
        service, op = name.split(":")[1], name.split(":", 2)[2]
        g.nodes[name] = NodeInfo(service, op, "call_gap", "sum")
    g.call_edges = [("fe:GET /", name) for name in names]
    n = 12
    base = pd.DataFrame({name: rng.lognormal(np.log(3.0 + i), 0.1, n) for i, name in enumerate(names)})
    win = pd.DataFrame({name: rng.lognormal(np.log(3.0 + i), 0.1, 3) for i, name in enumerate(names)})
    win[names[:2]] = win[names[:2]] * 100.0  # cart's interface delayed: every call into it
    per_node = shift_scores({"fe:GET /": base}, {"fe:GET /": win}, {"fe:GET /": g})
    assert per_node.significant(np.log(20)) == []
    assert max(x.raw_score for x in per_node.nodes) == pytest.approx(np.log(comb(n + 3, 3)))
    pooled = shift_scores({"fe:GET /": base}, {"fe:GET /": win}, {"fe:GET /": g}, by_service=True)
    cart = next(x for x in pooled.nodes if x.service == "cart")
    assert cart.node == "cart (calls into it)" and cart.kind == "service"
    assert (cart.baseline_n, cart.window_n) == (2 * n, 6)
    assert cart.raw_score == pytest.approx(np.log(comb(2 * n + 6, 6)))
    assert [x.service for x in pooled.significant(np.log(20))] == ["cart"]
