"""The background-worker base: batches, a bounded queue that refuses, drain, wake, stop that flushes,
and failing steps that are logged and counted without ending the thread."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from collector_processor.worker import BackgroundWorker


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_items_are_processed_in_order_in_bounded_batches():
    entered, gate = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def process(batch: list[int]) -> None:
        entered.set()
        gate.wait(5)
        batches.append(batch)

    w = BackgroundWorker[int]("t-batches", process, max_batch=4).start()
    assert w.submit(0)
    assert entered.wait(5)  # 0 is being processed (held at the gate)
    for i in range(1, 10):
        assert w.submit(i)
    assert w.pending == 10
    gate.set()
    assert w.drain(5) and w.pending == 0
    assert [i for b in batches for i in b] == list(range(10))
    assert batches[0] == [0] and max(len(b) for b in batches) == 4
    assert w.stop(1) and not w.running


def test_bounded_queue_refuses_and_stop_flushes_what_is_queued():
    entered, gate = threading.Event(), threading.Event()
    done: list[str] = []
    w = BackgroundWorker[str]("t-bounded", lambda b: (entered.set(), gate.wait(5), done.extend(b)), max_queue=2)
    w.start().submit("a")
    assert entered.wait(5)  # "a" taken: the queue is empty again
    assert [w.submit(x) for x in "bcd"] == [True, True, False]  # two fit, the third is refused
    assert not w.drain(0.05)  # still held at the gate
    threading.Timer(0.1, gate.set).start()
    assert w.stop(5)  # drains first: everything queued before stop is processed
    assert done == ["a", "b", "c"]
    assert not w.submit("e") and w.pending == 0  # a stopped worker refuses


def test_periodic_step_runs_every_interval_and_when_woken():
    ticks: list[float] = []
    w = BackgroundWorker[None]("t-periodic", periodic=lambda: ticks.append(time.monotonic()), interval_s=0.05)
    w.wake()  # before start: remembered
    w.start()
    wait_for(lambda: len(ticks) >= 3)
    w.stop(1, drain=False)
    n = len(ticks)
    time.sleep(0.15)
    assert len(ticks) == n  # no step after stop
    slow = BackgroundWorker[None]("t-woken", periodic=lambda: ticks.append(time.monotonic()), interval_s=60).start()
    try:
        t0 = time.monotonic()
        slow.wake()
        wait_for(lambda: len(ticks) > n)
        assert time.monotonic() - t0 < 1.0  # woken: not the 60 s interval
    finally:
        slow.stop(1)


def test_failing_steps_are_logged_counted_and_do_not_end_the_thread(caplog):
    errors: list[Exception] = []
    seen: list[int] = []

    def process(batch: list[int]) -> None:
        if batch[0] == 1:
            raise ValueError("bad item")
        seen.extend(batch)

    w = BackgroundWorker[int]("t-errors", process, on_error=errors.append).start()
    with caplog.at_level(logging.ERROR, logger="whyslow.worker"):
        for i in range(3):
            w.submit(i)
        assert w.drain(5)
    w.stop(1)
    assert seen == [0, 2] and w.errors == 1 and isinstance(errors[0], ValueError)
    assert "t-errors: process failed" in caplog.text and "bad item" in caplog.text


def test_failing_periodic_step_waits_an_interval_and_sleep_ends_at_stop():
    calls: list[float] = []

    def tick() -> None:
        calls.append(time.monotonic())
        raise OSError("store is closed")

    w = BackgroundWorker[None]("t-backoff", periodic=tick, interval_s=0.1).start()
    wait_for(lambda: len(calls) >= 3)
    w.stop(1, drain=False)
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert min(gaps) >= 0.15  # the interval, then one more after each failure

    slept: list[bool] = []
    entered = threading.Event()
    sleeper = BackgroundWorker[int]("t-sleep", lambda b: (entered.set(), slept.append(sleeper.sleep(30)))).start()
    sleeper.submit(1)
    assert entered.wait(5)
    t0 = time.monotonic()
    sleeper.stop(0.2)  # the drain gives up, stopping wakes the sleeping step
    assert slept == [True] and time.monotonic() - t0 < 2 and sleeper.stopping


def test_arguments_are_checked():
    with pytest.raises(ValueError):
        BackgroundWorker[int]("t")
    with pytest.raises(ValueError):
        BackgroundWorker[int]("t", periodic=lambda: None)
    with pytest.raises(ValueError):
        BackgroundWorker[int]("t", lambda b: None, max_batch=0)
    with pytest.raises(TypeError):
        BackgroundWorker[int]("t", periodic=lambda: None, interval_s=1).submit(1)
    never = BackgroundWorker[int]("t-never", lambda b: None)
    never.submit(1)
    assert not never.drain(0.01) and not never.stop(0.01)  # nobody processed it: says so, does not hang
