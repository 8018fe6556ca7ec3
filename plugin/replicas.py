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
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plugin import model_blobs
from plugin.models import FittedModel, ModelManager
from plugin.payloads import ExplanationPayload

log = logging.getLogger("whyslow.replicas")

OVERLAP_S = 5.0


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

    def sync(self) -> int:
        """Adopt the models other replicas saved since the last look; refresh trace counts of owned entry
        points from the store; returns how many models were adopted."""
        for entry in self.traces.entry_points() if self.share.count > 1 else ():
            state = self._entry(entry)
            if self.share.owns(entry):
                stored = self.traces.graph(entry).traces
                with self._lock:
                    state.seen = max(state.seen, stored)
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
