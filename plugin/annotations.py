"""Push explained outliers to Grafana as annotations (POST /api/annotations, service-account token).

A bounded queue and one sender thread (a `BackgroundWorker`): `submit` never blocks (a full queue drops and counts);
failed requests are retried with exponential backoff; the token is sent only in the Authorization
header and never appears in logs or exceptions.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from collector_processor.worker import BackgroundWorker
from plugin.explain import summary_text, top_contributors
from plugin.payloads import ExplanationPayload

if TYPE_CHECKING:
    from plugin.metrics import ServerMetrics

log = logging.getLogger("whyslow.annotations")


def annotation_body(payload: ExplanationPayload, dashboard_uid: str | None, panel_id: int | None) -> dict[str, Any]:
    """Grafana's POST /api/annotations body for one explained outlier."""
    top = top_contributors(payload, 3)
    tags = ["whyslow"]
    if top:
        tags.append(f"root-cause:{top[0]['service']}")
    tags.append(f"entry:{payload['entry']}")
    body: dict[str, Any] = {
        "time": int(payload.get("time_ms") or int(time.time() * 1000)),
        "tags": tags,
        "text": f"Slow trace {payload['trace_id']}: {summary_text(payload)}",
    }
    end_ms = body["time"] + int(round(payload.get("target_latency_ms") or 0))
    if end_ms > body["time"]:
        body["timeEnd"] = end_ms
    if dashboard_uid:
        body["dashboardUID"] = dashboard_uid
    if panel_id is not None:
        body["panelId"] = int(panel_id)
    return body


class AnnotationPusher:
    """Background sender of Grafana annotations with retry and exponential backoff."""

    def __init__(
        self,
        url: str,
        token: str | None,
        dashboard_uid: str | None = None,
        panel_id: int | None = None,
        queue_size: int = 1000,
        retries: int = 5,
        metrics: ServerMetrics | None = None,
        min_interval_s: float = 0.0,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 5.0,
    ):
        self.endpoint = url.rstrip("/") + "/api/annotations"
        self._token = token
        self.dashboard_uid = dashboard_uid
        self.panel_id = panel_id
        self.retries = retries
        self.metrics = metrics
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._worker = BackgroundWorker[dict[str, Any]]("whyslow-annotations", self._send_all,
                                                        max_queue=queue_size, logger=log)
        self.min_interval_s = min_interval_s
        self._last: dict[tuple[str, str], float] = {}
        self._last_lock = threading.Lock()
        self.counts = {"sent": 0, "failed": 0, "dropped": 0, "retried": 0, "suppressed": 0}

    def __repr__(self) -> str:  # never show the token
        return f"AnnotationPusher({self.endpoint!r})"

    def submit(self, payload: ExplanationPayload) -> bool:
        """Queue an explained outlier; False (and counted) when the queue is full, or when the same entry point
        with the same root-cause service was annotated less than `min_interval_s` ago (an incident makes
        one annotation a minute per cause, not one per slow request)."""
        top = top_contributors(payload, 1)
        key = (str(payload.get("entry")), top[0]["service"] if top else "")
        if self.min_interval_s > 0:
            now = time.monotonic()
            with self._last_lock:
                last = self._last.get(key)
                if last is not None and now - last < self.min_interval_s:
                    suppress = True
                else:
                    suppress = False
                    self._last[key] = now
            if suppress:
                self._count("suppressed")
                return False
        if self._worker.submit(annotation_body(payload, self.dashboard_uid, self.panel_id)):
            return True
        self._count("dropped")
        return False

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is queued (bounded by timeout; a retry still waiting then gives up), then stop."""
        self._worker.stop(timeout)

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        if self.metrics is not None:
            self.metrics.annotations.labels(outcome).inc()

    def _send_all(self, bodies: list[dict[str, Any]]) -> None:
        for body in bodies:
            self._send(body)

    def _send(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                self._count("sent")
                return
            except urllib.error.HTTPError as exc:
                status = exc.code
                reason = f"HTTP {status}"
                retryable = status == 429 or status >= 500
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                reason = type(exc).__name__ if not isinstance(exc, urllib.error.URLError) else "connection failed"
                retryable = True
            if not retryable or attempt == self.retries or self._worker.stopping:
                log.warning("annotation to %s failed (%s); giving up", self.endpoint, reason)
                self._count("failed")
                return
            self._count("retried")
            log.info("annotation to %s failed (%s); retrying in %.1fs", self.endpoint, reason, delay)
            if self._worker.sleep(delay):
                log.warning("annotation to %s not sent: shutting down", self.endpoint)
                self._count("failed")
                return
            delay = min(delay * 2, self.max_backoff_s)
