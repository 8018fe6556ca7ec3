"""Explanations: run the engine's attribution for one trace and shape the answer every API serves.

The payload (`plugin.payloads.ExplanationPayload`, a JSON object persisted by the results store) is the one
documented as `Explanation` in /openapi.json; the JSON-datasource frames and the gRPC messages are built
from it, so the three APIs always agree.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import rca_engine
from collector_processor import TraceFeatures, TraceStore
from plugin.errors import NoModel, NotFound
from plugin.models import SCORE_BASE, FittedModel, ModelManager, feature_matrix
from plugin.payloads import ContributionRow, ExplanationPayload
from plugin.results_store import ResultsStore
from rca_engine.failures import FailureExplanation, attribute_failure

if TYPE_CHECKING:
    from plugin.config import ServeConfig
    from plugin.metrics import ServerMetrics

log = logging.getLogger("whyslow.explain")

PAYLOAD_VERSION = 1


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def trace_row(tf: TraceFeatures) -> tuple[dict[str, float], dict[str, float]]:
    """(node -> latency ms, node -> own time ms) of one stored trace."""
    latency = {n: float(f.latency_ms) for n, f in tf.nodes.items()}
    own = {n: float(f.own_ms) for n, f in tf.nodes.items()}
    return latency, own


class Explainer:
    """Explains stored traces with the current model of their entry point; caches on-demand answers."""

    def __init__(self, traces: TraceStore, results: ResultsStore, models: ModelManager, config: ServeConfig,
                 metrics: ServerMetrics | None = None, cache_size: int = 512):
        self.traces = traces
        self.results = results
        self.models = models
        self.config = config
        self.metrics = metrics
        self._cache: OrderedDict[tuple[str, float, int, str], ExplanationPayload] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def trace(self, trace_id: str) -> TraceFeatures:
        tf = self.traces.trace_features(trace_id)
        if tf is None:
            raise NotFound(f"trace {trace_id} is not stored (unknown, not yet complete, or expired)")
        is_fragment = getattr(self.traces, "is_fragment", None)  # replicas: a trace split across them
        if not tf.complete and is_fragment is not None and is_fragment(trace_id):
            raise NotFound(f"trace {trace_id} is not stored whole: it arrived split across whyslow replicas (while "
                           "their number changed); its parts are stored incomplete and not explained")
        return tf

    def model_for(self, entry: str) -> FittedModel:
        fitted = self.models.get(entry)
        if fitted is None:
            seen = next((s.traces_seen for s in self.models.status() if s.entry == entry), 0)
            raise NoModel(
                f"no model for entry point {entry} yet: still learning what normal looks like "
                f"({seen} of {self.config.min_traces} traces seen)"
            )
        return fitted

    def stored(self, trace_id: str, kind: str = "latency") -> ExplanationPayload | None:
        try:
            payload = self.results.explanation(trace_id, kind)
        except Exception as exc:  # noqa: BLE001 - a broken record is recomputed
            log.warning("cannot read the stored explanation of %s: %s", trace_id, exc)
            return None
        if isinstance(payload, dict) and payload.get("version") == PAYLOAD_VERSION:
            return payload
        return None

    def explain(self, trace_id: str, intervals: int = 0, trigger: str = "on_demand",
                kind: str | None = None) -> ExplanationPayload:
        """The explanation of a stored trace: persisted one if any, else computed now (and cached).

        ``kind``: ``latency`` (why slow), ``error`` (why failed) or None: the stored latency explanation, else the
        stored error one, else computed now as ``error`` when the request failed and ``latency`` otherwise."""
        if kind is None:
            for k in KINDS:
                found = self.stored(trace_id, k)
                if found is not None and (intervals == 0 or k == "error" or found.get("intervals", 0) >= intervals):
                    return found
        else:
            found = self.stored(trace_id, kind)
            if found is not None and (intervals == 0 or kind == "error" or found.get("intervals", 0) >= intervals):
                return found
        tf = self.trace(trace_id)
        entry = tf.entry
        fitted = self.model_for(entry)
        if kind is None:
            kind = "error" if _entry_failed(tf) else "latency"
        key = (trace_id, fitted.fitted_at, intervals, kind)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        if kind == "error":
            payload = self.compute_failure(tf, trace_id, fitted, trigger)
        else:
            payload = self.compute(tf, trace_id, fitted, intervals, trigger)
        if trigger == "auto" or payload["outlier_score"] >= self.config.threshold:
            self.persist(trace_id, payload)
        with self._lock:
            self._cache[key] = payload
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return payload

    def persist(self, trace_id: str, payload: ExplanationPayload) -> None:
        try:
            self.results.mark_outlier(trace_id, payload["outlier_score"], payload.get("kind", "latency"))
            self.results.save_explanation(trace_id, payload)
        except Exception as exc:  # noqa: BLE001 - the answer is still served from memory
            log.warning("could not persist the explanation of %s: %s", trace_id, exc)

    def compute(
        self, tf: TraceFeatures, trace_id: str, fitted: FittedModel, intervals: int = 0, trigger: str = "on_demand"
    ) -> ExplanationPayload:
        """Run the attribution and build the payload."""
        t0 = time.perf_counter()
        latency, own = trace_row(tf)
        entry = fitted.entry
        sample = feature_matrix(pd.DataFrame([latency]), fitted.columns)
        kwargs: dict[str, Any] = {}
        if intervals:
            kwargs["intervals"] = intervals
        expl = rca_engine.attribute(fitted.model, target=entry, sample=sample.iloc[0], base=SCORE_BASE, **kwargs)
        seconds = time.perf_counter() - t0
        if self.metrics is not None:
            self.metrics.attribution_seconds.observe(seconds)
            self.metrics.explained.labels(trigger).inc()
        return build_payload(trace_id, tf, fitted, expl, latency, own, intervals, seconds, self.config.threshold)


    def compute_failure(self, tf: TraceFeatures, trace_id: str, fitted: FittedModel,
                        trigger: str = "on_demand") -> ExplanationPayload:
        """Why the request failed: the failure model's attribution of the entry's failure (rca_engine.failures)."""
        if fitted.failures is None:
            raise NoModel(f"no failure model for entry point {fitted.entry} yet (too few complete traces)")
        t0 = time.perf_counter()
        errors = {c: float(tf.nodes[c].errors) if c in tf.nodes else 0.0 for c in fitted.columns}
        expl = attribute_failure(fitted.failures, fitted.entry, errors)
        seconds = time.perf_counter() - t0
        if self.metrics is not None:
            self.metrics.attribution_seconds.observe(seconds)
            self.metrics.explained.labels(trigger).inc()
        latency, own = trace_row(tf)
        payload = build_payload(trace_id, tf, fitted, expl, latency, own, 0, seconds, self.config.threshold)
        payload["kind"] = "error"
        payload["model_traces"] = fitted.failure_rows
        handled = {str(n) for n in expl.handled}
        for row in payload["contributions"]:
            node = row["node"]
            row["failed"] = bool(expl.observed.get(node, False))
            row["own_failure"] = float(expl.own_failure.get(node, 0.0))
            row["success_without"] = float(expl.success_without.get(node, 0.0))
            row["handled"] = node in handled
            row["counterfactual_latency_ms"] = None
        return payload


KINDS = ("latency", "error")


def _entry_failed(tf: TraceFeatures) -> bool:
    node = tf.nodes.get(tf.entry)
    return bool(node is not None and node.errors > 0)


def build_payload(
    trace_id: str,
    tf: TraceFeatures,
    fitted: FittedModel,
    expl: rca_engine.Explanation | FailureExplanation,
    latency: dict[str, float],
    own: dict[str, float],
    intervals: int,
    seconds: float,
    threshold: float,
) -> ExplanationPayload:
    """Shape an engine explanation into the API's Explanation object (ranked contributions, graph)."""
    entry = fitted.entry
    score = _finite(expl.outlier_score) or 0.0
    contributions = {str(k): _finite(v) or 0.0 for k, v in dict(expl.contributions).items()}
    counterfactuals = {str(k): _finite(v) for k, v in dict(getattr(expl, "counterfactuals", {}) or {}).items()}
    bounds = dict(getattr(expl, "intervals", {}) or {})
    ranked = sorted(contributions, key=lambda n: (-contributions[n], n))
    rows: list[ContributionRow] = []
    for rank, node in enumerate(ranked, start=1):
        meta = fitted.nodes.get(node)
        lo_hi = bounds.get(node)
        rows.append(
            {
                "rank": rank,
                "node": node,
                "service": meta.service if meta else node.partition(":")[0],
                "operation": meta.operation if meta else node.partition(":")[2],
                "kind": meta.kind if meta else "span",
                "contribution": contributions[node],
                "share": contributions[node] / score if score > 0 else 0.0,
                "contribution_lo": _finite(lo_hi[0]) if lo_hi is not None else None,
                "contribution_hi": _finite(lo_hi[1]) if lo_hi is not None else None,
                "own_latency_ms": _finite(own.get(node)),
                "node_latency_ms": _finite(latency.get(node, 0.0)),
                "counterfactual_latency_ms": counterfactuals.get(node),
            }
        )
    target_latency = _finite(latency.get(entry))
    if target_latency is None:
        target_latency = _finite(tf.duration_ms) or 0.0
    start_ns = int(tf.start_unix_nano or 0)
    return {
        "version": PAYLOAD_VERSION,
        "kind": "latency",
        "trace_id": trace_id,
        "entry": entry,
        "start_unix_nano": int(start_ns),
        "time_ms": int(start_ns) // 1_000_000,
        "target_latency_ms": target_latency,
        "outlier_score": score,
        "rarer_than": rarer_than(score),
        "is_outlier": score >= threshold,
        "threshold": threshold,
        "model_traces": fitted.rows,
        "model_fitted_at": fitted.fitted_at,
        "intervals": int(intervals),
        "attribution_seconds": seconds,
        "contributions": rows,
        "graph": [
            {"source": a, "target": b, "source_contribution": contributions.get(a, 0.0)}
            for a, b in fitted.causal_edges
        ],
    }


def rarer_than(score: float) -> float:
    """1 / tail probability of an IT score (capped so JSON stays finite)."""
    return float(np.exp(min(float(score), 700.0)))


def top_contributors(payload: Mapping[str, Any], n: int = 3) -> list[ContributionRow]:
    return [c for c in payload.get("contributions", []) if c["contribution"] > 0][:n]


def rarer_text(rarer: float) -> str:
    """'1 in …' count for people: thousands separators up to a billion, then scientific notation."""
    return f"{rarer:,.0f}" if rarer < 1e9 else f"{rarer:.1e}"


def contributor_label(c: ContributionRow) -> str:
    """Service and operation of a contribution; a call gap reads as the network/queueing time of the call."""
    label = f"{c['service']} {c['operation']}"
    return f"network to {label}" if c.get("kind") == "call_gap" else label


def summary_text(payload: Mapping[str, Any], n: int = 3) -> str:
    """One human line: target latency, rarity and the top contributors with their share."""
    parts = [
        f"{contributor_label(c)} {c['contribution']:.2f} nats ({100 * c['share']:.0f}%)"
        for c in top_contributors(payload, n)
    ]
    what = "failed" if payload.get("kind") == "error" else f"took {payload['target_latency_ms']:.1f} ms"
    head = (
        f"{payload['entry']} {what} "
        f"(IT score {payload['outlier_score']:.1f}, rarer than 1 in {rarer_text(payload['rarer_than'])})"
    )
    return head + (": " + "; ".join(parts) if parts else "")
