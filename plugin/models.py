"""Model lifecycle per entry point: learn what normal looks like, refit in the background, persist.

One `ModelManager` owns every entry point's `FittedModel`. Fitting happens on its own thread on a
rolling window of recent normal traces (the trace store's `features(entry, exclude=<the results store's
outlier ids>, limit=window)`); models persist in the results store;
queries keep using the previous model until the new one is ready (the swap is one reference assignment).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import rca_engine
from collector_processor import NodeInfo, TraceStore
from collector_processor.worker import BackgroundWorker
from plugin import model_blobs
from plugin.causal_graph import causal_graph
from plugin.results_store import ResultsStore

if TYPE_CHECKING:
    from plugin.config import ServeConfig
    from plugin.metrics import ServerMetrics

log = logging.getLogger("whyslow.models")

META_PREFIX = "__"
# Latency outliers are one-sided: an unusually fast trace (a short-circuit, a cache hit) is nothing to explain,
# and a coalition that makes the entry unusually fast must not count as reproducing a slow one.
SCORE_BASE = "upper"
# Exponential tails beyond the 90th percentile of each node's training noise: with a few hundred traces the purely
# empirical model never simulates an own time beyond the largest one seen, and rare-but-normal requests scored
# above the 1-in-10,000 threshold ten times too often (rca_engine.fit's tail_fraction).
TAIL_FRACTION = 0.1
EARLY_REFIT_S = 60.0  # early refits (young model, grown graph) at most this often


@dataclass
class NodeMeta:
    """What the API shows about a node of the causal graph."""

    service: str
    operation: str
    kind: str


@dataclass
class FittedModel:
    """An engine model plus the graph facts the APIs need; persisted in the results store as an authenticated
    blob (plugin/model_blobs.py)."""

    entry: str
    model: rca_engine.CausalModel
    nodes: dict[str, NodeMeta]
    causal_edges: list[tuple[str, str]]
    mechanisms: dict[str, str]
    columns: list[str]
    rows: int
    fitted_at: float
    fit_seconds: float
    medians: dict[str, float] = field(default_factory=dict)


@dataclass
class ModelStatus:
    """Status of one entry point's model, shown by /api/v1/status."""

    entry: str
    state: str  # "learning" | "ready"
    traces_seen: int
    min_traces: int
    fitted_at: float | None
    rows: int
    fit_seconds: float | None
    fits: int
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Entry:
    seen: int = 0
    seen_at_fit: int = 0
    fits: int = 0
    last_error: str | None = None
    last_attempt: float = 0.0
    model: FittedModel | None = None
    new_nodes: set[str] = field(default_factory=set)  # seen in traces, unknown to the model
    ignored: set[str] = field(default_factory=set)  # still unknown after a refit: not in the graph


def node_meta(info: NodeInfo) -> NodeMeta:
    """NodeMeta from the collector's NodeInfo."""
    return NodeMeta(service=str(info.service), operation=str(info.operation), kind=str(info.kind))


def feature_matrix(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The engine's input: exactly `columns` as float64, absent nodes 0 ms (as the collector writes them)."""
    data = df.reindex(columns=columns, fill_value=0.0).astype("float64")
    return data.fillna(0.0)


class ModelManager:
    """Fits, refits, persists and serves one model per entry point (thread-safe)."""

    def __init__(self, traces: TraceStore, results: ResultsStore, config: ServeConfig,
                 metrics: ServerMetrics | None = None):
        self.traces = traces
        self.results = results
        self.config = config
        self.metrics = metrics
        self._lock = threading.Lock()
        self._fit_lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._worker = BackgroundWorker[None]("whyslow-models", periodic=self._refit_due,
                                              interval_s=min(config.refit_interval_s, 5.0), logger=log)
        self._last_retention = 0.0
        self._blob_key = model_blobs.model_key(getattr(config, "model_key_file", None),
                                               getattr(config, "auth_token", None))
        # called with (entry, model) on the fitting thread right after an entry point's first model is
        # swapped in (the detector scores the traces that arrived while it was learning)
        self.first_fit_listeners: list[Callable[[str, FittedModel], None]] = []

    # --- state -----------------------------------------------------------------------------------
    def load(self) -> int:
        """Load persisted models and count stored traces per entry point; returns models loaded."""
        loaded = 0
        for entry in self.traces.entry_points():
            state = self._entry(entry)
            try:
                stored = len(self.traces.features(entry, limit=self.config.window))
            except Exception as exc:  # noqa: BLE001 - one bad entry must not stop the others
                log.warning("cannot count traces of %s: %s", entry, exc)
                stored = 0
            state.seen = max(state.seen, stored)
            try:
                record = self.results.load_model(entry)
            except Exception as exc:  # noqa: BLE001 - an unreadable model is refitted
                log.warning("cannot load the model of %s: %s", entry, exc)
                record = None
            blob = record[0] if isinstance(record, tuple) else record
            if blob:
                try:
                    model = model_blobs.load(blob, self._blob_key)
                except Exception as exc:  # noqa: BLE001 - tampered, foreign, old or corrupt: refit
                    log.warning("ignoring the stored model of %s (%s); it will be refitted", entry, exc)
                    continue
                if not isinstance(model, FittedModel):
                    log.warning("ignoring the stored model of %s (not a model); it will be refitted", entry)
                    continue
                state.model = model
                state.seen_at_fit = state.seen
                loaded += 1
        self._update_gauge()
        return loaded

    def _entry(self, entry: str) -> _Entry:
        with self._lock:
            state = self._entries.get(entry)
            if state is None:
                state = self._entries[entry] = _Entry()
            return state

    def observe(self, entry: str, count: int = 1) -> None:
        """Count completed traces of an entry point; wakes the fitter when a first model becomes possible."""
        state = self._entry(entry)
        with self._lock:
            state.seen += count
            first = state.model is None and state.seen >= self.config.min_traces
        if first:
            self._worker.wake()

    def nodes_seen(self, entry: str, nodes: set[str]) -> None:
        """Report the nodes of recent traces; nodes the model does not know schedule a refit."""
        state = self._entry(entry)
        with self._lock:
            if state.model is None:
                return
            unknown = nodes - set(state.model.columns) - state.ignored - state.new_nodes
            if unknown:
                log.info("new nodes in %s: %s; refitting soon", entry, ", ".join(sorted(unknown)[:5]))
                state.new_nodes |= unknown

    def get(self, entry: str) -> FittedModel | None:
        with self._lock:
            state = self._entries.get(entry)
            return state.model if state else None

    def entries(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def status(self) -> list[ModelStatus]:
        with self._lock:
            items = sorted(self._entries.items())
            return [
                ModelStatus(
                    entry=entry,
                    state="ready" if s.model is not None else "learning",
                    traces_seen=s.seen,
                    min_traces=self.config.min_traces,
                    fitted_at=s.model.fitted_at if s.model else None,
                    rows=s.model.rows if s.model else 0,
                    fit_seconds=s.model.fit_seconds if s.model else None,
                    fits=s.fits,
                    last_error=s.last_error,
                )
                for entry, s in items
            ]

    def _update_gauge(self) -> None:
        if self.metrics is not None:
            with self._lock:
                ready = sum(1 for s in self._entries.values() if s.model is not None)
            self.metrics.models.set(ready)

    # --- fitting ---------------------------------------------------------------------------------
    def due(self, now: float | None = None) -> list[str]:
        """Entry points whose model should be (re)fitted now."""
        now = time.time() if now is None else now
        out = []
        with self._lock:
            for entry, s in self._entries.items():
                if s.seen < self.config.min_traces:
                    continue
                if s.last_error and now - s.last_attempt < min(self.config.refit_interval_s, 30.0):
                    continue  # back off after a failed fit
                if s.model is None:
                    out.append(entry)
                    continue
                new = s.seen - s.seen_at_fit
                age = now - s.model.fitted_at
                stale = age >= self.config.refit_interval_s and new > 0
                # early refits: while the model is young (the data doubled) or when the call graph grew
                early = self.config.early_refit and age >= min(self.config.refit_interval_s, EARLY_REFIT_S)
                young = s.model.rows < self.config.window and s.seen >= 2 * max(s.model.rows, 1)
                if stale or (early and (young or bool(s.new_nodes))):
                    out.append(entry)
        return out

    def fit(self, entry: str, exclude: set[str] | frozenset[str] = frozenset(),
            min_rows: int | None = None) -> FittedModel:
        """Fit the entry point's model now (synchronously) and swap it in; raises on failure.

        `exclude`: trace ids left out of the training rows besides the stored outliers (the learning
        backlog's own outliers, before they are marked); `min_rows` (default `min_traces`): fewer training
        rows than this is an error."""
        state = self._entry(entry)
        with self._fit_lock:
            with self._lock:
                seen = state.seen
                pending = set(state.new_nodes)
                state.last_attempt = time.time()
            try:
                fitted = self._fit(entry, exclude, self.config.min_traces if min_rows is None else min_rows)
            except Exception as exc:
                with self._lock:
                    state.last_error = str(exc) or type(exc).__name__
                if self.metrics is not None:
                    self.metrics.fits.labels("error").inc()
                raise
            try:
                meta = {"rows": fitted.rows, "fitted_at": fitted.fitted_at, "fit_seconds": fitted.fit_seconds}
                self.results.save_model(entry, model_blobs.dump(fitted, self._blob_key), meta)
            except Exception as exc:  # noqa: BLE001 - serving the new model matters more than persisting it
                log.warning("could not persist the model of %s: %s", entry, exc)
            with self._lock:
                first = state.model is None
                state.model = fitted
                columns = set(fitted.columns)
                state.ignored |= pending - columns  # asked for a refit, still not in the graph: not again
                state.new_nodes = state.new_nodes - pending - columns
                state.seen_at_fit = seen
                state.fits += 1
                state.last_error = None
            if self.metrics is not None:
                self.metrics.fits.labels("ok").inc()
                self.metrics.fit_seconds.observe(fitted.fit_seconds)
            self._update_gauge()
            log.info("model %s fitted on %d traces in %.2fs", entry, fitted.rows, fitted.fit_seconds)
            if first:
                for listener in self.first_fit_listeners:
                    try:
                        listener(entry, fitted)
                    except Exception as exc:  # noqa: BLE001 - a listener must not undo the fit
                        log.warning("first-fit listener failed for %s: %s", entry, exc)
            return fitted

    def _fit(self, entry: str, exclude: set[str] | frozenset[str], min_rows: int) -> FittedModel:
        t0 = time.perf_counter()
        graph = self.traces.graph(entry)
        causal = causal_graph(graph)
        # recent normal traces: detected outliers and incomplete traces (missing spans read as 0 ms) excluded
        frame = self.traces.features(entry, exclude=self.results.outlier_ids(entry), limit=self.config.window,
                                     complete_only=True)
        if exclude:
            frame = frame.drop(index=[t for t in exclude if t in frame.index])
        columns = [str(n) for n in causal.nodes]
        if entry not in columns:
            raise ValueError(f"entry point {entry!r} is not a node of its own call graph")
        if len(frame) < min_rows:
            raise ValueError(f"only {len(frame)} complete normal traces stored, need {min_rows}")
        data = feature_matrix(frame, columns)
        mech_choice = self.config.mechanisms
        if mech_choice == "structural":
            structure = dict(graph.mechanisms())
            mechanisms: str | dict[str, str] = {n: structure[n] for n in columns if n in structure}
        else:
            mechanisms = mech_choice
        spec: str | dict[Hashable, str] = mechanisms if isinstance(mechanisms, str) else dict(mechanisms.items())
        model = rca_engine.fit(causal, data, mechanisms=spec, tail_fraction=TAIL_FRACTION)
        nodes = {str(n): node_meta(info) for n, info in graph.nodes.items()}
        return FittedModel(
            entry=entry,
            model=model,
            nodes=nodes,
            causal_edges=[(str(a), str(b)) for a, b in causal.edges],
            mechanisms=mechanisms if isinstance(mechanisms, dict) else {n: mechanisms for n in columns},
            columns=columns,
            rows=len(data),
            fitted_at=time.time(),
            fit_seconds=time.perf_counter() - t0,
            medians={c: float(v) for c, v in zip(columns, np.median(data.to_numpy(), axis=0), strict=True)},
        )

    # --- background thread -----------------------------------------------------------------------
    def start(self) -> None:
        """Refit what is due every few seconds (or as soon as a first model becomes possible)."""
        self._worker.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the background refits (a fit in progress completes, bounded by ``timeout``)."""
        self._worker.stop(timeout, drain=False)

    def _refit_due(self) -> None:
        """The worker's periodic step: fit every entry point that is due, then apply retention."""
        for entry in self.due():
            if self._worker.stopping:
                break
            try:
                self.fit(entry)
            except Exception as exc:  # noqa: BLE001 - keep the previous model, retry later
                log.warning("fitting %s failed: %s", entry, exc)
        self._retention()

    def _retention(self) -> None:
        now = time.time()
        if now - self._last_retention < 600:
            return
        self._last_retention = now
        try:
            self.traces.retention(self.config.retention_max_age_s, self.config.retention_max_rows)
        except Exception as exc:  # noqa: BLE001 - retried at the next retention time
            log.warning("retention failed: %s", exc)
