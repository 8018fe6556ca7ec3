"""Prometheus metrics of one server (its own CollectorRegistry, so several servers can live in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
