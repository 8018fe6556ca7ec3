"""Continuous regression detection: every minute, each entry point's recent window against its baseline.

For every entry point with traces in the last ``window`` (default 5 minutes), the window is ranked as
``GET /api/v1/incident`` ranks it (shift scores against the 30 minutes before it, earlier incidents left out per
service; the per-request outliers are reported by the detector already). The minute verdicts behind those
baselines are shared with the endpoint (one ``MinuteVerdicts``, one exclusion level), so either may judge a minute
first. A window whose top shift score reaches
``min_score`` (default ``ALERT_SCORE``, 1 in 1,000: asked once a minute per entry point, a false alarm about every
17 hours of an unchanged entry point) is a detected regression: it is kept in a bounded list (``GET /api/v1/incidents``), and published like an explained outlier --
to the outlier hub (gRPC WatchOutliers) and the outlier callbacks (Grafana annotations) -- once per entry point
and leading service until that regression has been quiet for a window.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from collector_processor import TraceStore
from collector_processor.worker import BackgroundWorker
from plugin import incident_ranking
from plugin.results_store import RegressionRecord, ResultsStore

log = logging.getLogger("whyslow.watch")

WINDOW_NS = 5 * incident_ranking.MINUTE_NS
INTERVAL_S = 60.0
MAX_KEPT = 500
ALERT_SCORE = math.log(1000.0)


def regression_payload(entry: str, ranking: dict[str, Any], lo: int, hi: int, min_score: float) -> dict[str, Any]:
    """A detected regression in the shape of an explained outlier (what WatchOutliers streams and the annotation
    pusher posts): ``kind`` "regression", the window's shift score as ``outlier_score`` (nats, calibrated like the
    IT score), the shifted nodes as contributions (their scores; shares of the total)."""
    nodes = ranking["shift"]["nodes"]
    score = max((n["score"] for n in nodes), default=0.0)
    total = sum(n["score"] for n in nodes) or 1.0
    contributions = [{"rank": i + 1, "node": n["node"], "service": n["service"], "operation": n["node"],
                      "kind": n["kind"], "contribution": n["score"], "share": n["score"] / total}
                     for i, n in enumerate(nodes[:10])]
    lead = ranking["services"][0]["service"] if ranking["services"] else None
    return {
        "kind": "regression",
        "trace_id": f"regression:{entry}:{lo // 1_000_000}",
        "entry": entry,
        "start_unix_nano": lo,
        "time_ms": lo // 1_000_000,
        "to_ms": hi // 1_000_000,
        "target_latency_ms": float((hi - lo) / 1e6),
        "outlier_score": score,
        "rarer_than": math.exp(min(score, 700.0)),
        "is_outlier": True,
        "threshold": min_score,
        "model_traces": ranking["baseline"]["traces"],
        "model_fitted_at": time.time(),
        "intervals": 0,
        "contributions": contributions,
        "graph": [],
        "lead_service": lead,
        "services": ranking["services"][:5],
        "drift": ranking["shift"]["drift"],
        "baseline": ranking["baseline"],
        "summary": regression_text(entry, ranking, score),
    }


def regression_text(entry: str, ranking: dict[str, Any], score: float) -> str:
    """One human line: who moved, by how much, how surely."""
    parts = []
    for n in ranking["shift"]["nodes"][:3]:
        parts.append(f"{n['node']} median {n['baseline_median_ms']:.1f} -> {n['window_median_ms']:.1f} ms, "
                     f"p99 {n['baseline_p99_ms']:.1f} -> {n['window_p99_ms']:.1f} ms")
    lead = ranking["services"][0]["service"] if ranking["services"] else "?"
    return (f"Regression of {entry}: {lead} (shift score {score:.1f} nats, rarer than 1 in "
            f"{math.exp(min(score, 700.0)):.3g}; drift x{ranking['shift']['drift']:.2f}): " + "; ".join(parts))


class RegressionWatch:
    """A thread that checks every entry point's recent window once a minute."""

    def __init__(self, store: TraceStore, entries: Callable[[], list[str]], publish: Callable[[dict[str, Any]], None],
                 verdicts: incident_ranking.MinuteVerdicts, min_score: float = ALERT_SCORE, window_ns: int = WINDOW_NS,
                 interval_s: float = INTERVAL_S, results: ResultsStore | None = None):
        self.store = store
        self.entries = entries
        self.publish = publish
        self.verdicts = verdicts
        self.min_score = min_score
        self.window_ns = window_ns
        self.interval_s = interval_s
        self._found: deque[dict[str, Any]] = deque(maxlen=MAX_KEPT)
        self.results = results  # keeps each finding (table regressions, source "watch"): listed after a restart
        if results is not None:
            self._found.extend(r.payload for r in results.regressions(source="watch", limit=MAX_KEPT))
        self._open: dict[tuple[str, str | None], int] = {}  # (entry, lead service) -> last window end seen
        self._lock = threading.Lock()
        self.counters = {"checks": 0, "regressions": 0, "published": 0, "errors": 0}
        self._worker = BackgroundWorker[None]("whyslow-watch", periodic=self.check, interval_s=interval_s,
                                              on_error=self._failed, logger=log)

    def _failed(self, exc: Exception) -> None:
        self.counters["errors"] += 1  # logged by the worker, which keeps running

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._worker.stop(timeout, drain=False)

    def check(self, now_ns: int | None = None) -> list[dict[str, Any]]:
        """Compare each entry point's window ending at ``now_ns`` (default: now) with its baseline; returns the
        regressions found (published when new)."""
        hi = time.time_ns() if now_ns is None else now_ns
        lo = hi - self.window_ns
        found = []
        for entry in self.entries():
            periods = incident_ranking.read_periods(self.store, [entry], *incident_ranking.window_bounds(lo, hi))
            if not periods.window:
                continue
            ranking = incident_ranking.rank_window([], periods, min_score=self.min_score, attribution=False,
                                                   verdicts=self.verdicts)
            self.counters["checks"] += 1
            if not ranking["shift"]["changed"]:
                continue
            payload = regression_payload(entry, ranking, lo, hi, self.min_score)
            found.append(payload)
            key = (entry, payload["lead_service"])
            if self.results is not None:
                self.results.save_regression(RegressionRecord(f"watch:{entry}:{payload['lead_service']}:{lo}", "watch",
                                                              entry, lo, hi, payload))
            with self._lock:
                self._found.appendleft(payload)
                fresh = key not in self._open or self._open[key] < lo  # quiet for a window: a new regression
                self._open[key] = hi
            self.counters["regressions"] += 1
            if fresh:
                log.info("%s", payload["summary"])
                self.counters["published"] += 1
                self.publish(payload)
        return found

    def recent(self, entry: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Detected regressions, newest first."""
        with self._lock:
            rows = [p for p in self._found if entry is None or p["entry"] == entry]
        return rows[:limit]
