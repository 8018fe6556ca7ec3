"""Completed traces -> call-graph evidence and per-node features, for a whole batch of traces at once: the
composition of the call-graph steps (:mod:`collector_processor.call_graph`: span tree, node of each span, graph
evidence) and the feature steps (:mod:`collector_processor.features`: own time, per (trace, node) rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from collector_processor.assembly import Assembled
from collector_processor.call_graph import (
    NodeNames,
    call_node_codes,
    child_intervals,
    graph_evidence,
    parent_positions,
    qualify_catch_all_roots,
    sibling_overlaps,
    span_columns,
    span_tree,
)
from collector_processor.features import node_features, own_time
from collector_processor.records import AnalysedBatch
from collector_processor.span_types import SpanTypes


class BatchAnalyser:
    """Turns assembled traces into an :class:`AnalysedBatch` (see :mod:`collector_processor.call_graph` for the
    tree and node rules, :mod:`collector_processor.features` for the features)."""

    def __init__(self, types: SpanTypes, overlap_fraction: float = 0.1, qualify_catch_all_root: bool = True,
                 reparent_wrappers: bool = True, wrapper_slack: float = 0.05) -> None:
        self.types = types
        self.overlap_fraction = overlap_fraction
        self.qualify = qualify_catch_all_root
        self.reparent_wrappers = reparent_wrappers
        self.wrapper_slack = wrapper_slack
        self.node_names = NodeNames(types)

    def analyse(self, done: Sequence[Assembled]) -> AnalysedBatch:
        cols = span_columns(done)
        complete = np.fromiter((a.complete for a in done), dtype=bool, count=len(done))
        tree = span_tree(cols, parent_positions(cols), complete, self.types, self.reparent_wrappers,
                         self.wrapper_slack)
        code = call_node_codes(cols, tree)
        if self.qualify:
            qualify_catch_all_roots(code, cols, tree, self.types)
        iv = child_intervals(cols, tree)
        rows = node_features(cols, tree, code, own_time(cols, iv))
        names = self.node_names.names(rows.node_codes)
        entry_code = code[tree.root]
        evidence = graph_evidence(cols.trace, code, entry_code, rows.node_codes, names, rows.trace, rows.node, iv,
                                  *sibling_overlaps(iv, self.overlap_fraction), self.node_names)
        return AnalysedBatch(
            trace_ids=[a.trace_id.hex() for a in done], entries=self.node_names.names(entry_code),
            start=cols.start[tree.root], duration_ms=cols.duration[tree.root] / 1e6, complete=tree.complete,
            n_spans=cols.sizes, f_trace=rows.trace, f_node_idx=rows.node, nodes=names, values=rows.values,
            callee_error=rows.callee_error,
            node_info={name: self.node_names.meta(c) for name, c in zip(names, rows.node_codes.tolist(),
                                                                          strict=True)},
            graph_nodes=evidence.nodes, graph_edges=evidence.edges, orphan_spans=tree.orphan_spans,
            cycle_spans=tree.cycle_spans, skewed_spans=iv.skewed_spans, reparented_spans=len(tree.adopted))
