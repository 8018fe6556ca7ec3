"""Several `whyslow serve` replicas on one ClickHouse store: who fits which model, and how every replica hears
of every outlier.

- Traces are split before they reach a replica (pull mode: ``cityHash64(TraceId) % N``; push mode: the
  OpenTelemetry Collector's ``loadbalancing`` exporter routes by trace id), so each trace is assembled, scored,
  marked, explained and annotated by exactly one replica: nothing is duplicated.
- Models: the *owner* of an entry point (a stable hash of its name, modulo N) fits it on the traces of every
  replica (the shared store) and saves it; the other replicas load it from the store when a newer version is
  saved (:class:`ReplicaModelManager`), so every replica scores with the same model.
- Queries read the shared store, so any replica answers for any trace. ``WatchOutliers`` streams of a replica
  also get the outliers other replicas explained (:class:`OutlierFollower` tails the store's
  ``explanations``), once each; annotation pushes stay with the replica that explained the outlier.
- A trace split across replicas (the load balancer resharded while it was in flight) is a fragment on each of
  them: each part is stored, but neither is scored, explained nor fitted on. The part stored second sees the
  first in the store as it is written; the part stored first cannot know yet, so every stored trace waits
  :func:`settle_delay` (the longest another replica can take to store its part of the same trace) in a
  :class:`SettleGate` before it goes to the detector, and is dropped there if another replica stored part of
  it meanwhile. One replica (the SQLite default) has no gate and no delay.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from collector_processor import CompletedTrace, PipelineConfig
from plugin import model_blobs
from plugin.models import FittedModel, ModelManager
from plugin.payloads import ExplanationPayload

log = logging.getLogger("whyslow.replicas")

OVERLAP_S = 5.0
SETTLE_MARGIN_S = 5.0      # beyond the other replica's completion wait: its pipeline tick, store insert, clock
MAX_SETTLING = 200_000     # traces held by the gate (~2 kB each); beyond, the oldest are checked early


def settle_delay(trace_timeout_s: float, max_trace_wait_s: float = PipelineConfig.max_trace_wait_s) -> float:
    """How long a stored trace waits before it is scored when replicas share the work: the longest another
    replica holding the other part of the same trace can take to store it. Its part completes
    ``trace_timeout_s`` after its last span when it holds the root, ``max_trace_wait_s`` after its first span
    when it does not; both parts' spans arrive within the request's duration of each other."""
    return float(max_trace_wait_s) + float(trace_timeout_s) + SETTLE_MARGIN_S


class FragmentFinder(Protocol):
    """The part of the shared trace store the gate asks (:class:`ClickHouseTraceStore`)."""

    fragments: Collection[str]

    def find_fragments(self, trace_ids: Collection[str]) -> set[str]: ...


@dataclass
class GateCounters:
    """What the gate did (``/api/v1/status`` → ``replica``)."""

    settled: int = 0          # traces passed on to the detector after the settle delay
    fragments: int = 0        # traces held back: another replica stored part of them
    check_errors: int = 0     # store lookups that failed (retried on the next round)
    unchecked: int = 0        # passed on without a lookup (the store was away and the gate full, or stopping)
    early: int = 0            # checked before they settled (more than MAX_SETTLING traces waiting)
    settling: int = 0         # traces waiting now
    settle_s: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"settled": self.settled, "fragments": self.fragments, "check_errors": self.check_errors,
                "unchecked": self.unchecked, "early": self.early, "settling": self.settling, "settle_s": self.settle_s}


class SettleGate:
    """Holds each trace the pipeline stored for ``settle_s``, then asks the store which of them another
    replica stored part of (fragments: dropped, counted) and hands the others to ``forward`` (the detector)."""

    def __init__(self, store: FragmentFinder, forward: Callable[[CompletedTrace], None], settle_s: float,
                 interval_s: float = 0.5) -> None:
        self.store = store
        self.forward = forward
        self.settle_s = float(settle_s)
        self.interval_s = float(interval_s)
        self.counters = GateCounters(settle_s=self.settle_s)
        self._waiting: deque[tuple[float, CompletedTrace]] = deque()  # (due, trace), due ascending
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the pipeline's listener -----------------------------------------------------------------
    def on_trace(self, trace: CompletedTrace) -> None:
        """Pipeline listener: a part found split as it was written is dropped now, any other waits."""
        if trace.trace_id in self.store.fragments:
            self.counters.fragments += 1
            return
        with self._lock:
            self._waiting.append((time.monotonic() + self.settle_s, trace))
            self.counters.settling = len(self._waiting)

    # --- settling --------------------------------------------------------------------------------
    def release(self, now: float | None = None, everything: bool = False) -> int:
        """Check the traces due at ``now`` (all of them with ``everything``) and pass on those that are whole;
        returns how many were passed on. A failed lookup keeps them for the next round; beyond MAX_SETTLING
        waiting traces, or when stopping (``everything``), they are passed on unchecked (counted)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            due: list[CompletedTrace] = []
            while self._waiting and (everything or self._waiting[0][0] <= now):
                due.append(self._waiting.popleft()[1])
            while len(self._waiting) > MAX_SETTLING:  # memory bound: the oldest are checked before they settled
                due.append(self._waiting.popleft()[1])
                self.counters.early += 1
        if not due:
            return 0
        try:
            split = self.store.find_fragments([t.trace_id for t in due])
        except Exception as exc:  # noqa: BLE001 - the shared store may be briefly away: ask again next round
            self.counters.check_errors += 1
            log.warning("cannot check %d settled traces for fragments: %s", len(due), exc)
            if not everything:
                with self._lock:
                    self._waiting.extendleft((now, t) for t in reversed(due))
                    over = max(0, len(self._waiting) - MAX_SETTLING)
                    due = [self._waiting.popleft()[1] for _ in range(over)]
                    self.counters.settling = len(self._waiting)
            self.counters.unchecked += len(due)
            split = set()
        passed = 0
        for trace in due:
            if trace.trace_id in split:
                self.counters.fragments += 1
                continue
            self.forward(trace)
            passed += 1
        self.counters.settled += passed
        with self._lock:
            self.counters.settling = len(self._waiting)
        return passed

    def start(self) -> SettleGate:
        self._thread = threading.Thread(target=self._run, name="whyslow-settle", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.release()
            except Exception as exc:  # noqa: BLE001 - the detector refused: the next round goes on
                log.warning("passing settled traces on failed: %s", exc)

    def stop(self, timeout: float = 30.0) -> None:
        """Shutdown (after the pipeline stored its last traces): wait until the waiting traces have settled,
        at most ``timeout``, pass them on, and stop."""
        with self._lock:
            last_due = self._waiting[-1][0] if self._waiting else 0.0
        deadline = time.monotonic() + timeout
        while self._thread is not None and self._thread.is_alive() and self.counters.settling \
                and time.monotonic() < min(deadline, last_due + self.interval_s):
            time.sleep(min(self.interval_s, 0.2))
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.release(everything=True)


@dataclass(frozen=True)
class ReplicaShare:
    """Replica ``index`` of ``count``."""

    index: int = 0
    count: int = 1

    def owner(self, key: str) -> int:
        """The replica that owns ``key`` (stable across processes and restarts)."""
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count

    def owns(self, key: str) -> bool:
        return self.count <= 1 or self.owner(key) == self.index


class ReplicaModelManager(ModelManager):
    """A :class:`ModelManager` that fits only the entry points this replica owns (counting the traces of all
    replicas in the shared store) and adopts the models the owners saved for the others."""

    def __init__(self, traces: Any, results: Any, config: Any, metrics: Any = None,
                 share: ReplicaShare | None = None) -> None:
        super().__init__(traces, results, config, metrics)
        self.share = share or ReplicaShare()
        self._versions: dict[str, int] = {}
        self.adopted = 0
        # per owned entry point: (monotonic time, traces in the store) samples of the last settle_s
        self._stored: dict[str, deque[tuple[float, int]]] = {}

    def due(self, now: float | None = None) -> list[str]:
        """Owned entry points due for a (re)fit; first adopts newer models of the others and counts the traces
        every replica stored (the owner fits once the store holds ``min_traces``, not its own share)."""
        try:
            self.sync()
        except Exception as exc:  # noqa: BLE001 - the shared store may be briefly away; next round retries
            log.warning("replica model sync failed: %s", exc)
        return [e for e in super().due(now) if self.share.owns(e)]

    def fit(self, entry: str, exclude: set[str] | frozenset[str] = frozenset(),
            min_rows: int | None = None) -> FittedModel:
        if not self.share.owns(entry):
            raise RuntimeError(f"the model of {entry} is fitted by replica {self.share.owner(entry)}")
        fitted = super().fit(entry, exclude, min_rows)
        self._versions[entry] = self._store_versions().get(entry, self._versions.get(entry, 0))
        return fitted

    def _store_versions(self) -> dict[str, int]:
        versions = getattr(self.results, "model_versions", None)
        return versions() if versions is not None else {}

    def settled_count(self, entry: str, stored: int, now: float | None = None) -> int:
        """How many of an entry point's stored traces have settled: the store's count ``settle_s`` ago (a fit
        uses settled traces only; counting unsettled ones would start a first fit that finds too few rows and
        then backs off). ``stored``: the count now, sampled for later calls."""
        settle = float(getattr(self.traces, "settle_s", 0.0) or 0.0)
        if settle <= 0:
            return stored
        now = time.monotonic() if now is None else now
        samples = self._stored.setdefault(entry, deque())
        samples.append((now, stored))
        while len(samples) > 1 and samples[1][0] <= now - settle:
            samples.popleft()  # keep one sample at least settle_s old: the newest such
        return samples[0][1] if samples[0][0] <= now - settle else 0

    def sync(self, now: float | None = None) -> int:
        """Adopt the models other replicas saved since the last look; refresh trace counts of owned entry
        points from the store (settled traces only); returns how many models were adopted."""
        for entry in self.traces.entry_points() if self.share.count > 1 else ():
            state = self._entry(entry)
            if self.share.owns(entry):
                settled = self.settled_count(entry, self.traces.graph(entry).traces, now)
                with self._lock:
                    state.seen = max(state.seen, settled)
        adopted = 0
        for entry, version in self._store_versions().items():
            if self.share.owns(entry) or version <= self._versions.get(entry, 0):
                continue
            record = self.results.load_model(entry)
            if record is None:
                continue
            try:
                model = model_blobs.load(record[0], self._blob_key)  # authenticated: replicas share the key
            except Exception as exc:  # noqa: BLE001 - tampered, foreign key or corrupt: wait for the next one
                log.warning("ignoring the stored model of %s: %s", entry, exc)
                self._versions[entry] = version
                continue
            if not isinstance(model, FittedModel):
                continue
            self._adopt(entry, model)
            self._versions[entry] = version
            adopted += 1
        self.adopted += adopted
        return adopted

    def _adopt(self, entry: str, model: FittedModel) -> None:
        state = self._entry(entry)
        with self._lock:
            first = state.model is None
            state.model = model
            state.seen_at_fit = state.seen
            state.last_error = None
        self._update_gauge()
        log.info("adopted the model of %s fitted by replica %d on %d traces", entry, self.share.owner(entry),
                 model.rows)
        if first:
            for listener in self.first_fit_listeners:
                try:
                    listener(entry, model)
                except Exception as exc:  # noqa: BLE001 - a listener must not undo the adoption
                    log.warning("first-fit listener failed for %s: %s", entry, exc)


class OutlierFollower:
    """Publishes to this replica's ``WatchOutliers`` hub the explanations other replicas saved (polling the
    store), so that a stream on any replica sees every outlier once."""

    def __init__(self, results: Any, replica: str, publish: Callable[[ExplanationPayload], None],
                 interval_s: float = 1.0) -> None:
        self.results = results
        self.replica = str(replica)
        self.publish = publish
        self.interval_s = interval_s
        self.after = time.time_ns()
        self.published = 0
        self._seen: dict[str, int] = {}  # trace id -> created (ns): rows re-read by the overlap are skipped
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> int:
        """Publish the explanations saved by other replicas since the last poll (re-reading the last
        ``OVERLAP_S`` so that a row another replica's clock stamped slightly earlier is not missed)."""
        rows = self.results.explanations_since(self.after - int(OVERLAP_S * 1e9), exclude_replica=self.replica)
        fresh = 0
        for trace_id, created, payload in rows:
            if self._seen.get(trace_id) == created:
                continue
            self._seen[trace_id] = created
            self.after = max(self.after, created)
            self.publish(payload)
            fresh += 1
        horizon = self.after - int(2 * OVERLAP_S * 1e9)
        if len(self._seen) > 10_000:
            self._seen = {t: c for t, c in self._seen.items() if c >= horizon}
        self.published += fresh
        return fresh

    def start(self) -> OutlierFollower:
        self._thread = threading.Thread(target=self._run, name="whyslow-outlier-follower", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - the store may be briefly away; next round retries
                log.warning("following other replicas' outliers failed: %s", exc)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
