"""collector_processor.features: own time (duration minus the union of the children) and the per (trace, node)
aggregates, against an interval-merging and a pandas group-by computation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from collector_processor.call_graph import ChildIntervals, SpanColumns, SpanTree
from collector_processor.features import node_features, own_time
from collector_processor.records import COUNT, ERR, FIRST, GAP, LAT, OWN

MS = 1_000_000


def columns(trace, start, end, error) -> SpanColumns:
    trace, start, end = np.asarray(trace), np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64)
    n = len(trace)
    zeros = np.zeros(n, dtype=np.int64)
    return SpanColumns(sizes=np.bincount(trace), trace=trace, has_parent_id=zeros.astype(bool), type=zeros,
                       leaf=zeros - 1, kind=zeros, start=start, end=end, error=np.asarray(error, dtype=bool),
                       duration=(end - start).astype(np.float64))


def intervals(parent: np.ndarray, cols: SpanColumns) -> ChildIntervals:
    """The contract of call_graph.child_intervals: children clipped to their parent, by (parent, start), with the
    running end of the earlier siblings (a first child's own start)."""
    child = np.flatnonzero(parent >= 0)
    order = np.lexsort((cols.start[child], parent[child]))
    child = child[order]
    par = parent[child]
    start = np.clip(cols.start[child], cols.start[par], cols.end[par])
    end = np.clip(cols.end[child], cols.start[par], cols.end[par])
    earlier = np.empty_like(start)
    first = np.empty_like(child)
    for i in range(len(child)):
        if i == 0 or par[i] != par[i - 1]:
            earlier[i], first[i] = start[i], child[i]
        else:
            earlier[i], first[i] = max(earlier[i - 1], end[i - 1]), first[i - 1]
    return ChildIntervals(child=child, parent=par, start=start, end=end, first=first, earlier_end=earlier,
                          skewed_spans=0)


def union_length(pairs: list[tuple[int, int]]) -> int:
    total, cur_s, cur_e = 0, None, None
    for s, e in sorted(pairs):
        if cur_e is None or s > cur_e:
            total += (cur_e - cur_s) if cur_e is not None else 0
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return total + ((cur_e - cur_s) if cur_e is not None else 0)


def test_own_time_is_the_duration_minus_the_union_of_the_clipped_children() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = 12
        start = rng.integers(0, 100, n) * MS
        end = start + rng.integers(1, 60, n) * MS
        start[0], end[0] = 0, 200 * MS  # the root spans everything
        parent = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, n)])
        cols = columns(np.zeros(n, dtype=int), start, end, np.zeros(n))
        own = own_time(cols, intervals(parent, cols))
        for p in range(n):
            kids = [(max(start[c], start[p]), min(end[c], end[p])) for c in np.flatnonzero(parent == p)]
            kids = [(s, e) for s, e in kids if e > s]
            assert own[p] == (end[p] - start[p]) - union_length(kids)


def test_node_features_aggregate_reachable_spans_per_trace_and_node() -> None:
    # trace 0: root(code 0) with two calls of node 3 (a call gap: odd code) and one of node 2; one unreachable span
    # trace 1: root(code 0) and an erroring node 2
    trace = [0, 0, 0, 0, 0, 1, 1]
    start = np.array([0, 5, 30, 10, 0, 1000, 1010]) * MS
    end = np.array([100, 20, 50, 80, 500, 1200, 1100]) * MS
    cols = columns(trace, start, end, [0, 0, 0, 0, 0, 0, 1])
    code = np.array([0, 3, 3, 2, 2, 0, 2])
    reach = np.array([True, True, True, True, False, True, True])
    tree = SpanTree(parent=np.array([-1, 0, 0, 0, -1, -1, 5]), root=np.array([0, 5]), reach=reach,
                    child=reach & (np.arange(7) != 0) & (np.arange(7) != 5), complete=np.array([True, True]),
                    adopted=np.zeros(7, dtype=bool), orphan_spans=0, cycle_spans=0)
    own = np.array([11.0, 15.0, 20.0, 70.0, 500.0, 110.0, 90.0]) * MS  # any own times: summed per node
    rows = node_features(cols, tree, code, own)

    df = pd.DataFrame({"trace": trace, "code": code, "dur": cols.duration / MS, "own": own / MS, "err": cols.error,
                       "start": start})[reach]
    root_start = {0: start[0], 1: start[5]}
    expected = df.groupby(["trace", "code"]).agg(lat=("dur", "sum"), own=("own", "sum"), count=("dur", "size"),
                                                  err=("err", "any"), first=("start", "min")).reset_index()
    assert rows.node_codes.tolist() == [0, 2, 3]
    got = pd.DataFrame({"trace": rows.trace, "code": rows.node_codes[rows.node]})
    assert got.values.tolist() == expected[["trace", "code"]].values.tolist()  # ordered by trace, then node
    v = rows.values
    np.testing.assert_allclose(v[:, LAT], expected["lat"])
    np.testing.assert_allclose(v[:, OWN], expected["own"])
    np.testing.assert_allclose(v[:, COUNT], expected["count"])
    np.testing.assert_array_equal(v[:, ERR].astype(bool), expected["err"])
    np.testing.assert_allclose(v[:, GAP], np.where(expected["code"] % 2 == 1, expected["own"], 0.0))
    firsts = [(f - root_start[t]) / MS for t, f in zip(expected["trace"], expected["first"], strict=True)]
    np.testing.assert_allclose(v[:, FIRST], firsts)
