"""Backend test fixtures: the repository root on sys.path so `tests.support` imports."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from plugin.grpc_build import require_stubs  # noqa: E402

require_stubs()  # the test modules import the generated stubs: `make proto` (make test runs it) builds them

import threading  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from plugin.demo.shop_traffic import ENTRY, ShopTraffic  # noqa: E402
from tests.support.backend import AUTH_TOKEN, GRAFANA_TOKEN, NORMAL_TRACES, SLOW_MS, GrafanaStandIn  # noqa: E402
from tests.support.serve import ServeProcess  # noqa: E402


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
