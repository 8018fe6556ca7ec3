"""Error-rate regressions of the backend: why did an entry point's error rate change between two windows?

Reads each window's stored failure table (`store.features(value="error")`: per trace and node, how many of its spans
failed) and the entry's causal graph, and runs `rca_engine.error_rate_change`: the change of the entry's error rate,
in percentage points, split among the nodes whose own-failure rate or propagation of a callee's failure changed.
`GET /api/v1/regression?stat=error_rate` (plugin.regression dispatches here, same windows and cache) and the
`error_rate` section of `GET /api/v1/incident` (the window against the incident baseline) use it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

import rca_engine
from collector_processor import TraceStore
from plugin.causal_graph import causal_graph
from plugin.errors import InvalidArgument, NotFound
from plugin.models import META_PREFIX, feature_matrix, node_meta
from plugin.payloads import services_of
from rca_engine.failures import MIN_FAILURE_ROWS

log = logging.getLogger("whyslow.error_rate")

ERROR_RATE = "error_rate"
UNIT = "percentage_points"
INCIDENT_MIN_ROWS = MIN_FAILURE_ROWS  # traces per entry point and period for the incident view
INCIDENT_MAX_ENTRIES = 20  # entry points attributed per incident query (most failures in the window first)


def is_error_rate(stat: Any) -> bool:
    """Whether a regression query's ``stat`` asks for the error rate."""
    return isinstance(stat, str) and stat.strip().lower() == ERROR_RATE


class _Entry:
    """An entry point's causal graph, its columns and node metadata."""

    def __init__(self, store: TraceStore, entry: str) -> None:
        call_graph = store.graph(entry)
        self.graph = causal_graph(call_graph)
        self.columns = [str(n) for n in self.graph.nodes]
        if entry not in self.columns:
            raise NotFound(f"entry point {entry!r} has no call graph yet")
        self.meta = {str(n): node_meta(info) for n, info in call_graph.nodes.items()}


def failure_rows(store: TraceStore, entry: str, lo: int, hi: int, columns: list[str], max_rows: int,
                 excluded: Iterable[tuple[int, int]] = ()) -> pd.DataFrame:
    """Failed spans per node of the complete traces of ``entry`` that started in [lo, hi) (unix ns), the newest
    ``max_rows``, without those that started in an ``excluded`` segment."""
    frame = store.features(entry, since_unix_nano=max(lo, 0), until_unix_nano=max(hi, 0), limit=max_rows,
                           complete_only=True, value="error")
    segments = list(excluded)
    if segments and len(frame):
        start = frame[META_PREFIX + "start_unix_nano"].to_numpy(dtype=np.int64)
        drop = np.zeros(len(frame), bool)
        for a, b in segments:
            drop |= (start >= a) & (start < b)
        frame = frame[~drop]
    return feature_matrix(frame, columns)


def error_rate_regression(store: TraceStore, entry: str, lo: int, hi: int, base_lo: int, base_hi: int, *,
                          intervals: int, min_rows: int, max_rows: int) -> dict[str, Any]:
    """The JSON answer of ``GET /api/v1/regression?stat=error_rate`` without its window fields (the caller adds
    them): the attribution of the entry's error-rate change from [base_lo, base_hi) to [lo, hi)."""
    g = _Entry(store, entry)
    tables = []
    for what, a, b in (("baseline", base_lo, base_hi), ("comparison", lo, hi)):
        rows = failure_rows(store, entry, a, b, g.columns, max_rows)
        if len(rows) < min_rows:
            raise InvalidArgument(f"the {what} window holds {len(rows)} complete traces of {entry}; at least "
                                  f"{min_rows} are needed (choose a wider or another window)")
        tables.append(rows)
    try:
        result = rca_engine.error_rate_change(g.graph, tables[0], tables[1], entry, intervals=intervals,
                                              min_rows=min_rows)
    except rca_engine.RCAError as exc:
        raise InvalidArgument(str(exc)) from None
    return error_rate_payload(result, g.meta)


def error_rate_payload(result: rca_engine.ErrorRateChange, meta: dict[str, Any]) -> dict[str, Any]:
    """Summary numbers (percent, percentage points), ranked nodes with their rates, and the same per service."""
    contributions = []
    for rank, (node, value) in enumerate(result.contributions.items(), 1):
        m = meta.get(str(node))
        service = m.service if m else str(node)
        lo_hi = result.intervals.get(node)
        own = result.own_rates.get(node, (None, None))
        rate = result.node_rates.get(node, (None, None))
        prop = result.propagation.get(node, {})
        contributions.append({
            "rank": rank, "node": str(node), "service": service, "operation": m.operation if m else "",
            "kind": m.kind if m else "span", "change_kind": result.kinds.get(node, "own_rate"),
            "contribution": value, "contribution_lo": lo_hi[0] if lo_hi else None,
            "contribution_hi": lo_hi[1] if lo_hi else None,
            "counterfactual": result.counterfactuals.get(node), "p_value": result.p_values.get(node),
            "own_rate_before": own[0], "own_rate_after": own[1],
            "failure_rate_before": rate[0], "failure_rate_after": rate[1],
            "propagation_before": {str(u): p[0] for u, p in prop.items()},
            "propagation_after": {str(u): p[1] for u, p in prop.items()},
        })
    services = services_of(contributions, result.modelled_change)
    return {
        "entry": str(result.target), "stat": ERROR_RATE, "unit": UNIT,
        "baseline_value": result.baseline_value, "comparison_value": result.comparison_value,
        "observed_change": result.observed_change, "modelled_change": result.modelled_change,
        "unexplained": result.unexplained, "noise_floor": result.noise_floor, "significant": result.significant,
        "change_interval": list(result.change_interval) if result.change_interval else None,
        "contributions": contributions, "services": services, "method": result.method,
        "computation": result.computation, "seconds": result.seconds, "summary": summary_line(result, services),
        "baseline_rows": result.baseline_rows, "comparison_rows": result.comparison_rows,
    }


def summary_line(result: rca_engine.ErrorRateChange, services: list[dict[str, Any]]) -> str:
    """One human line: the change of the error rate and who moved it."""
    head = (f"error rate {result.baseline_value:.3g} % -> {result.comparison_value:.3g} % "
            f"({result.observed_change:+.3g} pp)")
    if not result.significant:
        return f"{head}: no change beyond the noise floor (±{result.noise_floor:.3g} pp)"
    top = ", ".join(f"{s['service']} {s['contribution']:+.3g} pp" for s in services[:3])
    return f"{head}: {top}"


def incident_error_rates(store: TraceStore, entries: Iterable[str], lo: int, hi: int, base_lo: int, base_hi: int,
                         excluded: Iterable[tuple[int, int]] = (), max_rows: int = 20_000) -> dict[str, Any]:
    """The ``error_rate`` section of an incident summary: per entry point whose requests failed in the window, the
    error-rate change against the incident's baseline (without its ``excluded`` incident segments) and who moved
    it; services ranked by the extra failed requests of the window they explain (pp x window traces / 100, over
    the significant attributions)."""
    segments = list(excluded)
    found: list[tuple[str, _Entry, pd.DataFrame, int]] = []
    for entry in entries:
        try:
            g = _Entry(store, entry)
            window = failure_rows(store, entry, lo, hi, g.columns, max_rows)
        except Exception as exc:  # noqa: BLE001 - one entry point's failure must not hide the others
            log.info("no error-rate attribution for %s: %s", entry, exc)
            continue
        failed = int((window[entry] > 0).sum())
        if failed and len(window) >= INCIDENT_MIN_ROWS:  # a drop of errors is no incident: nothing failed, no read
            found.append((entry, g, window, failed))
    found.sort(key=lambda f: -f[3])
    results: list[dict[str, Any]] = []
    extra: dict[str, float] = {}
    for entry, g, window, _ in found[:INCIDENT_MAX_ENTRIES]:
        try:
            base = failure_rows(store, entry, base_lo, base_hi, g.columns, max_rows, segments)
            if len(base) < INCIDENT_MIN_ROWS:
                continue
            result = rca_engine.error_rate_change(g.graph, base, window, entry, intervals=0,
                                                  min_rows=INCIDENT_MIN_ROWS)
        except Exception as exc:  # noqa: BLE001 - as above
            log.info("no error-rate attribution for %s: %s", entry, exc)
            continue
        payload = error_rate_payload(result, g.meta)
        results.append(payload)
        if not result.significant or result.observed_change <= 0:
            continue
        for s in payload["services"]:
            if s["contribution"] > 0:
                extra[s["service"]] = extra.get(s["service"], 0.0) + s["contribution"] * len(window) / 100.0
    total = sum(extra.values())
    ranked = sorted(extra, key=lambda s: (-extra[s], s))
    return {
        "method": "error-rate change attribution (rca_engine.error_rate_change) of each entry point against the "
                  "incident baseline; not the per-trace explanations",
        "significant": bool(ranked),
        "services": [{"rank": i, "service": s, "extra_failed_requests": extra[s],
                      "share": extra[s] / total if total > 0 else 0.0} for i, s in enumerate(ranked, 1)],
        "entries": results,
    }
