"""collector_processor.records: the analysed batch's per-trace rows, call-graph mechanisms, a stored trace's row."""

from __future__ import annotations

import numpy as np

from collector_processor.records import (
    LAT,
    OWN,
    AnalysedBatch,
    CallGraph,
    NodeFeatures,
    NodeInfo,
    TraceFeatures,
)


def batch() -> AnalysedBatch:
    # trace 0: nodes a, b; trace 1: none (no reachable span); trace 2: node c only
    values = np.zeros((3, 6))
    values[:, LAT] = [10.0, 4.0, 7.5]
    values[:, OWN] = [6.0, 4.0, 7.5]
    return AnalysedBatch(
        trace_ids=["t0", "t1", "t2"], entries=["a", "a", "c"], start=np.array([1, 2, 3]),
        duration_ms=np.array([10.0, 1.0, 7.5]), complete=np.array([True, False, True]), n_spans=np.array([2, 1, 1]),
        f_trace=np.array([0, 0, 2]), f_node_idx=np.array([0, 1, 2]), nodes=["a", "b", "c"], values=values)


def test_bounds_give_each_trace_its_rows_even_when_it_has_none() -> None:
    b = batch()
    assert len(b) == 3
    assert b.bounds().tolist() == [0, 2, 2, 3]
    assert [b.row(k) for k in range(3)] == [{"a": 10.0, "b": 4.0}, {}, {"c": 7.5}]
    bounds = b.bounds()
    assert b.row(2, bounds) == b.row(2)  # precomputed bounds give the same rows


def test_call_graph_mechanisms_are_the_non_leaf_structures() -> None:
    g = CallGraph("web", {"web": NodeInfo("web", "GET /", "span", "max"), "gap": NodeInfo("db", "q", "call_gap", "sum"),
                          "db": NodeInfo("db", "q", "db")}, [("web", "gap"), ("gap", "db")], traces=3)
    assert g.mechanisms() == {"web": "max", "gap": "sum"}


def test_trace_features_row_is_node_latency() -> None:
    nodes = {"a": NodeFeatures(12.0, 2.0, 0.0, 1, False, 0.0), "b": NodeFeatures(10.0, 10.0, 0.0, 2, True, 1.0)}
    tf = TraceFeatures("t", "a", 0, 12.0, True, 3, nodes)
    assert tf.row() == {"a": 12.0, "b": 10.0}
