"""Minimal REST client of a running whyslow server (standard library only): status, outliers, explanations."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ApiError(RuntimeError):
    """The server answered with an error, or could not be reached."""


class RestClient:
    """Talks to ``base_url`` (``http://host:port``) of the whyslow REST API."""

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str, **query: Any) -> str:
        q = {k: v for k, v in query.items() if v is not None}
        return self.base_url + path + ("?" + urllib.parse.urlencode(q) if q else "")

    def get(self, path: str, **query: Any) -> Any:
        req = urllib.request.Request(self.url(path, **query), headers=self._headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise ApiError(f"GET {path} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ApiError(f"GET {path} failed: {exc}") from None

    def healthy(self) -> bool:
        try:
            self.get("/healthz")
            return True
        except ApiError:
            return False

    def status(self) -> dict[str, Any]:
        return self.get("/api/v1/status")

    def outliers(self, limit: int = 1000, from_ms: int | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Explained outliers, newest first; ``from_ms``: only traces that started at or after (unix ms);
        ``kind``: only slow (``latency``) or failed (``error``) requests."""
        data = self.get("/api/v1/outliers", **{"limit": limit, "from": from_ms, "kind": kind})
        return data.get("outliers", []) if isinstance(data, dict) else list(data)

    def rca(self, trace_id: str, kind: str | None = None) -> dict[str, Any]:
        return self.get(f"/api/v1/traces/{trace_id}/rca", kind=kind)

    def regression(self, **query: Any) -> dict[str, Any]:
        """``GET /api/v1/regression`` (entry, from, to, baseline_from, baseline_to, stat, intervals)."""
        return self.get("/api/v1/regression", **query)

    def traces_stored(self, entry: str | None = None) -> int:
        """Traces the server has stored for ``entry`` (or its only entry point)."""
        return int(self.get("/api/v1/graph", entry=entry).get("traces", 0))

    def model_state(self, entry: str | None = None) -> tuple[str, dict[str, Any] | None]:
        """``("ready" | "learning" | "absent", model status)`` of ``entry`` (or of the only entry point)."""
        models = self.status().get("models", [])
        for m in models:
            if entry is None or m.get("entry") == entry:
                return str(m.get("state")), m
        return "absent", None
