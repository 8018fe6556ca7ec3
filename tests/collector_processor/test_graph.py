"""collector_processor.graph: a node's structure from how its children ran (parallel: max, sequential: sum)."""

from __future__ import annotations

from collector_processor.graph import CallGraph, NodeInfo, infer_structure
from collector_processor.records import CallGraph as RecordCallGraph


def test_structure_follows_the_majority_of_child_pairs() -> None:
    assert infer_structure(False, 5, 0) is None  # a leaf has no structure
    assert infer_structure(True, 3, 1) == "max"
    assert infer_structure(True, 1, 3) == "sum"
    assert infer_structure(True, 2, 2) == "sum"  # a tie reads as sequential
    assert infer_structure(True, 0, 0) == "sum"  # one child: its latency adds to the caller's own time


def test_the_call_graph_record_is_the_one_of_records() -> None:
    assert CallGraph is RecordCallGraph
    g = CallGraph("web:GET /", {"web:GET /": NodeInfo("web", "GET /", "span", infer_structure(True, 0, 2)),
                                "db:q": NodeInfo("db", "q", "db", infer_structure(False, 0, 0))})
    assert g.mechanisms() == {"web:GET /": "sum"}
