"""Regression and what-if queries of the backend: why did a statistic of an entry point change between two windows?

Reads the stored per-trace features of both windows (`store.features`) and the entry's call graph, and runs
`rca_engine.distribution_change` / `rca_engine.what_if` with the collector's structure (sum / max: a node's noise
is its own time, exact and fast). Default windows: the last 15 minutes against the same window a day earlier, or
the hour before it when that window holds too few traces. With the collector's structure the calls per request
(`store.features(value="count")`) are players too: a new call or a changed call count is the edge caller→callee.
Every answer is kept in the results store (table ``regressions``, source "query"; it outlives a restart and goes
with its window's traces) and listed by :meth:`RegressionAnalyser.stored` (``GET /api/v1/regressions``, with the
continuous detection's findings, source "watch"); an identical query within a short while is answered from memory.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import rca_engine
from collector_processor import TraceStore
from plugin import validation
from plugin.causal_graph import causal_graph
from plugin.error_rate import ERROR_RATE, error_rate_regression, is_error_rate
from plugin.errors import InvalidArgument, NotFound
from plugin.models import feature_matrix, node_meta
from plugin.payloads import services_of
from plugin.results_store import REGRESSION_SOURCES, RegressionRecord, ResultsStore

if TYPE_CHECKING:
    from plugin.config import ServeConfig

DEFAULT_WINDOW_NS = 15 * 60 * 10**9
DAY_NS = 24 * 3600 * 10**9
HOUR_NS = 3600 * 10**9
MIN_ROWS = 30  # traces per window the engine needs
MAX_ROWS = 20_000  # newest traces of a window that are used
CACHE_SIZE = 64
CACHE_TTL_S = 30.0
DEFAULT_INTERVALS = 50
MAX_INTERVENTIONS = 50


@dataclass(frozen=True)
class Windows:
    """The comparison window and its baseline (unix ns, [lo, hi)) and how the baseline was chosen."""

    lo: int
    hi: int
    base_lo: int
    base_hi: int
    baseline_source: str  # "given" | "day_before" | "hour_before"


class RegressionAnalyser:
    """`GET /api/v1/regression` and `POST /api/v1/whatif` over the store (thread-safe, cached)."""

    def __init__(self, store: TraceStore, config: ServeConfig, resolve_entry: Callable[[Any], str],
                 results: ResultsStore | None = None) -> None:
        self.store = store
        self.config = config
        self.resolve_entry = resolve_entry
        self.results = results
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    # --- queries ---------------------------------------------------------------------------------
    def regression(self, entry: Any = None, baseline_from: Any = None, baseline_to: Any = None, start: Any = None,
                   end: Any = None, stat: Any = None, intervals: Any = None) -> dict[str, Any]:
        """Attribution of the change of ``stat`` of an entry point's latency between the baseline and the window."""
        entry_id = self.resolve_entry(entry)
        if is_error_rate(stat):
            return self.error_rate(entry_id, baseline_from, baseline_to, start, end, intervals)
        statistic = _statistic(stat)
        reps = _intervals(intervals)
        windows = self.windows(entry_id, baseline_from, baseline_to, start, end)
        key = (entry_id, windows, statistic.name, reps)
        cached = self._cached(key)
        if cached is not None:
            return {**cached, "cached": True}
        graph, columns, mechanisms, meta = self._graph(entry_id)
        base = self._rows(entry_id, windows.base_lo, windows.base_hi, columns, "baseline")
        comp = self._rows(entry_id, windows.lo, windows.hi, columns, "comparison")
        counts = None
        if self._structural():  # the call structure (calls per request) is a player too
            counts = (self._counts(entry_id, windows.base_lo, windows.base_hi, base),
                      self._counts(entry_id, windows.lo, windows.hi, comp))
        try:
            result = rca_engine.distribution_change(graph, base, comp, entry_id, stat=statistic,
                                                    mechanisms=mechanisms, intervals=reps, call_counts=counts)
        except rca_engine.RCAError as exc:
            raise InvalidArgument(str(exc)) from None
        payload = regression_payload(result, meta, windows, statistic)
        self._keep(key, entry_id, windows, statistic.name, payload)
        return {**payload, "cached": False}

    def stored(self, entry: Any = None, source: Any = None, start: Any = None, end: Any = None,
               limit: Any = None) -> dict[str, Any]:
        """Stored regressions (answers of ``regression`` and the continuous detection's findings) whose window
        overlaps [from, to), newest window first."""
        entry_id = validation.entry(entry)
        if source not in (None, "") and source not in REGRESSION_SOURCES:
            raise InvalidArgument(f"source must be one of {', '.join(REGRESSION_SOURCES)}")
        lo, hi = validation.time_range(start, end)
        count = validation.limit(limit)
        records = [] if self.results is None else self.results.regressions(
            entry=entry_id, source=source or None, from_unix_nano=lo, to_unix_nano=hi, limit=count)
        return {"regressions": [stored_row(r) for r in records]}

    def error_rate(self, entry_id: str, baseline_from: Any, baseline_to: Any, start: Any, end: Any,
                   intervals: Any) -> dict[str, Any]:
        """``stat=error_rate``: the change of the entry's error rate over the same windows (plugin.error_rate)."""
        reps = _intervals(intervals)
        windows = self.windows(entry_id, baseline_from, baseline_to, start, end)
        key = (entry_id, windows, ERROR_RATE, reps)
        cached = self._cached(key)
        if cached is not None:
            return {**cached, "cached": True}
        payload = error_rate_regression(self.store, entry_id, windows.lo, windows.hi, windows.base_lo,
                                        windows.base_hi, intervals=reps, min_rows=MIN_ROWS, max_rows=MAX_ROWS)
        payload.update(_window_fields(windows, payload.pop("comparison_rows"), payload.pop("baseline_rows")))
        payload = _finite(payload)
        self._keep(key, entry_id, windows, ERROR_RATE, payload)
        return {**payload, "cached": False}

    def _keep(self, key: tuple[Any, ...], entry_id: str, windows: Windows, stat_name: str,
              payload: dict[str, Any]) -> None:
        """Cache an answer for identical queries and save it in the results store (kept across restarts)."""
        self._store(key, payload)
        if self.results is not None:
            self.results.save_regression(RegressionRecord(
                key=f"query:{entry_id}:{stat_name}:{windows.lo}:{windows.hi}:{windows.base_lo}:{windows.base_hi}",
                source="query", entry=entry_id, from_unix_nano=windows.lo, to_unix_nano=windows.hi, payload=payload))

    def whatif(self, body: Any) -> dict[str, Any]:
        """The statistic of an entry point in a window had some nodes' (or services') own time been different."""
        if not isinstance(body, dict):
            raise InvalidArgument("the body must be a JSON object")
        entry_id = self.resolve_entry(body.get("entry"))
        statistic = _statistic(body.get("stat"))
        reps = _intervals(body.get("intervals"))
        windows = self.windows(entry_id, body.get("baseline_from"), body.get("baseline_to"), body.get("from"),
                               body.get("to"))
        graph, columns, mechanisms, meta = self._graph(entry_id)
        interventions = _interventions(body.get("interventions"), meta, columns)
        comp = self._rows(entry_id, windows.lo, windows.hi, columns, "window")
        base = None
        if any(v == "baseline" for v in interventions.values()):
            base = self._rows(entry_id, windows.base_lo, windows.base_hi, columns, "baseline")
        try:
            result = rca_engine.what_if(graph, comp, entry_id, interventions, stat=statistic, baseline=base,
                                        mechanisms=mechanisms, intervals=reps)
        except rca_engine.RCAError as exc:
            raise InvalidArgument(str(exc)) from None
        out = result.to_dict()
        out.update(entry=entry_id, unit=_unit(statistic), **_window_fields(windows, len(comp),
                                                                          None if base is None else len(base)))
        return out

    # --- windows and data ------------------------------------------------------------------------
    def windows(self, entry: str, baseline_from: Any, baseline_to: Any, start: Any, end: Any) -> Windows:
        """The comparison window (default: the last 15 minutes) and its baseline (default: the same window a day
        earlier when it holds enough traces, else the hour before the window)."""
        lo, hi = validation.time_range(start, end)
        hi = time.time_ns() if hi is None else hi
        lo = hi - DEFAULT_WINDOW_NS if lo is None else lo
        if lo >= hi:
            raise InvalidArgument("from must be before to")
        blo, bhi = validation.time_range(baseline_from, baseline_to)
        if blo is not None or bhi is not None:
            width = hi - lo
            bhi = lo if bhi is None else bhi
            blo = bhi - width if blo is None else blo
            if blo >= bhi:
                raise InvalidArgument("baseline_from must be before baseline_to")
            return Windows(lo, hi, blo, bhi, "given")
        if self._count(entry, lo - DAY_NS, hi - DAY_NS) >= MIN_ROWS:
            return Windows(lo, hi, lo - DAY_NS, hi - DAY_NS, "day_before")
        return Windows(lo, hi, lo - HOUR_NS, lo, "hour_before")

    def _count(self, entry: str, lo: int, hi: int) -> int:
        return len(self.store.features(entry, since_unix_nano=max(lo, 0), until_unix_nano=max(hi, 0),
                                       limit=MIN_ROWS, complete_only=True))

    def _rows(self, entry: str, lo: int, hi: int, columns: list[str], what: str) -> pd.DataFrame:
        frame = self.store.features(entry, since_unix_nano=max(lo, 0), until_unix_nano=max(hi, 0), limit=MAX_ROWS,
                                    complete_only=True)
        if len(frame) < MIN_ROWS:
            raise InvalidArgument(f"the {what} window {_iso(lo)} .. {_iso(hi)} holds {len(frame)} complete traces of "
                                  f"{entry}; at least {MIN_ROWS} are needed (choose a wider or another window)")
        return feature_matrix(frame, columns)

    def _counts(self, entry: str, lo: int, hi: int, rows: pd.DataFrame) -> pd.DataFrame:
        """Calls per request of each node, row for row with ``rows`` (the same newest traces of the window)."""
        frame = self.store.features(entry, since_unix_nano=max(lo, 0), until_unix_nano=max(hi, 0), limit=MAX_ROWS,
                                    complete_only=True, value="count")
        counts = feature_matrix(frame, list(rows.columns)).reindex(index=rows.index, fill_value=0.0)
        # a trace whose rows differ between the two reads (stored in between) counts one call where it has time
        return counts.where((counts > 0) | (rows == 0), 1.0)

    def _structural(self) -> bool:
        return getattr(self.config, "mechanisms", "structural") == "structural"

    def _graph(self, entry: str) -> tuple[Any, list[str], Any, dict[str, Any]]:
        call_graph = self.store.graph(entry)
        causal = causal_graph(call_graph)
        columns = [str(n) for n in causal.nodes]
        if entry not in columns:
            raise NotFound(f"entry point {entry!r} has no call graph yet")
        if self._structural():
            structure = dict(call_graph.mechanisms())
            # a non-leaf without an inferred structure adds its callees (the span identity's default)
            mechanisms: Any = {n: structure.get(n, "sum") for n in columns if causal.in_degree(n)}
        else:
            mechanisms = self.config.mechanisms
        meta = {str(n): node_meta(info) for n, info in call_graph.nodes.items()}
        return causal, columns, mechanisms, meta

    # --- cache -------------------------------------------------------------------------------------
    def _cached(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit is None or time.monotonic() - hit[0] > CACHE_TTL_S:
                return None
            self._cache.move_to_end(key)
            return hit[1]

    def _store(self, key: tuple[Any, ...], payload: dict[str, Any]) -> None:
        with self._lock:
            self._cache[key] = (time.monotonic(), payload)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)


def regression_payload(result: rca_engine.RegressionResult, meta: dict[str, Any], windows: Windows,
                       statistic: rca_engine.TargetStatistic) -> dict[str, Any]:
    """The JSON answer: summary numbers, ranked nodes and the same per service."""
    contributions = []
    for rank, (node, value) in enumerate(result.contributions.items(), 1):
        edge = node if isinstance(node, rca_engine.CallEdge) else None
        # a call edge belongs to its caller's service (the caller's code makes the calls)
        owner = str(edge.callers[0]) if edge is not None and edge.callers else str(node if edge is None else edge.callee)
        m = meta.get(owner)
        service = m.service if m else owner
        lo_hi = result.intervals.get(node)
        contributions.append({
            "rank": rank, "node": str(node), "service": service, "operation": m.operation if m else "",
            "kind": m.kind if m else "span", "change_kind": result.kinds.get(node, "changed"),
            "player": "edge" if edge is not None else "node",
            "edge": _edge_fields(edge, meta) if edge is not None else None,
            "contribution": value, "contribution_lo": lo_hi[0] if lo_hi else None,
            "contribution_hi": lo_hi[1] if lo_hi else None,
            "counterfactual": result.counterfactuals.get(node), "p_value": result.p_values.get(node),
        })
    services = services_of(contributions, result.modelled_change)
    payload = {
        "entry": str(result.target), "stat": result.stat, "unit": _unit(statistic),
        "baseline_value": result.baseline_value, "comparison_value": result.comparison_value,
        "observed_change": result.observed_change, "modelled_change": result.modelled_change,
        "unexplained": result.unexplained, "noise_floor": result.noise_floor, "significant": result.significant,
        "change_interval": list(result.change_interval) if result.change_interval else None,
        "contributions": contributions, "services": services, "method": result.method,
        "seconds": result.seconds, "summary": summary_line(result, services, statistic),
        **_window_fields(windows, result.comparison_rows, result.baseline_rows),
    }
    return _finite(payload)


def _edge_fields(edge: rca_engine.CallEdge, meta: dict[str, Any]) -> dict[str, Any]:
    """The caller(s) and callee of a call-edge player with their services."""
    def service(node: Any) -> str:
        m = meta.get(str(node))
        return m.service if m else str(node)

    return {"callers": [str(c) for c in edge.callers], "callee": str(edge.callee),
            "caller_services": [service(c) for c in edge.callers], "callee_service": service(edge.callee)}


def stored_row(record: RegressionRecord) -> dict[str, Any]:
    """A stored regression as listed: where it came from, its window, summary and the answer as it was given."""
    return {"key": record.key, "source": record.source, "entry": record.entry,
            "from_ms": record.from_unix_nano // 1_000_000, "to_ms": record.to_unix_nano // 1_000_000,
            "saved_ms": record.created_unix_nano // 1_000_000, "top_service": record.top_service,
            "summary": record.summary,
            "regression": {k: v for k, v in record.payload.items() if k not in ("graph", "cached")}}


def summary_line(result: rca_engine.RegressionResult, services: list[dict[str, Any]],
                 statistic: rca_engine.TargetStatistic) -> str:
    """One human line: the change and who moved it."""
    u = "" if statistic.is_probability else " ms"
    head = (f"{result.stat} {result.baseline_value:.4g}{u} -> {result.comparison_value:.4g}{u} "
            f"({result.observed_change:+.4g}{u})")
    if not result.significant:
        return f"{head}: no change beyond the noise floor (±{result.noise_floor:.3g}{u})"
    top = ", ".join(f"{s['service']} {s['contribution']:+.3g}{u}" for s in services[:3])
    return f"{head}: {top}"


def _window_fields(windows: Windows, rows: int, baseline_rows: int | None) -> dict[str, Any]:
    return {
        "window": {"from_ms": windows.lo // 1_000_000, "to_ms": windows.hi // 1_000_000, "traces": rows},
        "baseline": {"from_ms": windows.base_lo // 1_000_000, "to_ms": windows.base_hi // 1_000_000,
                     "traces": baseline_rows, "source": windows.baseline_source},
    }


def _statistic(stat: Any) -> rca_engine.TargetStatistic:
    if stat is None or stat == "":
        stat = "p99"
    if not isinstance(stat, str) or len(stat) > 40:
        raise InvalidArgument("stat must be mean, median, p50, p90, p95, p99 (any pNN) or tail>THRESHOLD_MS")
    try:
        return rca_engine.target_statistic(stat)
    except rca_engine.RCAError as exc:
        raise InvalidArgument(str(exc)) from None


def _intervals(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_INTERVALS
    return validation.intervals(value)


def _interventions(raw: Any, meta: dict[str, Any], columns: list[str]) -> dict[str, float | str]:
    """node or service -> factor / "-30%" / "baseline"; a service means all its nodes (span, call gap, db)."""
    if not isinstance(raw, dict) or not raw:
        raise InvalidArgument('interventions must be a non-empty object, e.g. {"cart": 0.7} or '
                              '{"cart:GET /cart": "baseline"}')
    if len(raw) > MAX_INTERVENTIONS:
        raise InvalidArgument(f"at most {MAX_INTERVENTIONS} interventions")
    out: dict[str, float | str] = {}
    for key, value in raw.items():
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise InvalidArgument(f"intervention on {key!r} must be a factor (0.7), a change ('-30%') or 'baseline'")
        if key in columns:
            out[key] = value
            continue
        nodes = [n for n in columns if n in meta and meta[n].service == key]
        if not nodes:
            raise InvalidArgument(f"{key!r} is neither a node nor a service of this entry point's graph")
        for n in nodes:
            out[n] = value
    return out


def _unit(statistic: rca_engine.TargetStatistic) -> str:
    return "probability" if statistic.is_probability else "ms"


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def _finite(obj: Any) -> Any:
    """JSON has no inf/nan: replace them with null."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
