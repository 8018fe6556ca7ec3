"""Backend test fixtures: the repository root on sys.path so `tests.serve_helpers` / `tests.traffic` import."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from plugin.grpc_build import ensure_generated  # noqa: E402

ensure_generated()  # the test modules import the generated stubs (a fresh clone has none yet)

import json  # noqa: E402
import threading  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from tests.serve_helpers import ServeProcess  # noqa: E402
from tests.traffic import ENTRY, ShopTraffic  # noqa: E402

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


@dataclass
class Shop:
    """A live `whyslow serve` that has learned the shop and explained slow traces."""

    srv: ServeProcess
    grafana: GrafanaStandIn
    traffic: ShopTraffic
    normal: list[Any]
    slow: dict[str, list[Any]]
    home: list[Any]
    watched: list[Any] = field(default_factory=list)
    watch_errors: list[str] = field(default_factory=list)

    @property
    def slow_ids(self) -> list[str]:
        return [s.trace_id for sent in self.slow.values() for s in sent]

    def outlier_ids(self) -> set[str]:
        status, body = self.srv.get("/api/v1/outliers?limit=1000")
        return {o["trace_id"] for o in body["outliers"]} if status == 200 else set()


def _model_ready(srv: ServeProcess, entry: str) -> bool:
    status, body = srv.get("/api/v1/status")
    return status == 200 and any(m["entry"] == entry and m["state"] == "ready" for m in body["models"])


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Start serve (auth on, annotations to the stand-in), teach it the shop, then send slow traces with
    payments slow and with cart slow while a gRPC WatchOutliers stream listens."""
    import grpc

    from plugin.grpc_gen.whyslow.v1 import whyslow_pb2 as pb
    from plugin.grpc_gen.whyslow.v1 import whyslow_pb2_grpc as pb_grpc

    base = tmp_path_factory.mktemp("shop")
    grafana = GrafanaStandIn(GRAFANA_TOKEN, fail_first=1)
    srv = ServeProcess(
        base / "data",
        env={"WHYSLOW_GRAFANA_TOKEN": GRAFANA_TOKEN},
        auth_token=AUTH_TOKEN,
        min_traces=100,
        window=1000,
        refit_interval_s=3600,
        trace_timeout_s=0.3,
        grafana_url=grafana.url,
        grafana_dashboard_uid="whyslow-rca",
        grafana_panel_id=2,
        annotation_min_interval_s=0,  # one annotation per outlier (the default coalesces per minute)
    ).start()
    traffic = ShopTraffic(srv.otlp_grpc, seed=11, headers={"authorization": f"Bearer {AUTH_TOKEN}"})
    try:
        normal = traffic.send(NORMAL_TRACES)
        home = traffic.send_home(3)
        srv.wait_for(lambda: _model_ready(srv, ENTRY), timeout=60)
        shop = Shop(srv, grafana, traffic, normal, {}, home)
        channel = grpc.insecure_channel(srv.grpc_target)
        stub = pb_grpc.WhySlowStub(channel)
        stream = stub.WatchOutliers(pb.WatchOutliersRequest(), metadata=[("authorization", f"Bearer {AUTH_TOKEN}")])

        def watch() -> None:
            try:
                for msg in stream:
                    shop.watched.append(msg)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    shop.watch_errors.append(str(exc.code()))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        import time

        time.sleep(0.5)  # the stream is subscribed before the outliers arrive
        shop.slow["payments"] = traffic.send(3, slow="payments", slow_ms=SLOW_MS)
        time.sleep(0.5)  # the two batches do not overlap in time (time-range filters are tested)
        shop.slow["cart"] = traffic.send(3, slow="cart", slow_ms=SLOW_MS)
        srv.wait_for(lambda: set(shop.slow_ids) <= shop.outlier_ids(), timeout=90)
        srv.wait_for(lambda: len(shop.watched) >= len(shop.slow_ids), timeout=30)
        stream.cancel()
        channel.close()
        yield shop
    finally:
        traffic.close()
        srv.stop()
        grafana.close()
