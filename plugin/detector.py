"""Detector: score every completed trace's entry latency, explain the outliers on a background worker.

`Detector.on_trace` is the collector Pipeline's listener: it only enqueues (never blocks ingestion).
A scoring worker (`BackgroundWorker`) drains the queue in batches and scores each entry point's batch with one
vectorised engine call; traces above the threshold go to the bounded queue of an explanation worker, so a slow
attribution never delays scoring. Explained outliers are published to the `OutlierHub`
(gRPC WatchOutliers) and to the outlier callbacks (Grafana annotation pusher).

Traces that complete while an entry point is still learning cannot be scored; their ids are kept (the newest
`window` per entry point, seeded from the store at start) and scored as one backlog job once the first model
is fitted. That model was fitted on those same traces (a few slow ones among them make themselves look
ordinary), so the backlog's candidate outliers (at or above the threshold, or an entry latency beyond
sqrt(2 * threshold) robust standard deviations from the median) are left out and the model is refitted once
without them; the refitted model's scores decide what is marked and explained. A fault present in a
minority of the learning traces is found; one present in most of them is learned as normal.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

import rca_engine
from collector_processor import CompletedTrace, TraceStore
from collector_processor.worker import BackgroundWorker
from plugin.explain import Explainer
from plugin.models import SCORE_BASE, FittedModel, ModelManager, feature_matrix
from plugin.payloads import ExplanationPayload
from plugin.results_store import ResultsStore

if TYPE_CHECKING:
    from plugin.config import ServeConfig
    from plugin.metrics import ServerMetrics

MAX_PENDING_TRACES = 20_000  # completed traces waiting to be scored (~2 kB each)
PENDING_WAIT_S = 60.0         # how long the pipeline waits for room before a trace goes unscored (counted)

log = logging.getLogger("whyslow.detector")


class Subscription:
    """A bounded queue of explained outliers for one watcher; the oldest are dropped when it lags."""

    def __init__(self, hub: OutlierHub, maxsize: int):
        self.hub = hub
        self.queue: queue.Queue[ExplanationPayload | None] = queue.Queue(maxsize)
        self.dropped = 0

    def put(self, payload: ExplanationPayload | None) -> None:
        while True:
            try:
                self.queue.put_nowait(payload)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def get(self, timeout: float) -> ExplanationPayload | None:
        """Next payload; None on timeout or when the hub closes."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.hub.unsubscribe(self)


class OutlierHub:
    """Fan-out of explained outliers to live watchers."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self.closed = threading.Event()

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, maxsize)
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def publish(self, payload: ExplanationPayload) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.put(payload)

    def close(self) -> None:
        self.closed.set()
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.put(None)


@dataclass(frozen=True)
class BacklogJob:
    """Score the traces of `entry` that arrived before its first model (queued on the scoring thread)."""

    entry: str


class Detector:
    """Scores completed traces and explains outliers automatically (two background threads)."""

    def __init__(
        self,
        models: ModelManager,
        explainer: Explainer,
        traces: TraceStore,
        results: ResultsStore,
        config: ServeConfig,
        metrics: ServerMetrics,
        hub: OutlierHub,
        on_outlier: list[Callable[[ExplanationPayload], object]] | None = None,
    ):
        self.models = models
        self.explainer = explainer
        self.traces = traces
        self.results = results
        self.config = config
        self.metrics = metrics
        self.hub = hub
        self.on_outlier = list(on_outlier or [])
        # bounded: when scoring falls behind, the pipeline's worker waits in on_trace, its ingest queue fills and
        # the receivers answer with retryable refusals (end-to-end backpressure instead of unbounded memory)
        self._scoring = BackgroundWorker[CompletedTrace | BacklogJob](
            "whyslow-score", self._score_items, max_queue=MAX_PENDING_TRACES, max_batch=512, logger=log)
        self._unscored: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=max(1, int(config.window))))
        self._unscored_lock = threading.Lock()
        models.first_fit_listeners.append(self._on_first_fit)
        self._explaining = BackgroundWorker[tuple[str, float]](
            "whyslow-explain", self._explain_items, max_queue=config.explain_queue, logger=log)
        self.counters = {"traces": 0, "scored": 0, "outliers": 0, "explained": 0, "explain_errors": 0,
                         "explain_dropped": 0, "unscored_learning": 0, "score_errors": 0, "backlog_scored": 0,
                         "unscored_overflow": 0}

    @property
    def pending(self) -> int:
        """Traces (and learning backlogs) queued for scoring plus outliers queued for explanation."""
        return self._scoring.pending + self._explaining.pending  # scoring queues explanations before it is done

    # --- listener (collector thread) -------------------------------------------------------------
    def on_trace(self, trace: CompletedTrace) -> None:
        """Pipeline listener: enqueue only."""
        deadline = time.monotonic() + PENDING_WAIT_S
        while not self._scoring.submit(trace):  # full: wait for room (backpressure), bounded
            if self._scoring.stopping or time.monotonic() >= deadline:
                self.counters["unscored_overflow"] += 1  # the scoring thread is stuck: stored, not scored
                return
            time.sleep(0.005)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._seed_backlog()
        self._scoring.start()
        self._explaining.start()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every enqueued trace is scored and every queued outlier explained."""
        deadline = time.monotonic() + timeout
        while True:  # scoring drained first: it is what queues explanations
            if not self._scoring.drain(max(0.0, deadline - time.monotonic())):
                return False
            if not self._explaining.drain(max(0.0, deadline - time.monotonic())):
                return False
            if self.pending == 0:
                return True

    def stop(self, timeout: float = 30.0) -> None:
        """Score and explain what is queued (bounded by ``timeout``), then stop both workers."""
        self.drain(timeout)
        self._scoring.stop(5.0)
        self._explaining.stop(5.0)

    # --- scoring ---------------------------------------------------------------------------------
    def _score_items(self, batch: list[CompletedTrace | BacklogJob]) -> None:
        """The scoring worker's step: a batch of traces (one engine call per entry point), then backlogs."""
        traces = [b for b in batch if not isinstance(b, BacklogJob)]
        if traces:
            self.score_batch(traces)
        for job in batch:
            if isinstance(job, BacklogJob):
                self.score_backlog(job.entry)

    def score_batch(self, batch: list[CompletedTrace]) -> None:
        """Score a batch (grouped per entry point, one vectorised engine call per group)."""
        groups: dict[str, list[CompletedTrace]] = defaultdict(list)
        for trace in batch:
            entry = str(trace.entry)
            groups[entry].append(trace)
        for entry, traces in groups.items():
            fitted = self.models.get(entry)
            if fitted is None:  # remembered before `observe` can wake the first fit (see score_backlog)
                with self._unscored_lock:
                    self._unscored[entry].extend(str(t.trace_id) for t in traces)
            self.models.observe(entry, len(traces))
            self.counters["traces"] += len(traces)
            self.metrics.traces.labels(entry).inc(len(traces))
            if fitted is None:
                self.counters["unscored_learning"] += len(traces)
                continue
            rows = [t.row for t in traces]
            self.models.nodes_seen(entry, set().union(*rows))
            scores = self._scores(entry, fitted, pd.DataFrame(rows))
            if scores is None:
                continue
            self._count_scored(len(traces))
            self._flag(entry, [str(t.trace_id) for t in traces], scores)

    def _scores(self, entry: str, fitted: FittedModel, rows: pd.DataFrame) -> np.ndarray | None:
        """IT scores of the entry latency of `rows` (one vectorised call); None (counted) on failure."""
        frame = feature_matrix(rows, fitted.columns)
        try:
            scores = rca_engine.outlier_scores(fitted.model, frame, base=SCORE_BASE)[entry].to_numpy(dtype=float)
        except Exception as exc:  # noqa: BLE001 - one entry point's failure must not stop the others
            self.counters["score_errors"] += len(frame)
            log.warning("scoring %d traces of %s failed: %s", len(frame), entry, exc)
            return None
        return scores

    def _count_scored(self, n: int) -> None:
        self.counters["scored"] += n
        self.metrics.scored.inc(n)

    def _flag(self, entry: str, trace_ids: list[str], scores: np.ndarray) -> None:
        """Mark the traces at or above the threshold as outliers and queue their explanations."""
        for trace_id, score in zip(trace_ids, scores, strict=True):
            if score >= self.config.threshold:
                self.counters["outliers"] += 1
                self.metrics.outliers.labels(entry).inc()
                try:
                    self.results.mark_outlier(trace_id, float(score))
                except Exception as exc:  # noqa: BLE001 - the explanation still runs (and marks it again)
                    log.warning("cannot mark %s as outlier: %s", trace_id, exc)
                if not self._explaining.submit((trace_id, float(score))):
                    self.counters["explain_dropped"] += 1
                    self.metrics.explain_dropped.inc()

    # --- the learning backlog --------------------------------------------------------------------
    def _seed_backlog(self) -> None:
        """Remember the stored traces of entry points without a model (a restart while still learning)."""
        for entry in self.models.entries():
            if self.models.get(entry) is not None:
                continue
            try:
                ids = self.traces.features(entry, limit=self.config.window).index
            except Exception as exc:  # noqa: BLE001 - one entry point's backlog must not stop the others
                log.warning("cannot read the learning backlog of %s: %s", entry, exc)
                continue
            with self._unscored_lock:
                known = set(self._unscored[entry])
                self._unscored[entry].extend(str(t) for t in ids if str(t) not in known)

    def _on_first_fit(self, entry: str, fitted: FittedModel) -> None:
        """ModelManager listener: queue the entry point's learning backlog for scoring."""
        with self._unscored_lock:
            if not self._unscored.get(entry):
                return
        self._scoring.submit(BacklogJob(entry))

    def score_backlog(self, entry: str) -> int:
        """Score the traces of `entry` that arrived before its first model; returns how many were scored.

        The first model was fitted on these very traces, so those scoring at or above the threshold are left
        out and the model is refitted once without them (when enough traces remain) before the final scores
        decide what is marked and explained."""
        with self._unscored_lock:
            ids = list(self._unscored.pop(entry, ()))
        fitted = self.models.get(entry)
        if not ids or fitted is None:
            return 0
        stored = self.traces.features(entry, limit=self.config.window)
        frame = stored.loc[stored.index.isin(set(ids))]
        if frame.empty:
            return 0
        trace_ids = [str(t) for t in frame.index]
        scores = self._scores(entry, fitted, frame)
        if scores is None:
            return 0
        flagged = {t for t, s, far in zip(trace_ids, scores, self._far(frame[entry] if entry in frame else frame["__duration_ms"]), strict=True)
                   if s >= self.config.threshold or far}
        if flagged:
            try:
                # the traces left out still count towards min_traces (at most half of it is waived)
                min_rows = max(self.config.min_traces - len(flagged), (self.config.min_traces + 1) // 2)
                refitted = self.models.fit(entry, exclude=flagged, min_rows=min_rows)
            except Exception as exc:  # noqa: BLE001 - keep the first model and its scores
                log.info("no refit of %s without its %d learning outliers: %s", entry, len(flagged), exc)
            else:
                rescored = self._scores(entry, refitted, frame)
                scores = scores if rescored is None else rescored
        self._count_scored(len(frame))
        self.counters["backlog_scored"] += len(frame)
        log.info("scored %d traces of %s that arrived while it was learning", len(frame), entry)
        self._flag(entry, trace_ids, scores)
        return len(frame)

    def _far(self, latency: pd.Series) -> np.ndarray:
        """Entry latencies more than sqrt(2 * threshold) robust standard deviations (1.4826 MAD) above the
        median: as rare as the threshold under a normal tail, so candidates to leave out of the refit."""
        x = latency.to_numpy(dtype=float)
        median = float(np.median(x))
        spread = 1.4826 * float(np.median(np.abs(x - median)))
        if spread <= 0:
            return np.zeros(len(x), dtype=bool)
        return (x - median) / spread > np.sqrt(2.0 * max(self.config.threshold, 0.0))

    # --- explaining ------------------------------------------------------------------------------
    def _explain_items(self, batch: list[tuple[str, float]]) -> None:
        """The explanation worker's step: explain, persist and publish each queued outlier."""
        for trace_id, _score in batch:
            try:
                payload = self.explainer.explain(trace_id, intervals=self.config.intervals, trigger="auto")
                self.counters["explained"] += 1
                top = payload["contributions"][0] if payload["contributions"] else None
                log.info("slow trace %s on %s: %.0f ms, IT score %.1f; top cause %s (%.0f%%)", trace_id,
                         payload["entry"], payload["target_latency_ms"], payload["outlier_score"],
                         top["node"] if top else "-", 100 * top["share"] if top else 0)
                self.publish(payload)
            except Exception as exc:  # noqa: BLE001 - one failed explanation is counted, the others go on
                self.counters["explain_errors"] += 1
                self.metrics.explain_errors.inc()
                log.warning("explaining %s failed: %s", trace_id, exc)

    def publish(self, payload: ExplanationPayload) -> None:
        self.hub.publish(payload)
        for callback in self.on_outlier:
            try:
                callback(payload)
            except Exception as exc:  # noqa: BLE001 - a failing subscriber must not stop the others
                log.warning("outlier callback failed: %s", exc)
