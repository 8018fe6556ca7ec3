"""Per-node shift scores: did a node's own time (or call gap) move between a baseline and a window?

A partial, modest fault (one service's own time x2 on 5 % of the requests) makes almost no request an outlier,
but it moves that node's distribution: more of the window's values lie above the baseline's upper quantiles.
Each node (span type: a service's operation, a call gap, a DB call) is tested once, its values pooled over the
entry points that call it, each entry point's values divided by that entry point's baseline median of the node
(so a change in the mix of entry points is not a shift). One-sided two-sample exceedance tests (Fisher's exact
test: the hypergeometric tail) ask whether the window holds more values than its share above:

* the baseline's 50th, 90th, 99th percentile and maximum, scaled by the window's **common drift** -- a
  sustained slowdown (the maximum gives the most power when a few window values all exceed the whole baseline);
* the baseline's 90th and 99th percentile, the window's values now divided by their *own* median -- a **tail**
  shift: a fault on 5-10 % of the requests stretches the tail without moving the median.

Why these normalisations: a load-driven drift moves every service together (their medians rise by a similar
factor) while a fault moves one. The common drift is the median, over the tested nodes, of the ratio of window
to baseline median; a node that rose no more than that is not shifted. A tail shift is judged on the node's
shape (values over its own median), which a drift that scales the node leaves unchanged however much its scale
moved. A percentile is used only when the baseline expects at least ``MIN_EXCEEDANCES`` values above it.

Scores are calibrated like the IT outlier score: ``-log p`` (nats), Bonferroni-corrected over a node's tests
and over the nodes of the window (``-log min(1, p * m)``): in a window with no change a score of ``s`` is
reached by any node with probability at most ``e^-s``. ``m`` counts only the nodes that could reach 3 nats at all
(Tarone's correction for discrete tests: a node with 3 window values can never give p < 1/C(n+3, 3)), so
rarely called nodes do not dilute the evidence of the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import gammaln, logsumexp
from scipy.stats import hypergeom

from collector_processor import CallGraph

META_PREFIX = "__"
LOCATION_QUANTILES = (0.5, 0.9, 0.99, 1.0)  # 1.0: the baseline's maximum
TAIL_QUANTILES = (0.9, 0.99)
MIN_BASELINE = 5  # baseline values a node needs to be tested
MIN_WINDOW = 3  # window values a node needs to be tested
MIN_EXCEEDANCES = 2.0  # a percentile below 1.0 is used when the baseline expects this many values above it
SCALE_FLOOR_MS = 0.5  # a node's values are divided by its median, at least this (sub-millisecond own times)
# Services do not all respond to load alike: a shift counts only beyond this factor on top of the common drift
# (a fault that matters -- own time x2 on some requests -- is far beyond it; uneven load sensitivity is not).
TOLERANCE = 1.25
EDGE_KINDS = ("call_gap", "db", "messaging")
TARONE_SCORE = float(np.log(20.0))  # the family-wise level (nats) at which untestable nodes are left uncounted


@dataclass
class NodeShift:
    """One tested node (pooled over entry points): its score and what moved."""

    node: str
    service: str
    kind: str
    caller_service: str | None  # for an edge node (call gap, DB call): the service that made the call
    score: float  # nats, corrected for the node's tests and the window's number of nodes
    raw_score: float  # nats, -log of the smallest p-value of the node's tests, uncorrected
    test: str  # "p50", "p90", "p99", "max" (drift-scaled baseline) or "tail p90", "tail p99"
    effect_ms: float  # mean own time per call in the window minus the drift-scaled baseline mean (>= 0)
    baseline_n: int
    window_n: int
    baseline_median_ms: float
    window_median_ms: float
    baseline_p99_ms: float
    window_p99_ms: float
    entries: list[str] = field(default_factory=list)


@dataclass
class ShiftReport:
    """The shift scores of one window against its baseline."""

    nodes: list[NodeShift] = field(default_factory=list)
    drift: float = 1.0  # common ratio of window to baseline median own time
    tests: int = 0

    def significant(self, min_score: float) -> list[NodeShift]:
        return sorted((n for n in self.nodes if n.score >= min_score and n.score > 0), key=lambda n: -n.score)

    @property
    def top_score(self) -> float:
        return max((n.score for n in self.nodes), default=0.0)


def own_times(frame: pd.DataFrame, graph: CallGraph) -> pd.DataFrame:
    """Per trace and node, the node's own time (ms): its latency minus the sum or max of its callees'
    latencies (the collector's structure), floored at 0; NaN where the node was not called."""
    cols = [c for c in frame.columns if not str(c).startswith(META_PREFIX) and c in graph.nodes]
    lat = frame[cols].to_numpy(dtype=float)
    own = lat.copy()
    index = {c: i for i, c in enumerate(cols)}
    callees: dict[str, list[int]] = {}
    for caller, callee in graph.call_edges:
        if caller in index and callee in index and caller != callee:
            callees.setdefault(caller, []).append(index[callee])
    for node, kids in callees.items():
        i = index[node]
        sub = lat[:, kids]
        own[:, i] = lat[:, i] - (sub.max(axis=1) if graph.nodes[node].structure == "max" else sub.sum(axis=1))
    own = np.maximum(own, 0.0)
    own[~(lat > 0)] = np.nan
    return pd.DataFrame(own, index=frame.index, columns=cols)


def exceedance_logp(window_above: np.ndarray, window_n: np.ndarray, base_above: np.ndarray,
                    base_n: np.ndarray) -> np.ndarray:
    """log P(X >= window_above), X hypergeometric (one-sided Fisher exact test): the window holds more of the
    values above a threshold than its share of the pooled sample. Vectorised; 0 where the window holds no more
    than its expected share (nothing to test)."""
    k = np.asarray(window_above, dtype=np.int64)
    n = np.asarray(window_n, dtype=np.int64)
    total = n + np.asarray(base_n, dtype=np.int64)
    above = k + np.asarray(base_above, dtype=np.int64)
    out = np.zeros(k.shape, dtype=float)
    test = (k > 0) & (k * total > n * above)
    if not test.any():
        return out
    idx = np.flatnonzero(test)
    kk, nn, tt, aa = k[idx], n[idx], total[idx], above[idx]
    top = np.minimum(nn, aa)  # the largest possible count
    width = int((top - kk).max()) + 1
    if width > 2048:  # long tails (thousands of window values): scipy's exact routine
        out[idx] = hypergeom.logsf(kk - 1, tt, aa, nn)
        return out
    j = kk[:, None] + np.arange(width)[None, :]  # the counts summed over, padded
    valid = j <= top[:, None]
    jj = np.where(valid, j, kk[:, None])
    logpmf = (_lchoose(aa[:, None], jj) + _lchoose((tt - aa)[:, None], nn[:, None] - jj)
              - _lchoose(tt, nn)[:, None])
    out[idx] = np.minimum(logsumexp(np.where(valid, logpmf, -np.inf), axis=1), 0.0)
    return out


def _lchoose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return gammaln(a + 1.0) - gammaln(b + 1.0) - gammaln(a - b + 1.0)


@dataclass
class _Pooled:
    base: list[np.ndarray] = field(default_factory=list)  # per entry point: baseline values / scale
    win: list[np.ndarray] = field(default_factory=list)  # per entry point: window values / scale
    win_own: list[np.ndarray] = field(default_factory=list)  # per entry point: window values / own median
    raw_base: list[np.ndarray] = field(default_factory=list)
    raw_win: list[np.ndarray] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)
    service: str = ""
    kind: str = ""


def _pool(baseline: Mapping[str, pd.DataFrame], window: Mapping[str, pd.DataFrame],
          graphs: Mapping[str, CallGraph], by_service: bool = False) -> dict[tuple[str, str | None], _Pooled]:
    """Values per (node, calling service): an edge node (a call gap, a DB call) called from two services is two
    edges, whose delay either end may explain. ``by_service``: per service instead -- its own spans together, the
    calls into it together (each node's values divided by its own baseline median, as entry points are pooled)."""
    pooled: dict[tuple[str, str | None], _Pooled] = {}
    for entry, wframe in window.items():
        bframe = baseline.get(entry)
        if bframe is None or wframe.empty or bframe.empty:
            continue
        callers = _edge_callers(graphs[entry])
        bcols = {c: i for i, c in enumerate(bframe.columns)}
        wpos = [i for i, c in enumerate(wframe.columns) if c in bcols]
        if not wpos:
            continue
        nodes = [wframe.columns[i] for i in wpos]
        wv = wframe.to_numpy(dtype=float)[:, wpos]  # numpy column selection: pandas' is slow for many small frames
        bv = bframe.to_numpy(dtype=float)[:, [bcols[c] for c in nodes]]
        wcount, bcount = (~np.isnan(wv)).sum(axis=0), (~np.isnan(bv)).sum(axis=0)
        bscale, wscale = _column_scales(bv, bcount), _column_scales(wv, wcount)
        for i, node in enumerate(nodes):
            if not wcount[i] or not bcount[i]:
                continue
            w, b = wv[:, i], bv[:, i]
            w, b = w[~np.isnan(w)], b[~np.isnan(b)]
            info = graphs[entry].nodes[node]
            caller = callers.get(str(node))
            if by_service:
                key: tuple[str, str | None] = (f"{info.service} ({'calls into it' if caller else 'own time'})", None)
                p = pooled.setdefault(key, _Pooled(service=str(info.service), kind="service"))
            else:
                p = pooled.setdefault((str(node), caller), _Pooled(service=str(info.service), kind=str(info.kind)))
            p.base.append(b / bscale[i])
            p.win.append(w / bscale[i])
            p.win_own.append(w / wscale[i])
            p.raw_base.append(b)
            p.raw_win.append(w)
            p.entries.append(entry)
    return pooled


def shift_scores(baseline: Mapping[str, pd.DataFrame], window: Mapping[str, pd.DataFrame],
                 graphs: Mapping[str, CallGraph], min_baseline: int = MIN_BASELINE,
                 min_window: int = MIN_WINDOW, report_above: float | None = None,
                 by_service: bool = False) -> ShiftReport:
    """Shift scores of every node between the own times of ``baseline`` and ``window`` (entry point ->
    :func:`own_times` frame; ``graphs``: entry point -> its call graph). See the module docstring.
    ``report_above``: only the nodes whose score reaches it are reported (what judging many baseline minutes
    needs; the per-node medians and percentiles of the report are then computed for those alone).
    ``by_service``: test each service's own spans pooled and the calls into it pooled (kind "service"), not each
    node -- more values per test and fewer tests to correct for, when the question is which services moved."""
    pooled = {n: p for n, p in _pool(baseline, window, graphs, by_service).items()
              if sum(map(len, p.base)) >= min_baseline and sum(map(len, p.win)) >= min_window}
    report = ShiftReport()
    if not pooled:
        return report
    names = list(pooled)
    base = [np.sort(np.concatenate(pooled[n].base)) for n in names]
    win = [np.sort(np.concatenate(pooled[n].win)) for n in names]
    win_own = [np.sort(np.concatenate(pooled[n].win_own)) for n in names]
    bn = np.array([len(b) for b in base])
    wn = np.array([len(w) for w in win])
    qs = sorted(set(LOCATION_QUANTILES) | set(TAIL_QUANTILES))
    bq = np.vstack([_sorted_quantiles(b, qs) for b in base])  # nodes x quantiles
    bmed = bq[:, qs.index(0.5)] if 0.5 in qs else np.array([np.median(b) for b in base])
    wmed = np.array([_sorted_quantiles(w, [0.5])[0] for w in win])
    drift = float(np.exp(np.median(np.log(np.maximum(wmed, 1e-9) / np.maximum(bmed, 1e-9)))))
    labels: list[str] = []
    logps: list[np.ndarray] = []
    usable: list[np.ndarray] = []
    for q in LOCATION_QUANTILES:
        cut = bq[:, qs.index(q)] * TOLERANCE  # against the baseline scaled by the drift: window / drift
        logps.append(exceedance_logp(_above(win, cut * max(drift, 1.0)), wn, _above(base, cut), bn))
        usable.append(bn * (1 - q) >= MIN_EXCEEDANCES if q not in (0.5, 1.0) else np.ones(len(names), bool))
        labels.append("max" if q == 1.0 else f"p{round(q * 100)}")
    for q in TAIL_QUANTILES:
        cut = bq[:, qs.index(q)] * TOLERANCE
        logps.append(exceedance_logp(_above(win_own, cut), wn, _above(base, cut), bn))
        usable.append(bn * (1 - q) >= MIN_EXCEEDANCES)
        labels.append(f"tail p{round(q * 100)}")
    logp = np.where(np.vstack(usable), np.vstack(logps), 0.0)  # tests x nodes
    per_node = np.vstack(usable).sum(axis=0)
    raw = -logp.min(axis=0)
    best = logp.argmin(axis=0)
    # Tarone's correction for discrete tests: a node whose smallest achievable p-value (every window value above
    # every baseline value) could not reach the family-wise level does not count among the tests corrected for
    floor = -(gammaln(bn + wn + 1.0) - gammaln(bn + 1.0) - gammaln(wn + 1.0)) + np.log(per_node)
    m = tarone_count(floor, -TARONE_SCORE)
    score = np.maximum(raw - np.log(per_node) - np.log(m), 0.0)
    report.drift, report.tests = drift, int(per_node.sum())
    for i, (node, caller) in enumerate(names):
        if report_above is not None and not score[i] >= report_above:
            continue
        p = pooled[(node, caller)]
        rb, rw = np.concatenate(p.raw_base), np.concatenate(p.raw_win)
        report.nodes.append(NodeShift(
            node=node, service=p.service, kind=p.kind,
            caller_service=caller,
            score=float(score[i]), raw_score=float(raw[i]), test=labels[int(best[i])],
            effect_ms=max(float(rw.mean() - rb.mean() * max(drift, 1.0)), 0.0),
            baseline_n=int(bn[i]), window_n=int(wn[i]),
            baseline_median_ms=float(np.median(rb)), window_median_ms=float(np.median(rw)),
            baseline_p99_ms=float(np.quantile(rb, 0.99)), window_p99_ms=float(np.quantile(rw, 0.99)),
            entries=sorted(set(p.entries))))
    return report


def tarone_count(min_logp: np.ndarray, log_alpha: float) -> int:
    """Tarone (1990): the smallest k such that at most k tests can reach ``log p <= log_alpha - log k``
    (``min_logp``: each test's smallest achievable log p-value); at least 1."""
    ordered = np.sort(np.asarray(min_logp, dtype=float))
    for k in range(1, len(ordered) + 1):
        if np.searchsorted(ordered, log_alpha - np.log(k), side="right") <= k:
            return k
    return max(len(ordered), 1)


def _column_scales(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each column's median (at least SCALE_FLOOR_MS); columns without values get the floor."""
    out = np.full(values.shape[1], SCALE_FLOOR_MS)
    present = counts > 0
    if present.any():
        out[present] = np.maximum(np.nanmedian(values[:, present], axis=0), SCALE_FLOOR_MS)
    return out


def _sorted_quantiles(ordered: np.ndarray, qs: list[float]) -> np.ndarray:
    """numpy's default (linear) quantiles of an already sorted array."""
    pos = np.asarray(qs) * (len(ordered) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _above(ordered: list[np.ndarray], thresholds: np.ndarray) -> np.ndarray:
    """How many of each array's values exceed its threshold (one vectorised pass over all of them)."""
    sizes = np.fromiter((len(v) for v in ordered), dtype=np.int64, count=len(ordered))
    if not sizes.sum():
        return np.zeros(len(ordered), dtype=np.int64)
    ids = np.repeat(np.arange(len(ordered)), sizes)
    hits = np.concatenate(ordered) > np.asarray(thresholds, dtype=float)[ids]
    return np.bincount(ids, weights=hits, minlength=len(ordered)).astype(np.int64)


def _edge_callers(graph: CallGraph) -> dict[str, str]:
    """Edge node (call gap, DB or messaging call) -> the service of its caller."""
    out: dict[str, str] = {}
    for caller, callee in graph.call_edges:
        info = graph.nodes.get(callee)
        if info is not None and info.kind in EDGE_KINDS and caller in graph.nodes:
            out[str(callee)] = str(graph.nodes[caller].service)
    return out


def service_evidence(report: ShiftReport, min_score: float, weight: str = "effect") -> tuple[
        dict[str, float], dict[tuple[str, str], float], set[tuple[str, str]]]:
    """Evidence on nodes inside one service (``singles``), on edges between two services (``pairs``, keyed
    (callee, caller)), and the edges tested (``seen``), for :func:`plugin.incident.resolve_edge_ends`. A node
    counts when its score reaches ``min_score`` (nats); ``weight``: "effect" (its excess ms per call: a 2 s
    network delay on a few calls outweighs a significant 0.5 ms shift on many) or "score" (nats)."""
    singles: dict[str, float] = {}
    pairs: dict[tuple[str, str], float] = {}
    seen: set[tuple[str, str]] = set()
    for n in report.nodes:
        edge = (n.service, n.caller_service) if n.caller_service and n.caller_service != n.service else None
        if edge is not None:
            seen.add(edge)
        if n.score <= 0 or n.score < min_score:
            continue
        value = n.effect_ms if weight == "effect" else n.score
        if edge is not None:
            pairs[edge] = pairs.get(edge, 0.0) + value
        else:
            singles[n.service] = singles.get(n.service, 0.0) + value
    return singles, pairs, seen
