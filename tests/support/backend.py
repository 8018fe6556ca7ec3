"""What the backend tests share: the live shop's tokens and sizes, and a stand-in for Grafana's annotation API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

AUTH_TOKEN = "test-auth-token-7f3a9c"
GRAFANA_TOKEN = "glsa_testGrafanaToken_5d2e"
NORMAL_TRACES = 160
SLOW_MS = 400.0


class GrafanaStandIn:
    """A local HTTP stand-in for Grafana's POST /api/annotations that validates every request's shape
    (Grafana HTTP API: time in ms, tags list of strings, text string, optional dashboardUID / panelId,
    service-account bearer token). `fail_first` answers 503 to the first N requests (retry tests)."""

    def __init__(self, token: str, fail_first: int = 0):
        self.token = token
        self.fail_first = fail_first
        self.received: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.attempts = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                stand_in.attempts += 1
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if self.path != "/api/annotations":
                    return self._answer(404, {"message": "not found"})
                if self.headers.get("Authorization") != f"Bearer {stand_in.token}":
                    stand_in.problems.append("bad authorization header")
                    return self._answer(401, {"message": "Unauthorized"})
                if not self.headers.get("Content-Type", "").startswith("application/json"):
                    stand_in.problems.append("content type")
                    return self._answer(415, {"message": "json expected"})
                if stand_in.fail_first > 0:
                    stand_in.fail_first -= 1
                    return self._answer(503, {"message": "try later"})
                try:
                    body = json.loads(raw)
                    stand_in.validate(body)
                except (ValueError, AssertionError) as exc:
                    stand_in.problems.append(str(exc))
                    return self._answer(400, {"message": "bad request"})
                stand_in.received.append(body)
                self._answer(200, {"message": "Annotation added", "id": len(stand_in.received)})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def validate(body: Any) -> None:
        assert isinstance(body, dict), "body must be an object"
        allowed = {"dashboardUID", "dashboardId", "panelId", "time", "timeEnd", "tags", "text"}
        assert set(body) <= allowed, f"unexpected fields {set(body) - allowed}"
        assert isinstance(body.get("text"), str) and body["text"], "text required"
        assert isinstance(body.get("time"), int) and body["time"] > 1_000_000_000_000, "time must be epoch ms"
        if "timeEnd" in body:
            assert isinstance(body["timeEnd"], int) and body["timeEnd"] >= body["time"], "timeEnd"
        assert isinstance(body.get("tags"), list) and all(isinstance(t, str) for t in body["tags"]), "tags"
        if "dashboardUID" in body:
            assert isinstance(body["dashboardUID"], str), "dashboardUID"
        if "panelId" in body:
            assert isinstance(body["panelId"], int), "panelId"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
