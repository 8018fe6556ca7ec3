"""The Train-Ticket benchmark's aggregation of a fault window's explanations (no dataset needed)."""

from __future__ import annotations

import pytest

from benchmarks.nezha_trainticket import AGGREGATIONS, Evidence
from plugin.incident import resolve_edge_ends


def test_caller_with_several_slow_edges_collects_them():
    # CPU contention in A slows its calls to B, C and D: each edge is ambiguous alone, together they point at A
    pairs = {("B", "A"): 1.0, ("C", "A"): 1.0, ("D", "A"): 1.0}
    total = resolve_edge_ends({}, pairs, steps=1)
    # half split: A 1.5, B/C/D 0.5 each; one re-split: A takes 1.5 / (1.5 + 0.5) = 3/4 of every edge
    assert total["A"] == pytest.approx(3 * 0.75)
    for callee in "BCD":
        assert total[callee] == pytest.approx(0.25)
    assert sum(total.values()) == pytest.approx(3.0)  # evidence is only moved, never created


def test_callee_with_several_slow_callers_collects_them_and_singles_count():
    # a delay on X's interface slows the calls into X from P and Q, and X's own work shows 0.2
    total = resolve_edge_ends({"X": 0.2}, {("X", "P"): 1.0, ("X", "Q"): 1.0}, steps=1)
    x0, p0 = 0.2 + 1.0, 0.5  # after the half split
    assert total["X"] == pytest.approx(0.2 + 2 * x0 / (x0 + p0))
    assert total["P"] == pytest.approx(p0 / (x0 + p0))
    assert resolve_edge_ends({"X": 0.2}, {("X", "P"): 1.0}, steps=0) == pytest.approx({"X": 0.7, "P": 0.5})


def test_background_is_subtracted_per_trace_and_clipped():
    credit = {how: {"net:b": [("b", 1.0)], "a:op": [("a", 1.0)]} for how in AGGREGATIONS}
    edges = {"net:b": ("b", "a")}
    window, background = Evidence(), Evidence()
    # two outlier traces in the window, shares (b 0.75, a 0.25) and (b 1.0)
    window.add({"net:b": 3.0, "a:op": 1.0, "x:neg": -2.0}, 1.0, "share", credit, edges)
    window.add({"net:b": 5.0}, 1.0, "share", credit, edges)
    # fault-free: one outlier among 10 traces blaming a:op fully -> 0.1 per trace
    background.add({"a:op": 4.0}, 1.0 / 10, "share", credit, edges)
    window.merge(background, -5.0)  # the window has 5 traces of this entry point
    table = window.tables["node metadata"]
    assert table["b"] == pytest.approx(1.75) and table["a"] == pytest.approx(0.25 - 0.5)
    clipped = window.clipped()
    assert clipped.tables["node metadata"]["a"] == 0.0 and clipped.pairs[("b", "a")] == pytest.approx(1.75)
    assert "x:neg" not in table and window.singles["a"] == pytest.approx(-0.25)


def test_per_edge_weight_prefers_the_end_whose_edges_in_one_direction_are_all_slow():
    """A gateway G calls six peers and one (F) is slow: G has more total evidence, but F's incoming edges are
    all slow while five of G's outgoing edges are fine, so F takes most of the G -> F edge."""
    pairs = {("F", "G"): 6.0, ("E", "G"): 1.2, ("F", "P"): 0.6}
    seen = {("F", "G"), ("E", "G"), ("H", "G"), ("I", "G"), ("J", "G"), ("K", "G"),  # G's six calls
            ("F", "P"), ("M", "F"), ("N", "F")}  # F is called by G and P and calls M and N (fine)
    plain = resolve_edge_ends({}, pairs, steps=1)
    assert max(plain, key=plain.__getitem__) == "G"  # total evidence: the gateway
    got = resolve_edge_ends({}, pairs, steps=1, seen=seen)
    w_f = max((3.0 + 0.3) / 2, 0.0)  # mean over F's two incoming edges; its outgoing ones carry nothing
    w_g = (3.0 + 0.6 + 0 + 0 + 0 + 0) / 6  # mean over G's six outgoing edges
    w_e, w_p = 0.6, 0.3  # E: one incoming edge; P: one outgoing edge
    assert got["F"] == pytest.approx(6.0 * w_f / (w_f + w_g) + 0.6 * w_f / (w_f + w_p))
    assert got["G"] == pytest.approx(6.0 * w_g / (w_f + w_g) + 1.2 * w_g / (w_g + w_e))
    assert max(got, key=got.__getitem__) == "F"
    assert sum(got.values()) == pytest.approx(7.8)  # evidence is only moved, never created


def test_per_edge_weight_keeps_a_caller_with_all_outgoing_edges_slow():
    # CPU contention in A: its three calls are slow, its one incoming edge is fine; each callee has one edge
    pairs = {("B", "A"): 1.0, ("C", "A"): 1.0, ("D", "A"): 1.0}
    got = resolve_edge_ends({"A": 0.4}, pairs, steps=1, seen=set(pairs) | {("A", "Z")})
    w_a, w_callee = 0.4 + 0.5, 0.5  # A: its own work + mean over its outgoing edges (0.5 each after the half split)
    assert got["A"] == pytest.approx(0.4 + 3 * w_a / (w_a + w_callee))
    assert got["B"] == pytest.approx(w_callee / (w_a + w_callee))
    assert max(got, key=got.__getitem__) == "A"
