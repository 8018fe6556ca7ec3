"""Per (trace, node) features of a batch of span trees (numpy over the whole batch).

latency = total duration of the node's spans in the trace, count = their number, own = duration minus the union
of the child intervals clipped to the span, gap = own for call nodes (0 otherwise), error = how many of its spans failed (see otlp_decode's
SpanDecoder._failed; > 0: the node failed),
first = start of its first span after the root's start. Only spans reachable from the root count.
callee_error (per row, beside the values): the node failed and one of its failed spans has a failed child span of
another node -- its error may be a callee's, propagated (the failure model's evidence, stored with the features).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collector_processor.call_graph import ChildIntervals, SpanColumns, SpanTree
from collector_processor.grouping import unique_inverse
from collector_processor.records import COUNT, ERR, FIRST, GAP, LAT, OWN

_NS_PER_MS = 1e6


def own_time(cols: SpanColumns, iv: ChildIntervals) -> np.ndarray:
    """Duration of each span minus the union of its (clipped) child intervals, in ns (float)."""
    covered = np.maximum(0, iv.end - np.maximum(iv.start, iv.earlier_end))  # each child's part not yet covered
    return cols.duration - np.bincount(iv.parent, weights=covered, minlength=len(cols.duration))


@dataclass
class FeatureRows:
    """Features in long form: one row per (trace, node) of the batch, ordered by trace then node code."""

    node_codes: np.ndarray  # the distinct node codes of the batch, sorted
    trace: np.ndarray       # trace ordinal per row
    node: np.ndarray        # index into ``node_codes`` per row
    values: np.ndarray      # (latency, own, gap, count, error, first) ms per row
    callee_error: np.ndarray  # bool per row: a failed span of the node has a failed child span of another node


def node_features(cols: SpanColumns, tree: SpanTree, code: np.ndarray, own: np.ndarray) -> FeatureRows:
    """Aggregate the reachable spans per (trace, node code): sums, counts, error flag, earliest start."""
    reached = np.flatnonzero(tree.reach)
    node_codes, node = unique_inverse(code[reached])
    nu = len(node_codes)
    keys, row_of = unique_inverse(cols.trace[reached] * nu + node)
    m = len(keys)
    trace = keys // nu
    values = np.zeros((m, 6), dtype=np.float64)
    values[:, LAT] = np.bincount(row_of, weights=cols.duration[reached], minlength=m) / _NS_PER_MS
    values[:, OWN] = np.bincount(row_of, weights=own[reached], minlength=m) / _NS_PER_MS
    values[:, GAP] = np.where(node_codes[keys % nu] % 2 == 1, values[:, OWN], 0.0)
    values[:, COUNT] = np.bincount(row_of, minlength=m)
    values[:, ERR] = np.bincount(row_of, weights=cols.error[reached], minlength=m)
    first_start = np.full(m, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_start, row_of, cols.start[reached])
    values[:, FIRST] = (first_start - cols.start[tree.root][trace]) / _NS_PER_MS
    explained = callee_errors(cols, tree, code)
    callee = np.bincount(row_of, weights=explained[reached], minlength=m) > 0
    return FeatureRows(node_codes=node_codes, trace=trace, node=keys % nu, values=values, callee_error=callee)


def callee_errors(cols: SpanColumns, tree: SpanTree, code: np.ndarray) -> np.ndarray:
    """Per span: it failed and one of its children in the tree (another node's span) failed too."""
    failed = cols.error.astype(bool)
    child = np.flatnonzero(tree.child & failed)
    parent = tree.parent[child]
    hit = parent[failed[parent] & (code[parent] != code[child])]
    out = np.zeros(len(failed), dtype=bool)
    out[hit] = True
    return out
