"""In-process `WhySlowServer` (the API `whyslow demo` uses): bound ports, web UI, CORS, graceful shutdown
that keeps every acknowledged span."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from urllib.parse import quote

import numpy as np

from plugin.config import ServeConfig
from plugin.demo.shop_traffic import ENTRY, SPANS_PER_TRACE, ShopTraffic
from plugin.rest import DEFAULT_UI_DIR
from plugin.server import WhySlowServer
from tests.support.serve import ServeProcess, wait_until


def _config(tmp_path, **kw) -> ServeConfig:
    return ServeConfig(data_dir=str(tmp_path / "data"), otlp_grpc="127.0.0.1:0", otlp_http="127.0.0.1:0",
                       http="127.0.0.1:0", grpc="127.0.0.1:0", **kw).validate()


def _get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_in_process_server_ui_and_cors(tmp_path):
    ui = tmp_path / "ui"
    ui.mkdir()
    (ui / "index.html").write_text("<html><body>whyslow panel page</body></html>")
    (ui / "app.js").write_text("console.log('panel')")
    with WhySlowServer(_config(tmp_path, ui_dir=str(ui), cors_origins=["http://localhost:3000"])) as server:
        assert server.ready and all(port > 0 for port in server.ports.values())
        assert len(set(server.ports.values())) == 4
        base = server.url("http")
        status, headers, body = _get(base + "/ui/")
        assert status == 200 and b"whyslow panel page" in body
        status, headers, body = _get(base + "/ui/app.js")
        assert status == 200 and body == b"console.log('panel')"
        assert _get(base + "/ui/../secret")[0] == 404
        status, headers, _ = _get(base + "/healthz", {"Origin": "http://localhost:3000"})
        assert headers.get("Access-Control-Allow-Origin") == "http://localhost:3000"
        status, headers, _ = _get(base + "/healthz", {"Origin": "http://evil.example"})
        assert "Access-Control-Allow-Origin" not in headers
    assert not server.ready


def test_ui_not_built_page_and_cors_off(tmp_path):
    with WhySlowServer(_config(tmp_path)) as server:
        base = server.url("http")
        status, headers, body = _get(base + "/ui/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        if (DEFAULT_UI_DIR / "index.html").is_file():
            assert body == (DEFAULT_UI_DIR / "index.html").read_bytes()
        else:
            assert b"make panel" in body
        status, headers, _ = _get(base + "/healthz", {"Origin": "http://localhost:3000"})
        assert status == 200 and "Access-Control-Allow-Origin" not in headers


def test_sigterm_keeps_every_acknowledged_span(tmp_path):
    """Traces still buffered (long trace timeout) when SIGTERM arrives are completed and stored."""
    settings = dict(min_traces=100, trace_timeout_s=600)
    with ServeProcess(tmp_path / "data", **settings) as srv:
        traffic = ShopTraffic(srv.otlp_grpc, seed=3)
        traffic.send(25)
        traffic.close()

        def accepted() -> bool:
            text = srv.get("/metrics")[1]
            return f'whyslow_spans_total{{outcome="accepted"}} {25 * SPANS_PER_TRACE}.0' in text

        srv.wait_for(accepted, timeout=30)
        assert srv.get("/api/v1/status")[1]["pipeline"]["traces_stored"] == 0  # all still buffered
    assert srv.returncode == 0
    with ServeProcess(tmp_path / "data", **settings) as again:
        status, graph = again.get("/api/v1/graph?entry=" + quote(ENTRY))
        assert status == 200 and graph["traces"] == 25
        status, st = again.get("/api/v1/status")
        assert st["models"][0]["traces_seen"] == 25


def test_openapi_served_in_process(tmp_path):
    with WhySlowServer(_config(tmp_path, auth_token="tok-123")) as server:
        status, _, body = _get(server.url("http") + "/openapi.json")
        assert status == 200 and json.loads(body)["info"]["title"] == "whyslow API"
        assert _get(server.url("http") + "/api/v1/status")[0] == 401
        status, _, body = _get(server.url("http") + "/api/v1/status", {"Authorization": "Bearer tok-123"})
        assert status == 200 and json.loads(body)["models"] == []
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 10


def test_refit_in_background_excludes_outliers_and_keeps_serving(tmp_path, monkeypatch):
    """The model is refitted when the data doubled, on normal traces only; queries never wait for it."""
    from plugin import models

    monkeypatch.setattr(models, "EARLY_REFIT_S", 0.5)
    cfg = _config(tmp_path, min_traces=50, window=1000, refit_interval_s=3600, trace_timeout_s=0.2, threshold=9.21)
    with WhySlowServer(cfg) as server:
        traffic = ShopTraffic(server.url("otlp_grpc"), seed=21)
        try:
            traffic.send(60)
            first = wait_until(lambda: next((m for m in server.models.status() if m.state == "ready"), None))
            assert first.fits == 1 and first.rows == 60
            slow = traffic.send(4, slow="postgresql", slow_ms=300.0)
            wait_until(lambda: len(server.service.outliers()) == 4)
            traffic.send(60)
            second = wait_until(lambda: next((m for m in server.models.status() if m.fits == 2), None))
        finally:
            traffic.close()
        # refitted on the 120 normal traces: the 4 detected outliers were excluded from training
        assert second.rows == 120 and second.fitted_at > first.fitted_at
        for s in slow:
            expl = server.service.explain(s.trace_id)
            assert expl["contributions"][0]["service"] == "postgresql"
            assert expl["model_traces"] == 60  # persisted with the model that explained it


def test_bootstrap_intervals_on_demand(shop):
    s = shop.slow["payments"][0]
    status, expl = shop.srv.get(f"/api/v1/traces/{s.trace_id}/rca?intervals=4")
    assert status == 200 and expl["intervals"] == 4
    top = expl["contributions"][0]
    assert top["service"] == "payments"
    for c in expl["contributions"]:
        assert c["contribution_lo"] is not None and c["contribution_lo"] <= c["contribution_hi"]
    status, again = shop.srv.get(f"/api/v1/traces/{s.trace_id}/rca?intervals=4")
    assert again == expl  # cached


def test_new_dependency_triggers_refit(tmp_path, monkeypatch):
    """A new callee in the traces schedules a refit (even with a long refit interval); the refitted model
    includes it and ranks it first when it is the slow one."""
    from plugin import models

    monkeypatch.setattr(models, "EARLY_REFIT_S", 0.5)
    cfg = _config(tmp_path, min_traces=50, window=1000, refit_interval_s=3600, trace_timeout_s=0.2)
    with WhySlowServer(cfg) as server:
        traffic = ShopTraffic(server.url("otlp_grpc"), seed=8)
        try:
            traffic.send(60)
            first = wait_until(lambda: server.models.get(ENTRY))
            assert "fraud:POST /check" not in first.columns and first.rows == 60
            traffic.send(40, fraud=True)  # 100 traces seen < 2 x 60 rows: only the new nodes call for a refit
            second = wait_until(lambda: (m := server.models.get(ENTRY)) is not first and m)
            assert "fraud:POST /check" in second.columns and "net:fraud:POST /check" in second.columns
            slow = traffic.send(2, slow="fraud", slow_ms=300.0, fraud=True)
            # (some of the 40 traces with the new call may have been flagged by the first model: they are slower)
            wait_until(lambda: {s.trace_id for s in slow} <= {o["trace_id"] for o in server.service.outliers()})
        finally:
            traffic.close()
        for s in slow:
            assert server.service.explain(s.trace_id)["contributions"][0]["service"] == "fraud"


def test_internal_errors_are_json_without_traceback(tmp_path, caplog):
    """A broken store (closed under the running server) gives JSON 500s and panel error rows, no tracebacks."""
    with WhySlowServer(_config(tmp_path)) as server:
        server.store.close()
        base = server.url("http")
        status, headers, body = _get(base + "/api/v1/traces/" + "ab" * 16 + "/rca")
        assert status == 500 and headers["Content-Type"] == "application/json"
        message = json.loads(body)["error"]
        assert message.startswith("internal error (") and "Traceback" not in message
        req = urllib.request.Request(base + "/query", data=json.dumps(
            {"targets": [{"refId": "A", "target": "rca", "payload": {"traceId": "ab" * 16}}]}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            frames = json.loads(resp.read())
        assert frames[0]["rows"][0][0] == "error" and "Traceback" not in frames[0]["rows"][0][1]


def test_grpc_port_in_use_is_refused(tmp_path):
    """A gRPC API port another gRPC server listens on (SO_REUSEPORT by default) is an error, not silently shared."""
    from concurrent import futures

    import grpc
    import pytest

    other = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    try:
        cfg = ServeConfig(data_dir=str(tmp_path / "data"), otlp_grpc="127.0.0.1:0", otlp_http="127.0.0.1:0",
                          http="127.0.0.1:0", grpc=f"127.0.0.1:{port}").validate()
        with pytest.raises(OSError, match="gRPC API"):
            WhySlowServer(cfg).start()
    finally:
        other.stop(0)


def test_unusable_store_names_the_data_directory(tmp_path):
    """A corrupt (or read-only) SQLite file: the error says which data directory, not just 'file is not a database'."""
    import pytest

    data = tmp_path / "data"
    data.mkdir()
    (data / "whyslow.sqlite3").write_bytes(b"not a database " * 64)
    with pytest.raises(OSError, match=r"cannot open the data directory .*data \(file is not a database\)"):
        WhySlowServer(_config(tmp_path)).start()


def test_unusually_fast_traces_are_not_slow_outliers(tmp_path):
    """Outliers are one-sided: a trace far faster than normal (cart answering in ~1 ms) is scored near 0 and
    never listed, while a slow one is; the same fast trace would be a two-sided outlier."""
    import rca_engine
    from plugin.models import SCORE_BASE

    assert SCORE_BASE == "upper"
    cfg = _config(tmp_path, min_traces=80, window=1000, refit_interval_s=3600, trace_timeout_s=0.2, threshold=9.21)
    with WhySlowServer(cfg) as server:
        traffic = ShopTraffic(server.url("otlp_grpc"), seed=5)
        try:
            traffic.send(120)
            wait_until(lambda: next((m for m in server.models.status() if m.state == "ready"), None))
            fast = traffic.send(4, slow="cart", slow_ms=-14.0)
            slow = traffic.send(2, slow="cart", slow_ms=300.0)
            wait_until(lambda: len(server.service.outliers()) >= 2)
            wait_until(lambda: server.detector.pending == 0)
        finally:
            traffic.close()
        listed = {o["trace_id"] for o in server.service.outliers()}
        assert {s.trace_id for s in slow} <= listed
        assert not {f.trace_id for f in fast} & listed
        fitted = server.models.get(ENTRY)
        normal = fitted.model.training[:, fitted.model.index[ENTRY]]
        fast_latency = np.array([f.latency_ms for f in fast])
        assert fast_latency.max() < 0.8 * float(np.median(normal))
        two_sided = rca_engine.ITScorer("median", "fitted").fit(normal)
        assert two_sided.score(fast_latency).max() >= cfg.threshold  # two-sided scoring would have flagged them
