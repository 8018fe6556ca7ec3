"""The detector's scoring queue is bounded: a full queue makes the pipeline wait (back-pressure), and only a
scoring thread stuck for PENDING_WAIT_S leaves a trace unscored — counted, never silent."""

from __future__ import annotations

import time

from collector_processor import CompletedTrace
from plugin import detector as det
from plugin.config import ServeConfig
from plugin.detector import Detector, OutlierHub


class _Models:
    first_fit_listeners: list = []


def test_full_scoring_queue_waits_then_counts(monkeypatch):
    monkeypatch.setattr(det, "MAX_PENDING_TRACES", 2)
    monkeypatch.setattr(det, "PENDING_WAIT_S", 0.2)
    d = Detector(_Models(), None, None, None, ServeConfig().validate(), None, OutlierHub())  # threads not started: stuck
    trace = CompletedTrace("ab" * 16, "web:GET /", 0, 1.0, True, {"web:GET /": 1.0}, 1)
    d.on_trace(trace)
    d.on_trace(trace)
    assert d.pending == 2 and d.counters["unscored_overflow"] == 0
    t0 = time.monotonic()
    d.on_trace(trace)  # no room: waits for the scoring thread, then gives up and counts it
    assert time.monotonic() - t0 >= 0.2
    assert d.counters["unscored_overflow"] == 1 and d.pending == 2
