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
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector_processor.assembly import Assembled, TraceAssembler
from collector_processor.batch_analysis import BatchAnalyser
from collector_processor.config import PipelineConfig
from collector_processor.otlp_decode import (
    FUTURE_REASON,
    DecodedBatch,
    DecodeFailure,
    SpanDecoder,
    parse_request,
    span_count,
)
from collector_processor.records import AnalysedBatch, CompletedTrace
from collector_processor.span_types import SpanTypes
from collector_processor.store import TraceStore
from collector_processor.worker import BackgroundWorker

log = logging.getLogger("whyslow.collector")


_SPAN_BYTES = 360  # memory of one decoded span tuple (tuple, three id bytes, two int times), measured


class PipelineFull(RuntimeError):
    """The ingest queue is full: the client should retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float, reason: str = "") -> None:
        super().__init__(f"{reason or 'pipeline is full'}, retry in {retry_after_s:g} s")
        self.retry_after_s = retry_after_s


_STAT_KEYS = (
    "requests_received", "requests_decoded_compiled", "requests_invalid", "requests_too_large", "requests_refused",
    "requests_unauthenticated",
    "spans_received", "spans_accepted", "spans_rejected", "spans_refused", "spans_dropped",
    "spans_duplicate", "spans_future", "spans_replayed", "spans_unknown_service", "spans_failed",
    "spans_bad_error_fields", "spans_orphan", "spans_in_cycles",
    "spans_clock_skew", "spans_reparented", "spans_stored",
    "traces_completed", "traces_incomplete", "traces_evicted", "traces_reopened", "traces_stored",
    "traces_replaced", "traces_kept_stored", "spans_kept_stored",
    "store_errors", "analysis_errors", "listener_errors",
)


class Pipeline:
    """Thread-safe span pipeline writing to a :class:`TraceStore`; see the module docstring."""

    def __init__(self, store: TraceStore, config: PipelineConfig | None = None) -> None:
        self.store = store
        self.config = config or PipelineConfig()
        self._c: Counter = Counter({k: 0 for k in _STAT_KEYS})
        self._stat_lock = threading.Lock()
        self.types = SpanTypes(self.config.max_span_types, self.config.max_entry_points)
        self._decoder = SpanDecoder(self.types, self.config.max_name_len,
                                    max_future_s=self.config.max_future_s, compiled=self.config.compiled_decoder)
        self._analyser = BatchAnalyser(self.types, self.config.overlap_fraction, self.config.qualify_catch_all_root,
                                       self.config.reparent_wrappers, self.config.wrapper_slack)
        self._queue: deque[tuple[list[tuple], int | None, float]] = deque()
        self._queued_spans = 0
        self._inflight_bytes = 0                 # memory limiter: request bytes in accept() + queued spans
        self._qlock = threading.Lock()
        # decoding slots: tokens in a C-implemented queue (a threading.Semaphore is Python code under the GIL)
        self._decoding: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(max(1, self.config.max_concurrent_decodes)):
            self._decoding.put(None)
        self._work_lock = threading.RLock()      # serialises the worker (tick / flush)
        self._assembler = TraceAssembler(self.config, self._c)
        self._spool_refs: dict[int, int] = {}
        self._replayed_rows: set[int] = set()    # spool rows replayed at start, until released
        self._unwritten: list[tuple[AnalysedBatch | None, list[int]]] = []
        self._processing = 0                     # spans of completed traces being analysed / stored / notified
        self._listeners: list[Callable[[CompletedTrace], None]] = []
        self._batch_listeners: list[Callable[[AnalysedBatch], None]] = []
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
        raw = payload.SerializeToString() if isinstance(payload, ExportTraceServiceRequest) else payload
        size = len(raw)
        with self._qlock:  # memory limiter: the request's bytes count from here until its spans are queued
            over = self._closed or (self._inflight_bytes > 0 and
                                    self._inflight_bytes + size > self.config.max_inflight_bytes)
            if not over:
                self._inflight_bytes += size
        with self._stat_lock:
            self._c["requests_received"] += 1
        if over:
            self.refuse(raw, "memory limit reached" if not self._closed else "shutting down")
        try:
            return self._accept(raw, size)
        finally:
            with self._qlock:
                self._inflight_bytes -= size

    def _accept(self, raw: bytes, size: int) -> DecodedBatch:
        try:
            req = parse_request(raw)
        except DecodeFailure:
            with self._stat_lock:
                self._c["requests_invalid"] += 1
            raise
        if self._queued_spans >= self.config.max_queue_spans:  # full: refuse before the costly decoding
            self._count_refused(span_count(req), "ingest queue is full")
        self._decoding.get()  # a decoding slot; refusals above are answered without waiting for one
        try:
            batch = self._spool_and_queue(raw, req, size)
        finally:
            self._decoding.put(None)
        with self._stat_lock:
            c = self._c
            c["spans_received"] += batch.received
            c["requests_decoded_compiled"] += batch.compiled
            c["spans_accepted"] += len(batch.spans)
            c["spans_rejected"] += batch.rejected
            c["spans_unknown_service"] += batch.unknown_service
            c["spans_failed"] += batch.failed
            c["spans_bad_error_fields"] += batch.bad_error_fields
            if batch.rejected:
                c["spans_future"] += batch.reasons.get(FUTURE_REASON, 0)
        return batch

    def _spool_and_queue(self, raw: bytes, req: Any, size: int) -> DecodedBatch:  # req: a LeanRequest
        """Decode a parsed request, spool it and queue its spans (or raise PipelineFull)."""
        batch = self._decoder.decode(req, raw)
        n = len(batch.spans)
        if n:
            nbytes = n * _SPAN_BYTES
            with self._qlock:
                reason = ""
                if self._queued_spans > 0:
                    if self._queued_spans + n > self.config.max_queue_spans:
                        reason = "ingest queue is full"
                    elif self._inflight_bytes + nbytes > self.config.max_inflight_bytes + size:
                        reason = "memory limit reached"
                if not reason:
                    self._queued_spans += n  # reserve before spooling so concurrent requests see it
                    self._inflight_bytes += nbytes
            if reason:
                self._count_refused(batch.received, reason)
            spool_id = None
            if self.config.spool:
                try:
                    spool_id = self.store.spool_append(raw)
                except Exception:
                    with self._qlock:
                        self._queued_spans -= n
                        self._inflight_bytes -= nbytes
                    with self._stat_lock:
                        self._c["store_errors"] += 1
                    log.exception("spooling a request failed; asking the client to retry")
                    self._count_refused(batch.received)
            with self._qlock:
                self._queue.append((batch.spans, spool_id, time.monotonic()))
                urgent = self._queued_spans * 2 > self.config.max_queue_spans
            if urgent and self._worker is not None:  # else the worker drains it every tick_interval_s, in bulk
                self._worker.wake()
        return batch

    def refuse(self, raw: bytes | None = None, reason: str = "", new_request: bool = False) -> None:
        """Count a request refused with a retryable answer (and its spans, when its bytes are at hand and
        decodable) and raise :class:`PipelineFull`. Receivers call it (``new_request=True``: also count it as
        received) for refusals of their own."""
        if new_request:
            with self._stat_lock:
                self._c["requests_received"] += 1
        spans = 0
        if raw:
            try:
                spans = span_count(parse_request(raw))
            except DecodeFailure:
                pass
        self._count_refused(spans, reason)

    def _count_refused(self, spans: int, reason: str = "") -> None:
        with self._stat_lock:
            self._c["requests_refused"] += 1
            self._c["spans_refused"] += spans
        raise PipelineFull(self.config.retry_after_s, reason)

    @property
    def inflight_bytes(self) -> int:
        """Bytes the memory limiter counts now (requests being decoded + estimated queued spans)."""
        return self._inflight_bytes

    def reserve_bytes(self, n: int) -> bool:
        """Reserve ``n`` bytes of the memory limiter for a body a receiver is about to read; False: over."""
        with self._qlock:
            if self._closed or (self._inflight_bytes > 0 and
                                self._inflight_bytes + n > self.config.max_inflight_bytes):
                return False
            self._inflight_bytes += n
            return True

    def release_bytes(self, n: int) -> None:
        """Give back a :meth:`reserve_bytes` reservation."""
        with self._qlock:
            self._inflight_bytes -= n

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
                batch = self._decoder.decode(parse_request(payload), payload)
            except DecodeFailure:
                self.store.write_batch(None, [spool_id])
                continue
            if batch.spans:
                self._replayed_rows.add(spool_id)
                self._queue.append((batch.spans, spool_id, time.monotonic()))
                self._queued_spans += len(batch.spans)
                self._inflight_bytes += len(batch.spans) * _SPAN_BYTES
                replayed += len(batch.spans)
            else:
                self.store.write_batch(None, [spool_id])
        self._c["spans_replayed"] += replayed

    # ------------------------------------------------------------------ worker
    def add_listener(self, callback: Callable[[CompletedTrace], None]) -> None:
        """Call ``callback(CompletedTrace)`` for every trace after it is stored (from the worker thread)."""
        self._listeners.append(callback)

    def add_batch_listener(self, callback: Callable[[AnalysedBatch], None]) -> None:
        """Call ``callback(AnalysedBatch)`` once per stored batch (from the worker thread): for consumers that
        want every node's features of many traces at once (numpy), not one trace at a time."""
        self._batch_listeners.append(callback)

    def tick(self, now: float | None = None) -> int:
        """Assemble queued spans and complete the traces due at ``now`` (monotonic seconds); returns the number
        of traces stored. Tests drive time with it; the background thread calls it every ``tick_interval_s``."""
        now = time.monotonic() if now is None else now
        with self._work_lock:
            done = self._drain_queue(now)
            done += self._assembler.due(now)
            return self._finish_counted(done, now)

    def flush(self) -> int:
        """Complete every buffered trace now (shutdown): traces without a root are stored as incomplete."""
        with self._work_lock:
            now = time.monotonic()
            done = self._drain_queue(now)
            done += self._assembler.drain(now)
            self._assembler.finalise_recent()  # stopping: every stored trace is final, its rows can go
            return self._finish_counted(done, now)

    def _finish_counted(self, done: list[Assembled], now: float) -> int:
        """:meth:`_finish`, with the spans of ``done`` shown as ``processing_spans`` until it returns (they have
        left the assembler and are not stored yet)."""
        self._processing = sum(len(a.spans) for a in done) + sum(int(b.n_spans.sum()) for b, _ in self._unwritten
                                                                 if b is not None)
        try:
            return self._finish(done, now)
        finally:
            self._processing = 0

    def _drain_queue(self, now: float) -> list[Assembled]:
        evicted: list[Assembled] = []
        while True:
            with self._qlock:
                if not self._queue:
                    break
                spans, spool_id, arrived = self._queue.popleft()
                self._queued_spans -= len(spans)
                self._inflight_bytes -= len(spans) * _SPAN_BYTES
            if spool_id is not None:
                self._spool_refs[spool_id] = 0
            out, traces = self._assembler.add(spans, spool_id, min(arrived, now))
            evicted += out
            if spool_id is not None:
                self._spool_refs[spool_id] += traces  # number of traces that hold this spool row
        return evicted

    def _finish(self, done: list[Assembled], now: float) -> int:
        c = self._c
        pending = self._unwritten
        self._unwritten = []
        if done:
            done = self._without_stored_duplicates(done)
        if done:
            try:
                batch = self._analyser.analyse(done)
            except Exception:  # a bug must not kill the worker; the spool keeps the spans for a restart
                log.exception("analysing %d traces failed", len(done))
                self._assembler.hold([a.trace_id for a in done])
                with self._stat_lock:
                    c["analysis_errors"] += 1
                    c["spans_dropped"] += sum(len(a.spans) for a in done)
                done = []
            else:
                pending.append((batch, []))
                with self._stat_lock:
                    c["traces_completed"] += len(batch)
                    c["traces_incomplete"] += int((~batch.complete).sum())
                    c["spans_orphan"] += batch.orphan_spans
                    c["spans_in_cycles"] += batch.cycle_spans
                    c["spans_clock_skew"] += batch.skewed_spans
                    c["spans_reparented"] += batch.reparented_spans
        release = self._finished_rows()
        if release:  # after every write queued before it: a row goes only once its traces are stored and final
            if pending and pending[-1][0] is not None and not pending[-1][1]:
                pending[-1] = (pending[-1][0], release)  # in the same transaction as the last batch
            else:
                pending.append((None, release))
        stored = 0
        for k, (item, rows) in enumerate(pending):
            try:
                replaced = self.store.write_batch(item, rows)
            except Exception:
                log.exception("storing %d traces failed; will retry", len(item) if item is not None else 0)
                with self._stat_lock:
                    c["store_errors"] += 1
                rest = pending[k:]
                # bounded: beyond max_buffered_traces waiting traces, the oldest are lost (and counted); their
                # spool rows stay (a restart replays them)
                while len(rest) > 1 and sum(len(b) for b, _ in rest if b is not None) > self.config.max_buffered_traces:
                    lost, _ = rest.pop(0)
                    if lost is not None:
                        with self._stat_lock:
                            c["spans_dropped"] += int(lost.n_spans.sum())
                self._unwritten = rest
                break
            if item is None:
                continue
            with self._stat_lock:
                c["traces_stored"] += len(item)
                c["traces_replaced"] += replaced
                c["spans_stored"] += int(item.n_spans.sum())
            stored += len(item)
            self._notify(item)
        return stored

    def _finished_rows(self) -> list[int]:
        """Spool rows all of whose traces became final (see assembly.py), to release."""
        finished = self._assembler.finished_spool
        if not finished:
            return []
        self._assembler.finished_spool = []
        release = []
        refs = self._spool_refs
        for rows in finished:
            for sid in rows:
                left = refs.get(sid, 1) - 1
                if left <= 0:
                    refs.pop(sid, None)
                    release.append(sid)
                else:
                    refs[sid] = left
        if self._replayed_rows:
            self._replayed_rows.difference_update(release)
        return release

    def _without_stored_duplicates(self, done: list[Assembled]) -> list[Assembled]:
        """Drop rebuilt traces that hold no more spans than their stored version (a trace replayed after a
        crash, a re-opened trace that gained nothing, or a fragment arriving after the late window): the fuller
        stored trace is kept, never replaced by a fragment, and its graph evidence is not counted twice.
        (Not looked up: a complete trace all of whose spans are new to this process — the common case; its
        root alone arriving after the late window is the one fragment this lets through.)"""
        counts = getattr(self.store, "stored_span_counts", None)
        if counts is None:
            return done
        # only traces that can have a stored version are looked up (a lookup costs ~5 % of the pipeline):
        # rebuilt from replayed spool rows, re-opened by late spans, or fragments (no root, or evicted)
        replayed = self._replayed_rows
        suspects = [a.trace_id.hex() for a in done
                    if a.reopened or not a.complete or (replayed and not replayed.isdisjoint(a.spool))]
        if not suspects:
            return done
        stored = counts(suspects)
        if not stored:
            return done
        keep = []
        skipped = skipped_spans = 0
        for a in done:
            old = stored.get(a.trace_id.hex())
            if old is not None and old >= len(a.spans):
                skipped += 1
                skipped_spans += len(a.spans)
            else:
                keep.append(a)
        with self._stat_lock:
            self._c["traces_kept_stored"] += skipped
            self._c["spans_kept_stored"] += skipped_spans
        return keep

    def _notify(self, batch: AnalysedBatch) -> None:
        for batch_cb in list(self._batch_listeners):
            try:
                batch_cb(batch)
            except Exception:
                log.exception("batch listener %r failed", batch_cb)
                with self._stat_lock:
                    self._c["listener_errors"] += 1
        if not self._listeners:
            return
        b = batch.bounds()
        for k in range(len(batch)):
            ct = CompletedTrace(batch.trace_ids[k], batch.entries[k], int(batch.start[k]),
                                float(batch.duration_ms[k]), bool(batch.complete[k]), batch.row(k, b),
                                int(batch.n_spans[k]), batch.errors(k, b))
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
        plus the current ``queued_spans``, ``buffered_spans``, ``buffered_traces`` and ``processing_spans``
        (completed, not stored yet: being analysed and written, or waiting to be written again)."""
        with self._stat_lock:
            out = dict(self._c)
        out["queued_spans"] = self._queued_spans
        out["queued_bytes"] = self._inflight_bytes  # memory limiter gauge
        out["buffered_spans"] = self._assembler.buffered_spans
        out["buffered_traces"] = self._assembler.buffered_traces
        out["processing_spans"] = self._processing or sum(int(b.n_spans.sum()) for b, _ in self._unwritten
                                                          if b is not None)
        out["span_types"] = len(self.types)
        out["span_types_overflow"] = self.types.overflowed
        out["entry_points"] = len(self.types.entry_ids)
        out["entry_points_overflow"] = self.types.entries_overflowed
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
