"""Prometheus metrics of one server (its own CollectorRegistry, so several servers can live in one process)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from collector_processor.records import GAP, OWN, AnalysedBatch

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _PipelineCollector(Collector):
    """Exposes the collector pipeline's counters (read at scrape time, never double counted)."""

    def __init__(self, stats: Callable[[], Mapping[str, float]]):
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        try:
            stats = dict(self._stats())
        except Exception:  # noqa: BLE001 - a scrape must not fail because the pipeline is stopping
            stats = {}
        spans = CounterMetricFamily(
            "whyslow_spans", "Spans seen by the OTLP receivers, by outcome", labels=["outcome"]
        )
        traces = CounterMetricFamily("whyslow_pipeline_traces", "Traces assembled, by outcome", labels=["outcome"])
        events = CounterMetricFamily("whyslow_pipeline_events", "Other pipeline counters", labels=["name"])
        gauges = GaugeMetricFamily("whyslow_pipeline_buffered", "Spans/traces waiting in the pipeline",
                                   labels=["name"])
        for key, value in sorted(stats.items()):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key.startswith(("queued_", "buffered_")):
                gauges.add_metric([key], float(value))
            elif key.startswith("spans_"):
                spans.add_metric([key[len("spans_"):]], float(value))
            elif key.startswith("traces_"):
                traces.add_metric([key[len("traces_"):]], float(value))
            else:
                events.add_metric([key], float(value))
        yield spans
        yield traces
        yield events
        yield gauges


class ServerMetrics:
    """Counters and histograms of the detector, model manager and APIs."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.traces = Counter("whyslow_traces", "Completed traces seen by the detector", ["entry"], registry=r)
        self.scored = Counter("whyslow_traces_scored", "Traces scored against a fitted model", registry=r)
        self.outliers = Counter("whyslow_outliers", "Traces above the outlier threshold", ["entry"], registry=r)
        self.explained = Counter("whyslow_explanations", "Explanations computed", ["trigger"], registry=r)
        self.explain_errors = Counter("whyslow_explanation_errors", "Explanations that failed", registry=r)
        self.explain_dropped = Counter(
            "whyslow_explanations_dropped", "Outliers not explained automatically because the queue was full",
            registry=r,
        )
        self.fits = Counter("whyslow_model_fits", "Model fits, by outcome", ["outcome"], registry=r)
        self.fit_seconds = Histogram(
            "whyslow_fit_seconds", "Time to fit one entry point's model", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.attribution_seconds = Histogram(
            "whyslow_attribution_seconds", "Time to explain one trace", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.models = Gauge("whyslow_models_ready", "Entry points with a fitted model", registry=r)
        self.annotations = Counter(
            "whyslow_annotations", "Grafana annotations pushed, by outcome", ["outcome"], registry=r
        )
        self.requests = Counter(
            "whyslow_api_requests", "API requests, by API and status", ["api", "status"], registry=r
        )

    def watch_pipeline(self, stats: Callable[[], Mapping[str, float]]) -> None:
        """Expose the collector pipeline's own counters."""
        self.registry.register(_PipelineCollector(stats))

    def watch_self_time(self, top_n: int) -> SelfTimeCollector:
        """Expose own-time and call-gap histograms per span type; feed it the pipeline's stored batches."""
        collector = SelfTimeCollector(top_n)
        self.registry.register(collector)
        return collector

    def render(self) -> bytes:
        return generate_latest(self.registry)


SELF_TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OTHER = "other"


class SelfTimeCollector(Collector):
    """Per span type own-time and call-gap histograms of completed traces, counted with numpy per batch.

    Own time is a span type's duration minus its children's (what the service itself spent); a call gap is
    the time between a client span and the server span it caused (network, queueing, sidecars). Series are
    labelled ``entry``, ``service``, ``span_type``; each entry point gets at most ``top_n`` span types of its
    own: a new span type takes a free slot when it first appears (the largest total own time of its batch
    first), and once every slot is taken the rest count under ``service="other", span_type="other"``. A
    series, once created, keeps its label (Prometheus histograms must only grow), so cardinality is bounded
    by ``2 * entries * (top_n + 1)``.
    """

    def __init__(self, top_n: int, buckets: tuple[float, ...] = SELF_TIME_BUCKETS):
        self.top_n = int(top_n)
        self._bounds = np.asarray(buckets, dtype=float)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str, str], int] = {}   # (metric, entry, service, span type) -> row
        self._slots: dict[str, set[str]] = {}                     # entry -> span types with their own series
        self._counts = np.zeros((0, len(buckets) + 1), dtype=np.int64)   # per-bucket (not cumulative), +Inf last
        self._sums = np.zeros(0, dtype=float)

    def observe_batch(self, batch: AnalysedBatch) -> None:
        """Count the own time / call gap of every node of the batch's complete traces."""
        if len(batch) == 0 or len(batch.f_trace) == 0:
            return
        keep = np.asarray(batch.complete, dtype=bool)[batch.f_trace]
        keep &= np.isfinite(batch.values[:, OWN]) & np.isfinite(batch.values[:, GAP])  # a NaN would poison a sum
        trace_of, node_of, values = batch.f_trace[keep], batch.f_node_idx[keep], batch.values[keep]
        if len(trace_of) == 0:
            return
        entries = np.asarray(batch.entries, dtype=object)
        entry_idx = {e: i for i, e in enumerate(dict.fromkeys(batch.entries))}
        entry_of = np.fromiter((entry_idx[e] for e in entries), dtype=np.int64, count=len(entries))[trace_of]
        call = np.fromiter((batch.node_info.get(n, ("", "", ""))[2] == "call_gap" for n in batch.nodes),
                           dtype=bool, count=len(batch.nodes))
        seconds = np.where(call[node_of], values[:, GAP], values[:, OWN]) / 1000.0
        # the distinct (entry, node) pairs of the batch, by total own time (largest first: they take free slots)
        pair = entry_of * len(batch.nodes) + node_of
        pairs, inverse = np.unique(pair, return_inverse=True)
        totals = np.bincount(inverse, weights=seconds, minlength=len(pairs))
        names = list(entry_idx)
        with self._lock:
            rows = np.empty(len(pairs), dtype=np.int64)
            for j in np.argsort(-totals, kind="stable"):
                e, n = divmod(int(pairs[j]), len(batch.nodes))
                node = batch.nodes[n]
                rows[j] = self._row(names[e], node, batch.node_info.get(node, ("", "", ""))[0], bool(call[n]))
            self._grow()
            row_of = rows[inverse]
            bucket = np.searchsorted(self._bounds, seconds, side="left")  # le: value <= bound
            width = len(self._bounds) + 1
            flat = np.bincount(row_of * width + bucket, minlength=len(self._sums) * width)
            self._counts += flat.reshape(-1, width)
            self._sums += np.bincount(row_of, weights=seconds, minlength=len(self._sums))

    def _row(self, entry: str, node: str, service: str, call: bool) -> int:
        slots = self._slots.setdefault(entry, set())
        if node not in slots and len(slots) < self.top_n:
            slots.add(node)
        if node not in slots:
            service, node = OTHER, OTHER
        key = ("gap" if call else "own", entry, service, node)
        row = self._series.get(key)
        if row is None:
            row = self._series[key] = len(self._series)
        return row

    def _grow(self) -> None:
        extra = len(self._series) - len(self._sums)
        if extra > 0:
            self._counts = np.vstack([self._counts, np.zeros((extra, self._counts.shape[1]), dtype=np.int64)])
            self._sums = np.concatenate([self._sums, np.zeros(extra)])

    def collect(self) -> Iterator[HistogramMetricFamily]:
        labels = ["entry", "service", "span_type"]
        own = HistogramMetricFamily("whyslow_span_self_seconds",
                                    "Own time of a span type in completed traces (its duration minus its children's)",
                                    labels=labels)
        gap = HistogramMetricFamily("whyslow_call_gap_seconds",
                                    "Call gap of a span type in completed traces (client span minus the server "
                                    "span it caused: network, queueing, sidecars)", labels=labels)
        with self._lock:
            series = list(self._series.items())
            cumulative = np.cumsum(self._counts, axis=1)
            sums = self._sums.copy()
        les = [f"{b:g}" for b in self._bounds] + ["+Inf"]
        for (metric, entry, service, node), row in series:
            family = gap if metric == "gap" else own
            family.add_metric([entry, service, node], list(zip(les, cumulative[row].tolist(), strict=True)),
                              float(sums[row]))
        yield own
        yield gap
