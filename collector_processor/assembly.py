"""Trace assembly: buffer spans by trace id until the trace is complete, within a bounded memory.

A trace completes when its root span has arrived and no span came for ``trace_timeout_s``; a trace without
root is flushed as incomplete ``max_trace_wait_s`` after its first span. Beyond ``max_buffered_spans`` /
``max_buffered_traces`` the least recently active trace is evicted: emitted as incomplete and counted, never
thrown away. A span id seen before in the same trace is a duplicate (idempotent). Completed traces are kept
for ``late_window_s`` so that a late span re-opens its trace instead of becoming a fragment.

Crash consistency: a trace keeps the spool rows that fed it until it is *final* (it left the late window, or
the pipeline flushed at shutdown); only then are its rows handed to ``finished_spool`` for release. After a
crash, replay therefore rebuilds every non-final trace from all of its rows, never from a subset.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

from collector_processor.config import PipelineConfig
from collector_processor.otlp_decode import PID, SID, ZERO8


class _Buf:
    __slots__ = ("spans", "first", "last", "has_root", "spool", "reopened")

    def __init__(self, now: float) -> None:
        self.spans: dict[bytes, tuple] = {}
        self.first = now
        self.last = now
        self.has_root = False
        self.spool: set[int] = set()
        self.reopened = False


@dataclass
class Assembled:
    """A trace that left the assembler."""

    trace_id: bytes
    spans: list[tuple]
    complete: bool        # root arrived and it completed by idle time (not evicted, not max-wait)
    evicted: bool
    reopened: bool
    spool: set[int]


class TraceAssembler:
    """Not thread-safe: the pipeline serialises access."""

    def __init__(self, config: PipelineConfig, counters: Counter) -> None:
        self.cfg = config
        self.c = counters
        self._active: OrderedDict[bytes, _Buf] = OrderedDict()   # ordered by last activity
        self._rootless: OrderedDict[bytes, _Buf] = OrderedDict()  # idle, waiting for a root (by first arrival)
        self._recent: OrderedDict[bytes, tuple[dict, float, bool, set[int]]] = OrderedDict()
        self._recent_spans = 0
        self.buffered_spans = 0
        # spool ids of traces that became final, one set per trace (the pipeline releases them after the
        # writes that precede them)
        self.finished_spool: list[set[int]] = []

    @property
    def buffered_traces(self) -> int:
        return len(self._active) + len(self._rootless)

    def add(self, spans: list[tuple], spool_id: int | None, now: float) -> tuple[list[Assembled], int]:
        """Buffer spans; returns the traces evicted to stay within the memory bounds, and how many traces the
        spans belong to (each now holds ``spool_id``)."""
        active = self._active
        touched: dict[bytes, _Buf] = {}
        dup = 0
        added = 0
        for sp in spans:
            tid = sp[0]
            buf = touched.get(tid)
            if buf is None:
                buf = active.get(tid)
                if buf is None:
                    buf = self._rootless.pop(tid, None)
                    if buf is None:
                        buf = self._open(tid, now)
                    active[tid] = buf
                touched[tid] = buf
            sid = sp[SID]
            if sid in buf.spans:
                dup += 1
                continue
            buf.spans[sid] = sp
            added += 1
            if sp[PID] == ZERO8:
                buf.has_root = True
        for tid, buf in touched.items():
            buf.last = now
            if spool_id is not None:
                buf.spool.add(spool_id)
            active.move_to_end(tid)
        self.buffered_spans += added
        if dup:
            self.c["spans_duplicate"] += dup
        return self._enforce_bounds(now), len(touched)

    def _open(self, tid: bytes, now: float) -> _Buf:
        buf = _Buf(now)
        old = self._recent.pop(tid, None)
        if old is not None:  # late spans re-open a completed trace: rebuild it whole
            spans, _, has_root, spool = old
            self._recent_spans -= len(spans)
            buf.spans = spans
            buf.has_root = has_root
            buf.spool = spool
            buf.reopened = True
            self.buffered_spans += len(spans)
            self.c["traces_reopened"] += 1
        return buf

    def _enforce_bounds(self, now: float) -> list[Assembled]:
        out = []
        while self.buffered_spans > self.cfg.max_buffered_spans or self.buffered_traces > self.cfg.max_buffered_traces:
            src = self._rootless if self._rootless else self._active
            tid, buf = src.popitem(last=False)
            out.append(self._emit(tid, buf, complete=False, evicted=True, now=now))  # late spans re-open it
            self.c["traces_evicted"] += 1
        return out

    def _emit(self, tid: bytes, buf: _Buf, complete: bool, evicted: bool, now: float | None = None) -> Assembled:
        self.buffered_spans -= len(buf.spans)
        if now is not None and self.cfg.late_window_s > 0:
            self._recent[tid] = (buf.spans, now, buf.has_root, buf.spool)
            self._recent_spans += len(buf.spans)
        elif buf.spool:
            self.finished_spool.append(buf.spool)
        return Assembled(tid, list(buf.spans.values()), complete, evicted, buf.reopened, buf.spool)

    def due(self, now: float) -> list[Assembled]:
        """Traces complete at ``now`` (root seen and idle), and rootless traces past their max wait."""
        cfg = self.cfg
        out = []
        idle_before = now - cfg.trace_timeout_s
        active = self._active
        while active:
            tid, buf = active.popitem(last=False)  # the least recently active trace
            if buf.last > idle_before:
                active[tid] = buf
                active.move_to_end(tid, last=False)  # not idle yet: back in front (every later one is younger)
                break
            if buf.has_root:
                out.append(self._emit(tid, buf, complete=True, evicted=False, now=now))
            else:
                self._rootless[tid] = buf
        wait_before = now - cfg.max_trace_wait_s
        rootless = self._rootless
        while rootless:
            tid, buf = rootless.popitem(last=False)
            if buf.first > wait_before:
                rootless[tid] = buf
                rootless.move_to_end(tid, last=False)
                break
            out.append(self._emit(tid, buf, complete=False, evicted=False, now=now))
        self._expire_recent(now)
        return out

    def drain(self, now: float) -> list[Assembled]:
        """Everything buffered, now (shutdown / flush): traces with a root count as complete."""
        out = []
        for src in (self._active, self._rootless):
            while src:
                tid, buf = src.popitem(last=False)
                out.append(self._emit(tid, buf, complete=buf.has_root, evicted=False, now=now))
        return out

    def _expire_recent(self, now: float) -> None:
        recent = self._recent
        before = now - self.cfg.late_window_s
        while recent:
            tid, item = recent.popitem(last=False)
            spans, t, _, spool = item
            if t > before and self._recent_spans <= self.cfg.max_recent_spans:
                recent[tid] = item
                recent.move_to_end(tid, last=False)
                break
            self._recent_spans -= len(spans)
            if spool:
                self.finished_spool.append(spool)

    def finalise_recent(self) -> None:
        """Every trace in the late window becomes final now (shutdown: its spool rows may be released)."""
        for _spans, _t, _root, spool in self._recent.values():
            if spool:
                self.finished_spool.append(spool)
        self._recent.clear()
        self._recent_spans = 0

    def hold(self, trace_ids: list[bytes]) -> None:
        """Never release the spool rows of these traces in this process (their analysis failed: a restart
        replays them)."""
        for tid in trace_ids:
            old = self._recent.get(tid)
            if old is not None:
                old[3].clear()
