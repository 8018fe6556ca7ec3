"""Which services are behind a time window: explained outliers, distribution change and shift scores combined.

Per-request outliers alone miss what real incidents mostly are -- one service x2..x20 slower on 5-10 % of the
requests, during drifting traffic -- because almost no request crosses the 1-in-10,000 threshold. The window as a
whole is therefore also compared with the baseline just before it (default: the preceding 30 minutes, earlier
incidents left out), and three kinds of evidence are combined:

* **outliers** -- the explained per-request outliers of the window (:func:`plugin.incident.summarize`);
* **shift** -- per-node shift scores of own time and call gaps (:mod:`plugin.shift_scores`): the window counts as
  changed when some node's calibrated score reaches ``min_score`` nats; services are then weighted by the excess
  milliseconds of their nodes with a positive score (a 2 s delay on a few calls outweighs a significant 0.5 ms
  shift on many);
* **attribution** -- ``rca_engine.distribution_change`` per entry point that the shift names: how many ms of the
  entry's mean latency change each node's change explains (counted when beyond the engine's noise floor).

Each kind present gives the services shares summing to 1 (edge nodes -- call gaps, DB calls -- resolved between
their two ends by :func:`plugin.incident.resolve_edge_ends`); a service's score is the mean of its shares over the
kinds present, each kind weighted by how surely it says the window changed, in nats (the outliers: the Poisson
tail of their count at the detector's chance rate; the shift and the attribution: the window's top shift score), so
one chance outlier does not outvote a clear shift. A window with no outlier, no shift score reaching ``min_score``
and no attribution names nobody.

Earlier incidents are left out **per service** (:func:`shift_report`): each baseline minute, pooled with its
neighbours (one minute of a quietly called service holds too few values to be judged alone), is shift-scored
against the 30 minutes before it per service -- its own spans pooled, the calls into it pooled, each node's values
over its own median (``shift_scores(by_service=True)``): the question is which services moved, and pooling gives
each test more values and fewer tests to correct for; the services that reach ``EXCLUDE_SCORE`` are implicated,
and that minute's values of their nodes (their own times, the calls into them, the calls they make) leave every later
baseline, while the other services keep theirs: an incident on one service says nothing about another's, and
where incidents are frequent, leaving out whole minutes would empty the baseline -- while keeping an earlier
incident on the same service would hide its repeat. Traces the detector flagged leave the baseline too (as they
leave model training). The minutes' verdicts are shared with continuous detection (:mod:`plugin.watch`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import poisson

import rca_engine
from collector_processor import TraceStore
from plugin.causal_graph import causal_graph
from plugin.errors import InvalidArgument
from plugin.incident import EDGE_KINDS, resolve_edge_ends, summarize
from plugin.models import META_PREFIX, feature_matrix
from plugin.shift_scores import ShiftReport, own_times, service_evidence, shift_scores

log = logging.getLogger("whyslow.incident")

MINUTE_NS = 60 * 10**9
BASELINE_NS = 30 * MINUTE_NS  # the baseline: the 30 minutes before the window
DEFAULT_WINDOW_NS = 15 * MINUTE_NS  # the window when none is given: the last 15 minutes
# a window is changed when some node's shift score reaches this (nats, corrected for the window's tests): a
# family-wise error of 5 % per question asked of a window
MIN_SHIFT_SCORE = float(np.log(20.0))
# a minute is judged pooled with its neighbours (the JUDGE_RADIUS minutes either side): an incident that matters
# to a baseline lasts minutes, and one minute of a quietly called service holds too few values to be judged alone
JUDGE_RADIUS = 1
# the level (nats) at which a baseline minute implicates a service: one level for every caller (the incident
# endpoint, continuous detection), so the verdicts they share mean the same whoever judged the minute first
EXCLUDE_SCORE = MIN_SHIFT_SCORE
SETTLE_NS = 2 * MINUTE_NS  # a minute's verdict is kept once it ended this long ago
MAX_ROWS = 20_000
DEFAULT_THRESHOLD = float(np.log(10_000.0))  # serve's outlier threshold, when the caller does not give its rate  # newest traces per entry point and period
ATTRIBUTION_MIN_ROWS = 10  # traces per entry point and period the distribution-change attribution needs
ATTRIBUTION_STAT = "mean"  # additive over requests: ms per request of the window
ATTRIBUTION_MAX_ENTRIES = 5  # the entry points attributed: those with the most shift evidence


def window_bounds(lo: int | None, hi: int | None, base_lo: int | None = None,
                  base_hi: int | None = None) -> tuple[int, int, int, int]:
    """The window (default: the last 15 minutes, or up to ``hi``) and its baseline (default: the 30 minutes
    before the window), unix ns."""
    hi = time.time_ns() if hi is None else hi
    lo = hi - DEFAULT_WINDOW_NS if lo is None else lo
    base_hi = lo if base_hi is None else base_hi
    base_lo = base_hi - BASELINE_NS if base_lo is None else base_lo
    if base_lo >= base_hi:
        raise InvalidArgument("baseline_from must be before baseline_to")
    return lo, hi, base_lo, base_hi


@dataclass
class Periods:
    """The stored traces of a window and its baseline, per entry point."""

    lo: int
    hi: int
    base_lo: int
    base_hi: int
    graphs: dict[str, Any] = field(default_factory=dict)
    window: dict[str, pd.DataFrame] = field(default_factory=dict)  # features (latency per node, ms)
    history: dict[str, pd.DataFrame] = field(default_factory=dict)  # the baseline and the 30 minutes before it
    baseline: dict[str, pd.DataFrame] = field(default_factory=dict)  # the baseline without earlier incidents
    # baseline minutes left out for some services (earlier incidents): (from, to, services)
    excluded: list[tuple[int, int, list[str]]] = field(default_factory=list)
    outlier_ids: frozenset[str] = frozenset()  # traces the detector flagged (left out of the baseline)
    outlier_rate: float = 0.0  # the detector's chance rate of an outlier per trace (e^-threshold)
    scope: frozenset[str] = frozenset()  # the entry points asked about (minute verdicts are kept per scope)


def read_periods(store: TraceStore, entries: Iterable[str], lo: int, hi: int, base_lo: int, base_hi: int,
                 max_rows: int = MAX_ROWS) -> Periods:
    """Features of every entry point in the window [lo, hi) and the baseline [base_lo, base_hi) (unix ns)."""
    entries = list(entries)
    periods = Periods(lo, hi, base_lo, base_hi, scope=frozenset(entries))
    for entry in entries:
        try:
            window = store.features(entry, since_unix_nano=max(lo, 0), until_unix_nano=max(hi, 0), limit=max_rows)
            if window.empty:
                continue
            history = store.features(entry, since_unix_nano=max(base_lo - BASELINE_NS, 0),
                                     until_unix_nano=max(base_hi, 0), limit=max_rows)
            periods.graphs[entry] = store.graph(entry)
        except Exception as exc:  # noqa: BLE001 - one entry point's failure must not hide the others
            log.warning("cannot read the traces of %s: %s", entry, exc)
            continue
        periods.window[entry] = window
        periods.history[entry] = history
        periods.baseline[entry] = history[history[META_PREFIX + "start_unix_nano"] >= base_lo]
    return periods


class MinuteVerdicts:
    """Which services each minute (unix-minute grid) was an incident of, per set of entry points judged together:
    the services of the nodes whose own time or call gap, in that minute, has a shift score of at least the level
    against the minute's own baseline (the 30 minutes before it, each service's incident minutes left out of its
    nodes). An empty set: a normal minute. Earlier incidents are left out of a window's baseline *for the services
    they implicate*; the verdicts of minutes that are over (no trace can still arrive for them) are kept
    (thread-safe, bounded)."""

    def __init__(self, max_minutes: int = 7 * 24 * 60) -> None:
        self._verdicts: dict[tuple[frozenset[str], int], frozenset[str]] = {}
        self._lock = threading.Lock()
        self.max_minutes = max_minutes

    def get(self, scope: frozenset[str], minute: int) -> frozenset[str] | None:
        with self._lock:
            return self._verdicts.get((scope, minute))

    def put(self, scope: frozenset[str], minute: int, services: frozenset[str]) -> None:
        with self._lock:
            self._verdicts[(scope, minute)] = frozenset(services)
            while len(self._verdicts) > self.max_minutes:
                self._verdicts.pop(min(self._verdicts, key=lambda k: k[1]))

    def implicated(self, scope: frozenset[str], lo: int, hi: int) -> dict[int, frozenset[str]]:
        """Incident minutes in [lo, hi) of the entry points ``scope`` -> the services implicated."""
        with self._lock:
            return {m: v for (s, m), v in sorted(self._verdicts.items(), key=lambda kv: kv[0][1])
                    if v and s == scope and lo <= m < hi}

    def incidents(self, scope: frozenset[str], lo: int, hi: int) -> list[int]:
        """Incident minutes in [lo, hi) of the entry points ``scope``."""
        return sorted(self.implicated(scope, lo, hi))


def node_ends(graph: Any, columns: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """Column -> (its service, the calling service for an edge node: call gap, DB or messaging call)."""
    callers = _callers(graph)
    return {c: (str(graph.nodes[c].service),
                callers.get(c) if graph.nodes[c].kind in EDGE_KINDS else None) for c in columns if c in graph.nodes}


def mask_implicated(own: pd.DataFrame, minutes: np.ndarray, rows: np.ndarray,
                    implicated: Mapping[int, frozenset[str]],
                    ends: Mapping[str, tuple[str, str | None]]) -> pd.DataFrame:
    """The own times of ``rows`` with, in each incident minute, the values of the nodes of the implicated services
    blanked (NaN: not part of the baseline): a node's own time or call gap, and an edge node also when its caller is
    implicated (CPU contention in a caller slows its outgoing calls)."""
    if not implicated:
        return own.loc[rows]
    mins = minutes[rows]
    cols = list(own.columns)
    values = own.to_numpy(dtype=float)[rows]  # a copy (boolean rows); one frame built at the end
    for minute in np.unique(mins):
        services = implicated.get(int(minute))
        if not services:
            continue
        hit = [i for i, c in enumerate(cols) if c in ends and (ends[c][0] in services or ends[c][1] in services)]
        if hit:
            values[np.ix_(mins == minute, hit)] = np.nan
    return pd.DataFrame(values, index=own.index[rows], columns=cols)


def shift_report(periods: Periods, verdicts: MinuteVerdicts | None = None,
                 exclude_score: float = EXCLUDE_SCORE) -> ShiftReport:
    """Shift scores of the window against its baseline without earlier incidents, judged per service.

    Traces the detector flagged (``periods.outlier_ids``) are not normal behaviour and are left out, as model
    training leaves them out. The baseline's minutes are judged oldest first: a minute's traces against the 30
    minutes before it (with the incidents found so far left out); the services of its nodes whose shift score
    reaches ``exclude_score`` are implicated, and that minute's values of their nodes (own
    times, calls into them, their outgoing calls) are left out of every later baseline -- the other services'
    values of that minute stay (an incident on one service says nothing about another's, and a busy system's
    baseline would otherwise lose most of its minutes). Minutes before the baseline count as normal unless
    ``verdicts`` knows better; finished minutes' verdicts are remembered in ``verdicts``."""
    graphs = periods.graphs
    win = {e: own_times(f, graphs[e]) for e, f in periods.window.items()}
    history = {e: own_times(f, graphs[e]) for e, f in periods.history.items()}
    starts = {e: f[META_PREFIX + "start_unix_nano"].to_numpy(dtype=np.int64) for e, f in periods.history.items()}
    flagged_ids = periods.outlier_ids
    clean = {e: ~f.index.isin(list(flagged_ids)) if flagged_ids else np.ones(len(f), bool)
             for e, f in periods.history.items()}
    ends = {e: node_ends(graphs[e], history[e].columns) for e in history}
    verdicts = verdicts if verdicts is not None else MinuteVerdicts()
    first = periods.base_lo // MINUTE_NS
    span = BASELINE_NS // MINUTE_NS
    scope = periods.scope or frozenset(periods.history)
    implicated = dict(verdicts.implicated(scope, first - span, first))
    settled = (time.time_ns() - SETTLE_NS) // MINUTE_NS  # minutes before this one receive no more traces
    minute_of = {e: s // MINUTE_NS for e, s in starts.items()}
    level = exclude_score
    r = JUDGE_RADIUS
    last = -(-periods.base_hi // MINUTE_NS)  # the minutes of the baseline: [first, last)
    for minute in range(first, last):
        known = verdicts.get(scope, minute)
        if known is None:
            if not any(((m == minute) & clean[e]).any() for e, m in minute_of.items()):
                continue
            inside = {e: (m >= minute - r) & (m <= minute + r) & clean[e] for e, m in minute_of.items()}
            before = {e: (m < minute - r) & (m >= minute - r - span) & clean[e] for e, m in minute_of.items()}
            seg = {e: history[e][inside[e]] for e in history}
            ref = {e: mask_implicated(history[e], minute_of[e], before[e], implicated, ends[e]) for e in history}
            judged = shift_scores(ref, seg, graphs, report_above=max(level, 1e-9), by_service=True)
            known = frozenset(n.service for n in judged.significant(level))
            if minute + r < min(settled, last):  # its neighbours were all there
                verdicts.put(scope, minute, known)
        if known:
            implicated[minute] = known
    keep = {e: (starts[e] >= periods.base_lo) & (starts[e] < periods.base_hi) & clean[e] for e in history}
    base = {e: mask_implicated(history[e], minute_of[e], keep[e], implicated, ends[e]) for e in history}
    periods.excluded = [(m * MINUTE_NS, (m + 1) * MINUTE_NS, sorted(v)) for m, v in sorted(implicated.items())
                        if periods.base_lo < (m + 1) * MINUTE_NS and m * MINUTE_NS < periods.base_hi]
    # the distribution-change attribution compares whole traces: an entry point's baseline keeps the minutes in
    # which none of its services was implicated
    periods.baseline = {}
    for e, f in periods.history.items():
        services = {s for s, _ in ends[e].values()}
        bad = [m for m, v in implicated.items() if v & services]
        periods.baseline[e] = f.loc[keep[e] & ~np.isin(minute_of[e], bad)]
    return shift_scores(base, win, graphs)


def attribution_evidence(periods: Periods, entries: list[str]) -> tuple[dict[str, float],
                                                                        dict[tuple[str, str], float],
                                                                        list[dict[str, Any]]]:
    """ms of the window's mean latency change that each service's nodes explain (rca_engine.distribution_change
    per entry point, weighted by the entry point's traces in the window; only changes beyond the noise floor)."""
    singles: dict[str, float] = {}
    pairs: dict[tuple[str, str], float] = {}
    results: list[dict[str, Any]] = []
    for entry in entries:
        base, win = periods.baseline.get(entry), periods.window.get(entry)
        if base is None or win is None or len(base) < ATTRIBUTION_MIN_ROWS or len(win) < ATTRIBUTION_MIN_ROWS:
            continue
        call_graph = periods.graphs[entry]
        causal = causal_graph(call_graph)
        columns = [str(n) for n in causal.nodes]
        if entry not in columns:
            continue
        structure = dict(call_graph.mechanisms())
        mechanisms = {n: structure.get(n, "sum") for n in columns if causal.in_degree(n)}
        try:
            result = rca_engine.distribution_change(causal, feature_matrix(base, columns), feature_matrix(win, columns),
                                                    entry, stat=ATTRIBUTION_STAT, mechanisms=mechanisms,
                                                    intervals=0, min_rows=ATTRIBUTION_MIN_ROWS)
        except rca_engine.RCAError as exc:
            log.info("no distribution-change attribution for %s: %s", entry, exc)
            continue
        results.append({"entry": entry, "significant": result.significant,
                        "observed_change_ms": result.observed_change, "noise_floor_ms": result.noise_floor})
        if not result.significant or result.observed_change <= 0:
            continue
        callers = _callers(call_graph)
        for player, value in result.contributions.items():
            if value <= 0:
                continue
            node = player.callee if isinstance(player, rca_engine.CallEdge) else player  # a new call: its callee
            info = call_graph.nodes[node]
            ms = float(value) * len(win)
            caller = callers.get(str(node))
            if info.kind in EDGE_KINDS and caller and caller != info.service:
                pairs[(info.service, caller)] = pairs.get((info.service, caller), 0.0) + ms
            else:
                singles[info.service] = singles.get(info.service, 0.0) + ms
    return singles, pairs, results


def _callers(call_graph: Any) -> dict[str, str]:
    return {str(callee): str(call_graph.nodes[caller].service) for caller, callee in call_graph.call_edges
            if caller in call_graph.nodes}


def _shares(scores: dict[str, float]) -> dict[str, float]:
    positive = {s: v for s, v in scores.items() if v > 0}
    total = sum(positive.values())
    return {s: v / total for s, v in positive.items()} if total > 0 else {}


def rank_window(payloads: Sequence[Mapping[str, Any]], periods: Periods, min_score: float = MIN_SHIFT_SCORE,
                attribution: bool = True, verdicts: MinuteVerdicts | None = None) -> dict[str, Any]:
    """The combined ranking of a window (see the module docstring): the outlier summary's fields, each service's
    ``score`` and the share each kind of evidence gives it, the window's top shifted nodes and its baseline."""
    summary = summarize(payloads)
    kinds: dict[str, dict[str, float]] = {}
    if summary["outliers"]:
        kinds["outliers"] = _shares({s["service"]: s["share"] for s in summary["services"]})
    report = shift_report(periods, verdicts)
    changed = report.top_score >= min_score
    if changed:
        singles, pairs, seen = service_evidence(report, 0.0)
        kinds["shift"] = _shares(resolve_edge_ends(singles, pairs, seen=seen))
    attributed: list[dict[str, Any]] = []
    if changed and attribution:
        weight: dict[str, float] = {}
        for n in report.significant(min_score):
            for e in n.entries:
                weight[e] = weight.get(e, 0.0) + n.score
        entries = sorted(weight, key=lambda e: -weight[e])[:ATTRIBUTION_MAX_ENTRIES]
        a_singles, a_pairs, attributed = attribution_evidence(periods, entries)
        shares = _shares(resolve_edge_ends(a_singles, a_pairs, seen=None))
        if shares:
            kinds["attribution"] = shares
    services = sorted({s for shares in kinds.values() for s in shares})
    weights = _kind_weights(kinds, summary["outliers"], periods, report.top_score)
    total = sum(weights.values())
    score = {s: sum(weights[k] * shares.get(s, 0.0) for k, shares in kinds.items()) / total if total > 0
             else sum(shares.get(s, 0.0) for shares in kinds.values()) / len(kinds) for s in services}
    by_service = {s["service"]: s for s in summary["services"]}
    top_shift: dict[str, str] = {}
    for n in sorted(report.nodes, key=lambda n: -n.score):
        if n.score > 0:
            top_shift.setdefault(n.service, n.node)
    ranked = sorted(services, key=lambda s: (-score[s], s))
    out_services = []
    for s in ranked:
        votes = by_service.get(s, {})
        out_services.append({
            "service": s,
            "score": score[s],
            "share": votes.get("share", 0.0),
            "top_node": votes.get("top_node") or top_shift.get(s),
            "first_in": votes.get("first_in", 0),
            "evidence": {kind: shares.get(s, 0.0) for kind, shares in kinds.items()},
        })
    return {
        "outliers": summary["outliers"],
        "services": out_services,
        "evidence": sorted(kinds),
        "shift": {
            "changed": changed,
            "min_score": min_score,
            "drift": report.drift,
            "tests": report.tests,
            "nodes": [_node_row(n) for n in report.significant(1e-9 if changed else min_score)[:20]],
        },
        "attribution": attributed,
        "baseline": {
            "from_ms": periods.base_lo // 1_000_000,
            "to_ms": periods.base_hi // 1_000_000,
            "traces": int(sum(len(f) for f in periods.baseline.values())),
            "excluded": [{"from_ms": a // 1_000_000, "to_ms": b // 1_000_000, "services": services}
                         for a, b, services in periods.excluded],
        },
        "window_traces": int(sum(len(f) for f in periods.window.values())),
    }


def _kind_weights(kinds: dict[str, dict[str, float]], outliers: int, periods: Periods,
                  shift_score: float) -> dict[str, float]:
    """How surely each kind of evidence says the window changed, in nats: the outliers by the Poisson tail of
    their count at the detector's chance rate over the window's traces, the shift (and the attribution, computed
    only for a changed window) by the window's top shift score."""
    rate = periods.outlier_rate or float(np.exp(-DEFAULT_THRESHOLD))
    traces = max(sum(len(f) for f in periods.window.values()), outliers, 1)
    out = {}
    for kind in kinds:
        if kind == "outliers":
            out[kind] = max(-float(poisson.logsf(outliers - 1, traces * rate)), 0.0)
        else:
            out[kind] = max(shift_score, 0.0)
    return out


def _node_row(n: Any) -> dict[str, Any]:
    return {"node": n.node, "service": n.service, "kind": n.kind, "caller_service": n.caller_service,
            "score": n.score, "test": n.test, "effect_ms": n.effect_ms, "baseline_median_ms": n.baseline_median_ms,
            "window_median_ms": n.window_median_ms, "baseline_p99_ms": n.baseline_p99_ms,
            "window_p99_ms": n.window_p99_ms, "baseline_n": n.baseline_n, "window_n": n.window_n,
            "entries": n.entries}
