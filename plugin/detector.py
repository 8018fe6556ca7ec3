"""Detector: score every completed trace's entry latency, explain the outliers on a background worker.

`Detector.on_batch` is the collector Pipeline's batch listener: it only cuts each stored batch into one numpy
latency matrix per entry point (no per-trace Python objects) and enqueues them (`on_trace` takes single
`CompletedTrace`s the same way). A scoring worker (`BackgroundWorker`) drains the queue and scores each entry
point's matrix with one vectorised engine call; traces above the threshold go to the bounded queue of an explanation worker, so a slow
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
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

import rca_engine
from collector_processor import CompletedTrace, TraceStore
from collector_processor.records import ERR, LAT, AnalysedBatch
from collector_processor.worker import BackgroundWorker
from plugin.explain import Explainer
from plugin.models import SCORE_BASE, FittedModel, ModelManager, feature_matrix
from plugin.payloads import HubPayload
from plugin.results_store import ResultsStore

if TYPE_CHECKING:
    from plugin.config import ServeConfig
    from plugin.metrics import ServerMetrics

MAX_PENDING_TRACES = 20_000  # completed traces waiting to be scored
CHUNK_TRACES = 2_048         # traces per queued scoring item at most
PENDING_WAIT_S = 60.0         # how long the pipeline waits for room before a trace goes unscored (counted)

log = logging.getLogger("whyslow.detector")


class Subscription:
    """A bounded queue of explained outliers for one watcher; the oldest are dropped when it lags."""

    def __init__(self, hub: OutlierHub, maxsize: int):
        self.hub = hub
        self.queue: queue.Queue[HubPayload | None] = queue.Queue(maxsize)
        self.dropped = 0

    def put(self, payload: HubPayload | None) -> None:
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

    def get(self, timeout: float) -> HubPayload | None:
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

    def publish(self, payload: HubPayload) -> None:
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
class ScoreChunk:
    """Completed traces of one entry point waiting to be scored: their node latencies as one matrix."""

    entry: str
    trace_ids: list[str]
    nodes: list[str]          # columns of ``latency``: the nodes present in at least one of the traces
    latency: np.ndarray       # (traces, nodes) ms, 0 where a trace did not call the node
    failed: np.ndarray        # bool per trace: the entry point's span failed (the request's outcome)

    def __len__(self) -> int:
        return len(self.trace_ids)

    @staticmethod
    def from_traces(traces: list[CompletedTrace]) -> list[ScoreChunk]:
        """One chunk per entry point of listener records (their row dicts)."""
        groups: dict[str, list[CompletedTrace]] = defaultdict(list)
        for trace in traces:
            groups[str(trace.entry)].append(trace)
        out = []
        for entry, group in groups.items():
            frame = pd.DataFrame([t.row for t in group], dtype=float).fillna(0.0)
            out.append(ScoreChunk(entry, [str(t.trace_id) for t in group], [str(c) for c in frame.columns],
                                  frame.to_numpy(dtype=float), np.array([t.failed for t in group], dtype=bool)))
        return out

    @staticmethod
    def from_batch(batch: AnalysedBatch, exclude: Collection[str] = (),
                   max_traces: int = CHUNK_TRACES) -> list[ScoreChunk]:
        """Chunks (per entry point, at most ``max_traces`` traces each) of a stored batch, built with numpy
        from its long-form feature rows; traces whose id is in ``exclude`` are left out."""
        n = len(batch)
        if not n:
            return []
        codes_of: dict[str, int] = {}
        codes = np.array([codes_of.setdefault(e, len(codes_of)) for e in batch.entries], dtype=np.int64)
        if exclude:
            codes[np.array([t in exclude for t in batch.trace_ids], dtype=bool)] = -1
        f_trace, f_node = np.asarray(batch.f_trace, dtype=np.int64), np.asarray(batch.f_node_idx, dtype=np.int64)
        row_code = codes[f_trace]
        node_pos = {name: i for i, name in enumerate(batch.nodes)}
        lut = np.full(len(batch.nodes), -1, dtype=np.int64)
        out = []
        for entry, code in codes_of.items():
            traces = np.flatnonzero(codes == code)
            if not len(traces):
                continue
            rows = np.flatnonzero(row_code == code)
            r_trace, r_node = f_trace[rows], f_node[rows]
            cols = np.unique(r_node)
            lut[cols] = np.arange(len(cols))
            at = np.empty(n, dtype=np.int64)
            at[traces] = np.arange(len(traces))
            latency = np.zeros((len(traces), len(cols)))
            latency[at[r_trace], lut[r_node]] = batch.values[rows, LAT]
            failed = np.zeros(len(traces), dtype=bool)
            entry_node = node_pos.get(entry)
            if entry_node is not None:
                own = r_node == entry_node
                failed[at[r_trace[own]]] = batch.values[rows[own], ERR] > 0
            nodes = [batch.nodes[i] for i in cols.tolist()]
            ids = [batch.trace_ids[i] for i in traces.tolist()]
            for lo in range(0, len(ids), max_traces):
                hi = lo + max_traces
                out.append(ScoreChunk(entry, ids[lo:hi], nodes, latency[lo:hi], failed[lo:hi]))
        return out


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
        on_outlier: list[Callable[[HubPayload], object]] | None = None,
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
        self._scoring = BackgroundWorker[ScoreChunk | BacklogJob](
            "whyslow-score", self._score_items, max_queue=MAX_PENDING_TRACES, max_batch=64,
            weight=lambda item: len(item) if isinstance(item, ScoreChunk) else 1, logger=log)
        self._unscored: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=max(1, int(config.window))))
        self._unscored_lock = threading.Lock()
        models.first_fit_listeners.append(self._on_first_fit)
        self._explaining = BackgroundWorker[tuple[str, float, str]](
            "whyslow-explain", self._explain_items, max_queue=config.explain_queue, logger=log)
        self.counters = {"traces": 0, "scored": 0, "outliers": 0, "explained": 0, "explain_errors": 0,
                         "explain_dropped": 0, "unscored_learning": 0, "score_errors": 0, "backlog_scored": 0,
                         "unscored_overflow": 0, "failed": 0, "failed_unscored": 0, "error_outliers": 0}

    @property
    def pending(self) -> int:
        """Traces (and learning backlogs) queued for scoring plus outliers queued for explanation."""
        return self._scoring.pending + self._explaining.pending  # scoring queues explanations before it is done

    # --- listener (collector thread) -------------------------------------------------------------
    def on_batch(self, batch: AnalysedBatch, exclude: Collection[str] = ()) -> None:
        """Pipeline batch listener: enqueue the batch's traces (but those in ``exclude``) for scoring."""
        for chunk in ScoreChunk.from_batch(batch, exclude):
            self._enqueue(chunk)

    def on_trace(self, trace: CompletedTrace) -> None:
        """Pipeline listener for one trace at a time: enqueue only."""
        for chunk in ScoreChunk.from_traces([trace]):
            self._enqueue(chunk)

    def _enqueue(self, chunk: ScoreChunk) -> None:
        deadline = time.monotonic() + PENDING_WAIT_S
        while not self._scoring.submit(chunk):  # full: wait for room (backpressure), bounded
            if self._scoring.stopping or time.monotonic() >= deadline:
                self.counters["unscored_overflow"] += len(chunk)  # the scoring thread is stuck: stored, not scored
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
    def _score_items(self, batch: list[ScoreChunk | BacklogJob]) -> None:
        """The scoring worker's step: chunks of traces (one engine call per entry point), then backlogs."""
        chunks = [b for b in batch if isinstance(b, ScoreChunk)]
        if chunks:
            self.score_chunks(chunks)
        for job in batch:
            if isinstance(job, BacklogJob):
                self.score_backlog(job.entry)

    def score_batch(self, batch: list[CompletedTrace]) -> None:
        """Score listener records now (grouped per entry point, one vectorised engine call per group)."""
        self.score_chunks(ScoreChunk.from_traces(batch))

    def score_chunks(self, chunks: list[ScoreChunk]) -> None:
        """Score chunks now; chunks of the same entry point are stacked into one engine call."""
        groups: dict[str, list[ScoreChunk]] = defaultdict(list)
        for chunk in chunks:
            groups[chunk.entry].append(chunk)
        for entry, group in groups.items():
            trace_ids = [t for c in group for t in c.trace_ids]
            n = len(trace_ids)
            fitted = self.models.get(entry)
            if fitted is None:  # remembered before `observe` can wake the first fit (see score_backlog)
                with self._unscored_lock:
                    self._unscored[entry].extend(trace_ids)
            self.models.observe(entry, n)
            self.counters["traces"] += n
            self.metrics.traces.labels(entry).inc(n)
            if fitted is None:
                self.counters["unscored_learning"] += n
                continue
            self.models.nodes_seen(entry, {node for c in group for node in c.nodes})
            frame = pd.concat([pd.DataFrame(c.latency, columns=c.nodes) for c in group], ignore_index=True) \
                if len(group) > 1 else pd.DataFrame(group[0].latency, columns=group[0].nodes)
            scores = self._scores(entry, fitted, frame)
            if scores is None:
                continue
            self._count_scored(n)
            self._flag(entry, trace_ids, scores)
            failed = np.concatenate([c.failed for c in group])
            if failed.any():
                self._flag_failures(entry, fitted, [trace_ids[i] for i in np.flatnonzero(failed).tolist()])

    def _flag_failures(self, entry: str, fitted: FittedModel, trace_ids: list[str]) -> None:
        """Failed requests: the IT score of the entry's failure, -log P(entry fails) under the failure model
        (the same for every failure of the entry point), against the same threshold as latency."""
        self.counters["failed"] += len(trace_ids)
        if fitted.failures is None:
            self.counters["failed_unscored"] += len(trace_ids)
            return
        try:
            p = fitted.failures.failure_probability(entry)
        except Exception as exc:  # noqa: BLE001 - one entry point's failure must not stop the others
            self.counters["score_errors"] += len(trace_ids)
            log.warning("scoring %d failed traces of %s failed: %s", len(trace_ids), entry, exc)
            return
        score = -float(np.log(max(p, 1e-300)))
        self._flag(entry, trace_ids, np.full(len(trace_ids), score), kind="error")

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

    def _flag(self, entry: str, trace_ids: list[str], scores: np.ndarray, kind: str = "latency") -> None:
        """Mark the traces at or above the threshold as outliers of `kind` and queue their explanations."""
        scores = np.asarray(scores, dtype=float)
        if len(scores) != len(trace_ids):
            raise ValueError(f"{len(scores)} scores for {len(trace_ids)} traces")
        for k in np.flatnonzero(scores >= self.config.threshold).tolist():
            trace_id, score = trace_ids[k], float(scores[k])
            self.counters["outliers"] += 1
            if kind == "error":
                self.counters["error_outliers"] += 1
            self.metrics.outliers.labels(entry).inc()
            try:
                self.results.mark_outlier(trace_id, score, kind)
            except Exception as exc:  # noqa: BLE001 - the explanation still runs (and marks it again)
                log.warning("cannot mark %s as outlier: %s", trace_id, exc)
            if not self._explaining.submit((trace_id, score, kind)):
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
        self._flag_backlog_failures(entry, set(trace_ids))
        return len(frame)

    def _flag_backlog_failures(self, entry: str, ids: set[str]) -> None:
        """The learning backlog's failed requests, scored with the entry point's (refitted) failure model."""
        fitted = self.models.get(entry)
        if fitted is None:
            return
        try:
            errors = self.traces.features(entry, limit=self.config.window, value="error")
        except Exception as exc:  # noqa: BLE001 - the latency scores of the backlog stand
            log.warning("cannot read the errors of the learning backlog of %s: %s", entry, exc)
            return
        if entry in errors.columns:
            failed = [str(t) for t, n in errors[entry].items() if n > 0 and str(t) in ids]
            if failed:
                self._flag_failures(entry, fitted, failed)

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
    def _explain_items(self, batch: list[tuple[str, float, str]]) -> None:
        """The explanation worker's step: explain, persist and publish each queued outlier."""
        for trace_id, _score, kind in batch:
            try:
                payload = self.explainer.explain(trace_id, intervals=self.config.intervals if kind == "latency" else 0,
                                                 trigger="auto", kind=kind)
                self.counters["explained"] += 1
                top = payload["contributions"][0] if payload["contributions"] else None
                log.info("%s trace %s on %s: %.0f ms, IT score %.1f; top cause %s (%.0f%%)",
                         "failed" if kind == "error" else "slow", trace_id,
                         payload["entry"], payload["target_latency_ms"], payload["outlier_score"],
                         top["node"] if top else "-", 100 * top["share"] if top else 0)
                self.publish(payload)
            except Exception as exc:  # noqa: BLE001 - one failed explanation is counted, the others go on
                self.counters["explain_errors"] += 1
                self.metrics.explain_errors.inc()
                log.warning("explaining %s failed: %s", trace_id, exc)

    def publish(self, payload: HubPayload) -> None:
        self.hub.publish(payload)
        for callback in self.on_outlier:
            try:
                callback(payload)
            except Exception as exc:  # noqa: BLE001 - a failing subscriber must not stop the others
                log.warning("outlier callback failed: %s", exc)
