"""The internal service layer every API calls (REST, JSON datasource, gRPC): validated inputs in,
plain JSON-able dicts out, `plugin.errors` exceptions for the API to map to its status codes."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from collector_processor import TraceStore
from plugin import incident_ranking, validation
from plugin.causal_graph import causal_graph
from plugin.error_rate import incident_error_rates
from plugin.errors import InvalidArgument, NotFound
from plugin.explain import Explainer, rarer_than, summary_text, top_contributors
from plugin.models import META_PREFIX, ModelManager, node_meta
from plugin.payloads import ExplanationPayload
from plugin.regression import RegressionAnalyser
from plugin.results_store import ResultsStore

if TYPE_CHECKING:
    from collector_processor import Pipeline
    from plugin.annotations import AnnotationPusher
    from plugin.config import ServeConfig
    from plugin.detector import Detector

log = logging.getLogger("whyslow.service")

VERSION = "0.1.0"


def outlier_summary(payload: ExplanationPayload) -> dict[str, Any]:
    """The list form of an explanation (GET /api/v1/outliers, the outliers table, gRPC OutlierSummary)."""
    top = top_contributors(payload, 1)
    return {
        "kind": payload.get("kind", "latency"),
        "trace_id": payload["trace_id"],
        "entry": payload["entry"],
        "time_ms": int(payload.get("time_ms") or 0),
        "target_latency_ms": payload["target_latency_ms"],
        "outlier_score": payload["outlier_score"],
        "rarer_than": payload["rarer_than"],
        "root_cause_node": top[0]["node"] if top else None,
        "root_cause_service": top[0]["service"] if top else None,
        "root_cause_share": top[0]["share"] if top else None,
        "summary": summary_text(payload),
    }


class WhySlowService:
    """Read side of the server: explanations, outliers, graphs and status."""

    def __init__(
        self,
        traces: TraceStore,
        results: ResultsStore,
        models: ModelManager,
        explainer: Explainer,
        config: ServeConfig,
        pipeline: Pipeline | None = None,
        detector: Detector | None = None,
        annotations: AnnotationPusher | None = None,
    ):
        self.traces = traces
        self.results = results
        self.models = models
        self.explainer = explainer
        self.config = config
        self.pipeline = pipeline
        self.detector = detector
        self.annotations = annotations
        self.started_at = time.time()
        self.incident_minutes = incident_ranking.MinuteVerdicts()  # earlier incidents, left out of baselines
        self.watch: Any = None  # plugin.watch.RegressionWatch, set by the server
        self.gate: Any = None  # plugin.replicas.SettleGate when replicas share the work, set by the server
        self.regressions = RegressionAnalyser(traces, config, self.resolve_entry, results)

    # --- explanations ----------------------------------------------------------------------------
    def explain(self, trace_id: object, intervals: object = 0, kind: object = None) -> ExplanationPayload:
        tid = validation.trace_id(trace_id)
        return self.explainer.explain(tid, intervals=validation.intervals(intervals), kind=validation.kind(kind))

    def outliers(
        self,
        start: object = None,
        end: object = None,
        entry: object = None,
        min_score: object = None,
        limit: object = None,
        kind: object = None,
    ) -> list[dict[str, Any]]:
        """Recent explained outliers (slow and failed requests, or one ``kind``), newest first."""
        lo, hi = validation.time_range(start, end)
        entry_id = validation.entry(entry)
        floor = validation.score(min_score)
        count = validation.limit(limit)
        which = validation.kind(kind)
        out = [outlier_summary(p) for p in self._stored_explanations(lo, hi, entry_id, floor, count, which)]
        out.sort(key=lambda o: (-o["time_ms"], o["trace_id"]))
        return out[:count]

    def _stored_explanations(self, lo: int | None, hi: int | None, entry_id: str | None, floor: float | None,
                             count: int, kind: str | None = None) -> list[ExplanationPayload]:
        """Explanation payloads of the detected outliers in a window (those still being explained are left out)."""
        payloads = []
        for record in self.results.outliers(lo, hi, entry_id, floor, count, kind):  # the explanation is stored beside it
            payload = self.explainer.stored(str(record.trace_id), record.kind)
            if payload is not None:
                payloads.append(payload)
        return payloads

    def incident(self, start: Any = None, end: Any = None, entry: Any = None, limit: Any = None,
                 baseline_from: Any = None, baseline_to: Any = None) -> dict[str, Any]:
        """Which services are behind a time window: its explained outliers, its shift scores and distribution-change
        attribution against the baseline before it (plugin.incident_ranking)."""
        lo, hi = validation.time_range(start, end)
        blo, bhi = validation.time_range(baseline_from, baseline_to)
        entry_id = validation.entry(entry)
        count = validation.limit(limit, default=validation.MAX_LIMIT)
        payloads = self._stored_explanations(lo, hi, entry_id, None, count)
        bounds = incident_ranking.window_bounds(lo, hi, blo, bhi)
        periods = incident_ranking.read_periods(self.traces, [entry_id] if entry_id else self.entries(), *bounds)
        marks = self.results.outliers(bounds[2] - incident_ranking.BASELINE_NS, bounds[3], entry_id, None, None)
        periods.outlier_ids = frozenset(str(m.trace_id) for m in marks)
        periods.outlier_rate = float(np.exp(-self.config.threshold))
        summary = incident_ranking.rank_window(payloads, periods, verdicts=self.incident_minutes)
        summary["error_rate"] = incident_error_rates(self.traces, [entry_id] if entry_id else self.entries(),
                                                     *bounds, excluded=[(a, b) for a, b, _ in periods.excluded])
        summary["entries"] = sorted({str(p["entry"]) for p in payloads}
                                    | {e for n in summary["shift"]["nodes"] for e in n["entries"]})
        summary["from_ms"] = None if lo is None else lo // 1_000_000
        summary["to_ms"] = None if hi is None else hi // 1_000_000
        return summary

    def detected_incidents(self, entry: Any = None, limit: Any = None) -> dict[str, Any]:
        """Regressions found by continuous detection (plugin.watch), newest first."""
        entry_id = validation.entry(entry)
        count = validation.limit(limit)
        rows = self.watch.recent(entry_id, count) if self.watch is not None else []
        return {"incidents": [{k: v for k, v in r.items() if k != "graph"} for r in rows]}

    def regression(self, entry: Any = None, baseline_from: Any = None, baseline_to: Any = None, start: Any = None,
                   end: Any = None, stat: Any = None, intervals: Any = None) -> dict[str, Any]:
        """Which services moved a latency statistic between a baseline and a window (plugin.regression)."""
        return self.regressions.regression(entry, baseline_from, baseline_to, start, end, stat, intervals)

    def stored_regressions(self, entry: Any = None, source: Any = None, start: Any = None, end: Any = None,
                           limit: Any = None) -> dict[str, Any]:
        """Regressions kept in the results store, newest window first (plugin.regression)."""
        return self.regressions.stored(entry, source, start, end, limit)

    def whatif(self, body: Any) -> dict[str, Any]:
        """A latency statistic under an intervention on some nodes' or services' own time (plugin.regression)."""
        return self.regressions.whatif(body)

    # --- graph -----------------------------------------------------------------------------------
    def resolve_entry(self, entry: object) -> str:
        entry_id = validation.entry(entry)
        known = self.entries()
        if entry_id is None:
            if len(known) == 1:
                return known[0]
            raise InvalidArgument(
                "entry is required: one of " + ", ".join(known) if known else "no entry points seen yet"
            )
        if entry_id not in known:
            raise NotFound(f"unknown entry point {entry_id}")
        return entry_id

    def entries(self) -> list[str]:
        try:
            stored = [str(e) for e in self.traces.entry_points()]
        except Exception:  # noqa: BLE001 - a broken store still lists the entry points with models
            stored = []
        return sorted(set(stored) | set(self.models.entries()))

    def graph(self, entry: object) -> dict[str, Any]:
        """Call graph, causal graph and per-node latency statistics of one entry point."""
        entry_id = self.resolve_entry(entry)
        graph = self.traces.graph(entry_id)
        fitted = self.models.get(entry_id)
        frame = self.traces.features(entry_id, limit=self.config.window)
        cols = [c for c in frame.columns if not str(c).startswith(META_PREFIX)]
        stats: dict[str, dict[str, float]] = {}
        if len(frame):
            values = frame[cols].to_numpy(dtype=float)
            present = values > 0
            q = np.percentile(values, [50, 95, 99], axis=0)
            for i, col in enumerate(cols):
                stats[str(col)] = {
                    "traces": int(present[:, i].sum()),
                    "mean_ms": float(values[:, i].mean()),
                    "p50_ms": float(q[0, i]),
                    "p95_ms": float(q[1, i]),
                    "p99_ms": float(q[2, i]),
                }
        mechanisms = dict(graph.mechanisms())
        nodes = []
        for node, info in sorted(graph.nodes.items()):
            meta = node_meta(info)
            nodes.append(
                {
                    "id": str(node),
                    "service": meta.service,
                    "operation": meta.operation,
                    "kind": meta.kind,
                    "structure": info.structure,
                    "mechanism": (fitted.mechanisms.get(str(node)) if fitted else None) or mechanisms.get(node),
                    "stats": stats.get(str(node)),
                }
            )
        causal = causal_graph(graph)
        return {
            "entry": entry_id,
            "traces": int(len(frame)),
            "model": "ready" if fitted else "learning",
            "nodes": nodes,
            "call_edges": [{"caller": str(a), "callee": str(b)} for a, b in graph.call_edges],
            "causal_edges": [{"source": str(a), "target": str(b)} for a, b in causal.edges],
        }

    # --- status ----------------------------------------------------------------------------------
    def pipeline_stats(self) -> dict[str, Any]:
        if self.pipeline is None:
            return {}
        try:
            raw = self.pipeline.stats()
        except Exception:  # noqa: BLE001 - status must answer while the pipeline stops
            return {}
        raw = raw if isinstance(raw, dict) else getattr(raw, "__dict__", {})
        return {str(k): v for k, v in raw.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def status(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "uptime_s": time.time() - self.started_at,
            "threshold": self.config.threshold,
            "threshold_rarer_than": rarer_than(self.config.threshold),
            "min_traces": self.config.min_traces,
            "models": [s.to_dict() for s in self.models.status()],
            "pipeline": self.pipeline_stats(),
            "detector": ({**self.detector.counters, "pending": self.detector.pending}
                         if self.detector is not None else {}),
            "annotations": dict(self.annotations.counts) if self.annotations is not None else None,
            # replicas: traces settling before scoring, and fragments of traces split across replicas
            "replica": self.gate.counters.to_dict() if self.gate is not None else None,
        }
