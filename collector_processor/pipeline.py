"""The pipeline: accepted spans -> assembled traces -> call graph + features -> store -> listeners.

Receivers call :meth:`Pipeline.accept` from their own threads. Accepting decodes the request, spools it
durably (the store's ``spool`` table) and queues its spans; the client is acknowledged after that, so an
acknowledged span survives a crash (it is replayed from the spool on the next start). When more than
``max_queue_spans`` spans wait, :class:`PipelineFull` tells the receiver to answer with a retryable code.
One worker (a :class:`~collector_processor.worker.BackgroundWorker` ticking every ``tick_interval_s``, or
explicit :meth:`tick` calls in tests) assembles, completes, analyses and stores traces, then calls the listeners.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector_processor.assembly import Assembled, TraceAssembler
from collector_processor.batch_analysis import BatchAnalyser
from collector_processor.config import PipelineConfig
from collector_processor.otlp_decode import DecodedBatch, DecodeFailure, SpanDecoder, parse_request
from collector_processor.records import AnalysedBatch, CompletedTrace
from collector_processor.span_types import SpanTypes
from collector_processor.store import TraceStore
from collector_processor.worker import BackgroundWorker

log = logging.getLogger("whyslow.collector")


class PipelineFull(RuntimeError):
    """The ingest queue is full: the client should retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"pipeline is full, retry in {retry_after_s:g} s")
        self.retry_after_s = retry_after_s


_STAT_KEYS = (
    "requests_received", "requests_invalid", "requests_too_large", "requests_refused",
    "spans_received", "spans_accepted", "spans_rejected", "spans_refused", "spans_dropped",
    "spans_duplicate", "spans_replayed", "spans_unknown_service", "spans_orphan", "spans_in_cycles",
    "spans_clock_skew", "spans_reparented", "spans_stored",
    "traces_completed", "traces_incomplete", "traces_evicted", "traces_reopened", "traces_stored",
    "traces_replaced",
    "store_errors", "analysis_errors", "listener_errors",
)


class Pipeline:
    """Thread-safe span pipeline writing to a :class:`TraceStore`; see the module docstring."""

    def __init__(self, store: TraceStore, config: PipelineConfig | None = None) -> None:
        self.store = store
        self.config = config or PipelineConfig()
        self._c: Counter = Counter({k: 0 for k in _STAT_KEYS})
        self._stat_lock = threading.Lock()
        self.types = SpanTypes(self.config.max_span_types)
        self._decoder = SpanDecoder(self.types, self.config.max_name_len)
        self._analyser = BatchAnalyser(self.types, self.config.overlap_fraction, self.config.qualify_catch_all_root,
                                       self.config.reparent_wrappers, self.config.wrapper_slack)
        self._queue: deque[tuple[list[tuple], int | None, float]] = deque()
        self._queued_spans = 0
        self._qlock = threading.Lock()
        self._work_lock = threading.RLock()      # serialises the worker (tick / flush)
        self._assembler = TraceAssembler(self.config, self._c)
        self._spool_refs: dict[int, int] = {}
        self._unwritten: list[tuple[AnalysedBatch, list[int]]] = []
        self._listeners: list[Callable[[CompletedTrace], None]] = []
        self._closed = False
        self._replay_spool()
        self._worker: BackgroundWorker[None] | None = None
        if self.config.background:
            self._worker = BackgroundWorker("whyslow-pipeline", periodic=self.tick,
                                            interval_s=self.config.tick_interval_s, on_error=self._tick_failed,
                                            logger=log).start()

    # ------------------------------------------------------------------ ingest (receiver threads)
    def accept(self, payload: bytes | ExportTraceServiceRequest) -> DecodedBatch:
        """Decode, validate, spool and queue one OTLP request. Returns the decoded batch (its ``rejected`` and
        ``error_message()`` make the partial-success answer). Raises :class:`DecodeFailure` for undecodable
        bytes and :class:`PipelineFull` when the client must retry."""
        if self._closed:
            raise PipelineFull(self.config.retry_after_s)
        with self._stat_lock:
            self._c["requests_received"] += 1
        raw = payload.SerializeToString() if isinstance(payload, ExportTraceServiceRequest) else payload
        try:
            req = parse_request(raw)
        except DecodeFailure:
            with self._stat_lock:
                self._c["requests_invalid"] += 1
            raise
        if self._queued_spans >= self.config.max_queue_spans:  # full: refuse before the costly decoding
            spans = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
            with self._stat_lock:
                self._c["requests_refused"] += 1
                self._c["spans_refused"] += spans
            raise PipelineFull(self.config.retry_after_s)
        batch = self._decoder.decode(req)
        n = len(batch.spans)
        if n:
            with self._qlock:
                full = self._queued_spans > 0 and self._queued_spans + n > self.config.max_queue_spans
                if not full:
                    self._queued_spans += n  # reserve before spooling so concurrent requests see it
            if full:
                with self._stat_lock:
                    self._c["requests_refused"] += 1
                    self._c["spans_refused"] += batch.received
                raise PipelineFull(self.config.retry_after_s)
            spool_id = None
            if self.config.spool:
                try:
                    spool_id = self.store.spool_append(raw)
                except Exception:
                    with self._qlock:
                        self._queued_spans -= n
                    with self._stat_lock:
                        self._c["requests_refused"] += 1
                        self._c["spans_refused"] += batch.received
                        self._c["store_errors"] += 1
                    log.exception("spooling a request failed; asking the client to retry")
                    raise PipelineFull(self.config.retry_after_s) from None
            with self._qlock:
                self._queue.append((batch.spans, spool_id, time.monotonic()))
                urgent = self._queued_spans * 2 > self.config.max_queue_spans
            if urgent and self._worker is not None:  # else the worker drains it every tick_interval_s, in bulk
                self._worker.wake()
        with self._stat_lock:
            c = self._c
            c["spans_received"] += batch.received
            c["spans_accepted"] += n
            c["spans_rejected"] += batch.rejected
            c["spans_unknown_service"] += batch.unknown_service
        return batch

    def count_request_error(self, key: str) -> None:
        """Count a request a receiver answered before decoding (``requests_invalid``, ``requests_too_large``)."""
        with self._stat_lock:
            self._c["requests_received"] += 1
            self._c[key] += 1

    def _replay_spool(self) -> None:
        """Queue the spooled requests a previous process acknowledged but did not finish storing."""
        replayed = 0
        for spool_id, payload in self.store.spool_pending():
            try:
                batch = self._decoder.decode(parse_request(payload))
            except DecodeFailure:
                self.store.write_batch(None, [spool_id])
                continue
            if batch.spans:
                self._queue.append((batch.spans, spool_id, time.monotonic()))
                self._queued_spans += len(batch.spans)
                replayed += len(batch.spans)
            else:
                self.store.write_batch(None, [spool_id])
        self._c["spans_replayed"] += replayed

    # ------------------------------------------------------------------ worker
    def add_listener(self, callback: Callable[[CompletedTrace], None]) -> None:
        """Call ``callback(CompletedTrace)`` for every trace after it is stored (from the worker thread)."""
        self._listeners.append(callback)

    def tick(self, now: float | None = None) -> int:
        """Assemble queued spans and complete the traces due at ``now`` (monotonic seconds); returns the number
        of traces stored. Tests drive time with it; the background thread calls it every ``tick_interval_s``."""
        now = time.monotonic() if now is None else now
        with self._work_lock:
            done = self._drain_queue(now)
            done += self._assembler.due(now)
            return self._finish(done, now)

    def flush(self) -> int:
        """Complete every buffered trace now (shutdown): traces without a root are stored as incomplete."""
        with self._work_lock:
            now = time.monotonic()
            done = self._drain_queue(now)
            done += self._assembler.drain(now)
            return self._finish(done, now)

    def _drain_queue(self, now: float) -> list[Assembled]:
        evicted: list[Assembled] = []
        while True:
            with self._qlock:
                if not self._queue:
                    break
                spans, spool_id, arrived = self._queue.popleft()
                self._queued_spans -= len(spans)
            if spool_id is not None:
                self._spool_refs[spool_id] = 0
            evicted += self._assembler.add(spans, spool_id, min(arrived, now))
            if spool_id is not None:
                # number of traces that hold this spool row
                self._spool_refs[spool_id] += len({sp[0] for sp in spans})
        return evicted

    def _finish(self, done: list[Assembled], now: float) -> int:
        c = self._c
        pending = self._unwritten
        self._unwritten = []
        if done:
            try:
                batch = self._analyser.analyse(done)
            except Exception:  # a bug must not kill the worker; the spool keeps the spans for a restart
                log.exception("analysing %d traces failed", len(done))
                with self._stat_lock:
                    c["analysis_errors"] += 1
                    c["spans_dropped"] += sum(len(a.spans) for a in done)
                return 0
            release = []
            refs = self._spool_refs
            for a in done:
                for sid in a.spool:
                    left = refs.get(sid, 1) - 1
                    if left <= 0:
                        refs.pop(sid, None)
                        release.append(sid)
                    else:
                        refs[sid] = left
            pending.append((batch, release))
            with self._stat_lock:
                c["traces_completed"] += len(batch)
                c["traces_incomplete"] += int((~batch.complete).sum())
                c["spans_orphan"] += batch.orphan_spans
                c["spans_in_cycles"] += batch.cycle_spans
                c["spans_clock_skew"] += batch.skewed_spans
                c["spans_reparented"] += batch.reparented_spans
        stored = 0
        for k, (batch, release) in enumerate(pending):
            try:
                replaced = self.store.write_batch(batch, release)
            except Exception:
                log.exception("storing %d traces failed; will retry", len(batch))
                with self._stat_lock:
                    c["store_errors"] += 1
                rest = pending[k:]
                # bounded: beyond max_buffered_traces waiting traces, the oldest are lost (and counted)
                while len(rest) > 1 and sum(len(b) for b, _ in rest) > self.config.max_buffered_traces:
                    lost, _ = rest.pop(0)
                    with self._stat_lock:
                        c["spans_dropped"] += int(lost.n_spans.sum())
                self._unwritten = rest
                break
            with self._stat_lock:
                c["traces_stored"] += len(batch)
                c["traces_replaced"] += replaced
                c["spans_stored"] += int(batch.n_spans.sum())
            stored += len(batch)
            self._notify(batch)
        return stored

    def _notify(self, batch: AnalysedBatch) -> None:
        if not self._listeners:
            return
        b = batch.bounds()
        for k in range(len(batch)):
            ct = CompletedTrace(batch.trace_ids[k], batch.entries[k], int(batch.start[k]),
                                float(batch.duration_ms[k]), bool(batch.complete[k]), batch.row(k, b),
                                int(batch.n_spans[k]))
            for cb in list(self._listeners):
                try:
                    cb(ct)
                except Exception:
                    log.exception("trace listener %r failed", cb)
                    with self._stat_lock:
                        self._c["listener_errors"] += 1

    def _tick_failed(self, exc: Exception) -> None:
        """A background tick raised (logged by the worker, which waits one interval before the next)."""
        with self._stat_lock:
            self._c["store_errors"] += 1

    # ------------------------------------------------------------------ introspection / shutdown
    def stats(self) -> dict[str, int]:
        """Counters (see README): received/accepted/rejected/refused/dropped spans, traces completed/evicted, ...
        plus the current ``queued_spans``, ``buffered_spans`` and ``buffered_traces``."""
        with self._stat_lock:
            out = dict(self._c)
        out["queued_spans"] = self._queued_spans
        out["buffered_spans"] = self._assembler.buffered_spans
        out["buffered_traces"] = self._assembler.buffered_traces
        out["span_types"] = len(self.types)
        out["span_types_overflow"] = self.types.overflowed
        return out

    def close(self, flush: bool = True) -> None:
        """Stop the worker and (by default) store every buffered trace. The store stays open (caller owns it)."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._worker.stop(timeout=10, drain=False)
        if flush:
            self.flush()
