"""Interned span types: every (service, operation, kind) gets a small integer id at decode time, so that the
hot path carries ints and the batch analysis works on numpy arrays."""

from __future__ import annotations

import threading

import numpy as np

from collector_processor.naming import is_catch_all

OTHER_OPERATION = "{other}"


class SpanTypes:
    """Append-only registry id -> (service, operation, kind); ``kind`` is ``span`` | ``db`` | ``messaging``.
    Thread-safe: interning takes a lock only for a new type. Bounded: beyond ``max_types`` distinct types
    (unnormalisable high-cardinality names), new operations of a known service share the type
    ``service:{other}`` and new services share ``{other}:{other}``. Entry points (types of root spans) are
    bounded by ``max_entries``: a new root type beyond it is folded into ``{other}:{other}`` (counted in
    ``entries_overflowed``), so a hostile sender cannot mint unbounded graphs, models or metric series."""

    def __init__(self, max_types: int = 100_000, max_entries: int = 1_000) -> None:
        self.max_types = max_types
        self.max_entries = max_entries
        self.overflowed = 0
        self.entries_overflowed = 0
        self.entry_ids: set[int] = set()
        self._ids: dict[tuple[str, str, str], int] = {}
        self.service: list[str] = []
        self.operation: list[str] = []
        self.kind: list[str] = []
        self._svc_ids: dict[str, int] = {}
        self._svc_of: list[int] = []
        self._catch_all: list[bool] = []
        self._lock = threading.Lock()
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def intern(self, service: str, operation: str, kind: str = "span") -> int:
        """The id of a span type (a new one is registered; beyond ``max_types``, an overflow bucket's id)."""
        return self._intern((service, operation, kind), bounded=True)

    def _intern(self, key: tuple[str, str, str], bounded: bool) -> int:
        i = self._ids.get(key)
        if i is not None:
            return i
        with self._lock:
            i = self._ids.get(key)
            if i is None and bounded and len(self.service) >= self.max_types:
                self.overflowed += 1
                service, _, kind = key
                if service not in self._svc_ids:  # a new service: one shared bucket
                    service = OTHER_OPERATION
                key = (service, OTHER_OPERATION, kind)
                i = self._ids.get(key)
            return i if i is not None else self._add(key)

    def entry(self, type_id: int, spans: int = 1) -> int:
        """The type a root span of ``type_id`` is stored under: itself while fewer than ``max_entries`` entry
        points exist (or it is one already), else the shared ``{other}:{other}`` entry point (``spans`` root spans
        of that type are counted in ``entries_overflowed``)."""
        if type_id in self.entry_ids:
            return type_id
        with self._lock:
            if type_id in self.entry_ids:
                return type_id
            if len(self.entry_ids) < self.max_entries:
                self.entry_ids.add(type_id)
                return type_id
            self.entries_overflowed += spans
        other = self._intern((OTHER_OPERATION, OTHER_OPERATION, self.kind[type_id]), bounded=False)
        self.entry_ids.add(other)  # the overflow bucket itself is always accepted
        return other

    def _add(self, key: tuple[str, str, str]) -> int:
        """Register a new type (lock held)."""
        service, operation, kind = key
        i = len(self.service)
        self.service.append(service)
        self.operation.append(operation)
        self.kind.append(kind)
        self._svc_of.append(self._svc_ids.setdefault(service, len(self._svc_ids)))
        self._catch_all.append(is_catch_all(operation))
        self._ids[key] = i
        self._arrays = None
        return i

    def __len__(self) -> int:
        return len(self.service)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(service index per type, catch-all root flag per type) as numpy arrays."""
        arr = self._arrays
        n = len(self._svc_of)
        if arr is None or len(arr[0]) != n:
            arr = (np.array(self._svc_of[:n], dtype=np.int64), np.array(self._catch_all[:n], dtype=bool))
            self._arrays = arr
        return arr
