"""One background worker: a daemon thread that processes queued items in batches and/or runs a periodic step,
with wake-up, drain (flush) and shutdown done one way for every worker of whyslow (the collector pipeline, and in
the backend the detector, the model manager and the annotation pusher).

Modelled on the OpenTelemetry SDK's batch processor: producers ``submit`` (never blocking; a bounded queue
refuses and the caller counts the drop); the thread takes up to ``max_batch`` items at a time; ``wake`` runs the
periodic step now instead of at the next ``interval_s``; ``drain`` waits until everything submitted so far is
processed; ``stop`` drains (bounded by its timeout), then ends the thread. An exception in a step is logged
(and passed to ``on_error``), never ends the thread; the periodic step runs ``interval_s`` after the previous one
ended, and a failed one waits one interval more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("whyslow.worker")


class BackgroundWorker(Generic[T]):
    """A daemon thread running ``process(batch)`` on queued items and/or ``periodic()`` every ``interval_s``.

    ``max_queue`` bounds the queued items (0: unbounded), or their total ``weight(item)`` when a weight is
    given (an item heavier than the bound is still taken when the queue is empty); ``pending`` counts items
    queued or being processed.
    """

    def __init__(self, name: str, process: Callable[[list[T]], object] | None = None, *,
                 periodic: Callable[[], object] | None = None, interval_s: float | None = None,
                 max_queue: int = 0, max_batch: int = 1, weight: Callable[[T], int] | None = None,
                 on_error: Callable[[Exception], None] | None = None,
                 logger: logging.Logger | None = None) -> None:
        if process is None and periodic is None:
            raise ValueError("a worker needs process, periodic or both")
        if periodic is not None and (interval_s is None or interval_s <= 0):
            raise ValueError("a periodic worker needs interval_s > 0")
        if max_batch < 1 or max_queue < 0:
            raise ValueError("max_batch must be >= 1 and max_queue >= 0")
        self.name = name
        self._process = process
        self._periodic = periodic
        self._interval = interval_s
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._weight = weight
        self._queued = 0  # queued items, or their total weight
        self._on_error = on_error
        self._log = logger or log
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._pending = 0
        self._woken = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    # --- producers -------------------------------------------------------------------------------
    def submit(self, item: T) -> bool:
        """Queue one item (never blocks); False when the bounded queue is full or the worker has stopped."""
        if self._process is None:
            raise TypeError(f"{self.name} has no process step: nothing to submit to")
        w = 1 if self._weight is None else self._weight(item)
        with self._cond:
            if self._stop.is_set() or (self._max_queue and self._queued and self._queued + w > self._max_queue):
                return False
            self._items.append(item)
            self._queued += w
            self._pending += 1
            self._cond.notify_all()
            return True

    def wake(self) -> None:
        """Run the periodic step (or look at the queue) now rather than at the next interval."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Items submitted and not yet processed (queued or in the running batch)."""
        with self._cond:
            return self._pending

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` has drained (or given up draining): a long step should end soon."""
        return self._stop.is_set()

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds`` inside a step (a retry backoff); True when the worker is stopping."""
        return self._stop.wait(seconds)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> BackgroundWorker[T]:
        """Start the thread (once; again after :meth:`stop`)."""
        with self._cond:
            if self._thread is not None:
                return self
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every item submitted so far is processed; False when ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending > 0:
                if self._thread is None:
                    return False  # nobody to process them
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self, timeout: float = 10.0, drain: bool = True) -> bool:
        """Drain what is queued (unless ``drain`` is False; bounded by ``timeout``), then end the thread.
        Returns whether everything queued was processed. Idempotent; a worker never started just returns."""
        deadline = time.monotonic() + timeout
        done = self.drain(timeout) if drain and self._thread is not None else self.pending == 0
        with self._cond:
            self._stop.set()
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.5, deadline - time.monotonic()))
        return done

    # --- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        interval = self._interval
        next_tick = None if interval is None else time.monotonic() + interval
        while True:
            with self._cond:
                while not self._items and not self._woken and not self._stop.is_set():
                    if next_tick is None:
                        self._cond.wait()
                        continue
                    left = next_tick - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stop.is_set() and not self._items:
                    return
                batch = [self._items.popleft() for _ in range(min(self._max_batch, len(self._items)))]
                self._queued -= len(batch) if self._weight is None else sum(map(self._weight, batch))
                self._woken = False
            try:
                if batch and self._process is not None:
                    self._step(self._process, batch)
                elif self._periodic is not None:
                    if not self._step(self._periodic) and interval is not None:
                        self._stop.wait(interval)  # a failing step (a broken store) is retried at its pace
                    next_tick = None if interval is None else time.monotonic() + interval
            finally:
                if batch:
                    with self._cond:
                        self._pending -= len(batch)
                        self._cond.notify_all()

    def _step(self, fn: Callable[..., object], *args: object) -> bool:
        try:
            fn(*args)
            return True
        except Exception as exc:  # noqa: BLE001 - the worker outlives any one failing step; logged and counted
            self.errors += 1
            self._log.exception("%s: %s failed", self.name, getattr(fn, "__name__", "step"))
            if self._on_error is not None:
                try:
                    self._on_error(exc)
                except Exception:  # noqa: BLE001 - an error hook must not end the thread either
                    self._log.exception("%s: error hook failed", self.name)
            return False
