"""plugin.grpc_api: the explanation payload as a protobuf message, and the gRPC server on real stores: bearer auth
(health public), service errors mapped to status codes, explanations, outliers, graph, watchers."""

from __future__ import annotations

import math
import threading

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from collector_processor import open_store
from plugin.config import ServeConfig
from plugin.detector import OutlierHub
from plugin.explain import Explainer, summary_text
from plugin.grpc_api import GrpcApi, explanation_message
from plugin.grpc_gen.whyslow.v1 import whyslow_pb2 as pb
from plugin.grpc_gen.whyslow.v1 import whyslow_pb2_grpc as pb_grpc
from plugin.metrics import ServerMetrics
from plugin.models import ModelManager
from plugin.results_store import follow_retention
from plugin.service import WhySlowService
from plugin.sqlite_results import open_results_store
from tests.support.analysed import DB, ENTRY, entry_db_batch, normal_batch, trace_id

TOKEN = "grpc-test-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
SLOW = 1001


@pytest.fixture
def api(tmp_path):
    traces, results = open_store(tmp_path), open_results_store(tmp_path)
    follow_retention(traces, results)
    traces.write_batch(normal_batch(200))
    traces.write_batch(entry_db_batch([SLOW], np.array([250.0]), np.array([5.0])))
    config = ServeConfig(data_dir=str(tmp_path), min_traces=100, threshold=math.log(10_000))
    models = ModelManager(traces, results, config, ServerMetrics())
    models.load()
    hub = OutlierHub()
    service = WhySlowService(traces, results, models, Explainer(traces, results, models, config), config)
    server = GrpcApi(service, hub, "127.0.0.1:0", TOKEN, max_watchers=1)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield pb_grpc.WhySlowStub(channel), channel, models, hub, server
    channel.close()
    hub.close()
    server.stop(0)
    results.close()
    traces.close()


def code_of(call, *args, **kwargs) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call(*args, **kwargs)
    return err.value.code()


def test_explanation_message_carries_every_payload_field() -> None:
    payload = {
        "version": 1, "trace_id": "ab" * 16, "entry": ENTRY, "start_unix_nano": 17, "time_ms": 0,
        "target_latency_ms": 255.0, "outlier_score": 12.5, "rarer_than": math.exp(12.5), "is_outlier": True,
        "threshold": 9.2, "model_traces": 200, "model_fitted_at": 1.5, "intervals": 0, "attribution_seconds": 0.1,
        "contributions": [
            {"rank": 1, "node": DB, "service": "db", "operation": "SELECT", "kind": "db", "contribution": 11.0,
             "share": 0.88, "contribution_lo": None, "contribution_hi": None, "own_latency_ms": 250.0,
             "node_latency_ms": 250.0, "counterfactual_latency_ms": 25.0},
            {"rank": 2, "node": ENTRY, "service": "shop", "operation": "GET /cart", "kind": "span",
             "contribution": 1.5, "share": 0.12, "contribution_lo": 1.0, "contribution_hi": 2.0,
             "own_latency_ms": None, "node_latency_ms": 255.0, "counterfactual_latency_ms": None},
        ],
        "graph": [{"source": DB, "target": ENTRY, "source_contribution": 11.0}],
    }
    msg = explanation_message(payload)  # type: ignore[arg-type]
    assert (msg.trace_id, msg.entry, msg.start_unix_nano, msg.outlier_score, msg.is_outlier, msg.model_traces) == (
        "ab" * 16, ENTRY, 17, 12.5, True, 200)
    assert msg.summary == summary_text(payload)  # type: ignore[arg-type]
    first, second = msg.contributions
    assert (first.node, first.rank, first.share, first.counterfactual_latency_ms) == (DB, 1, 0.88, 25.0)
    assert not first.HasField("contribution_lo") and second.HasField("contribution_lo")
    assert not second.HasField("own_latency_ms") and second.contribution_hi == 2.0
    assert [(e.source, e.target, e.source_contribution) for e in msg.graph] == [(DB, ENTRY, 11.0)]


def test_health_is_public_and_everything_else_needs_the_token(api) -> None:
    stub, channel, *_ = api
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    request = pb.ExplainTraceRequest(trace_id=trace_id(SLOW))
    assert code_of(stub.ExplainTrace, request, timeout=5) == grpc.StatusCode.UNAUTHENTICATED
    wrong = (("authorization", "Bearer nope"),)
    assert code_of(stub.ExplainTrace, request, timeout=5, metadata=wrong) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(stub.GetCausalGraph, pb.GetCausalGraphRequest(), timeout=5) == grpc.StatusCode.UNAUTHENTICATED


def test_service_errors_map_to_status_codes_and_answers_follow_the_model(api) -> None:
    stub, _channel, models, *_ = api
    explain = stub.ExplainTrace
    assert code_of(explain, pb.ExplainTraceRequest(trace_id="xyz"), timeout=5, metadata=AUTH) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(explain, pb.ExplainTraceRequest(trace_id="f" * 32), timeout=5, metadata=AUTH) == \
        grpc.StatusCode.NOT_FOUND
    assert code_of(explain, pb.ExplainTraceRequest(trace_id=trace_id(SLOW)), timeout=5, metadata=AUTH) == \
        grpc.StatusCode.FAILED_PRECONDITION  # still learning
    graph = stub.GetCausalGraph(pb.GetCausalGraphRequest(), timeout=5, metadata=AUTH)
    assert graph.entry == ENTRY and graph.model == "learning" and {n.id for n in graph.nodes} == {ENTRY, DB}
    assert [(e.source, e.target) for e in graph.causal_edges] == [(DB, ENTRY)]
    assert code_of(stub.GetCausalGraph, pb.GetCausalGraphRequest(entry="web:GET /"), timeout=5,
                   metadata=AUTH) == grpc.StatusCode.NOT_FOUND
    models.fit(ENTRY)
    expl = explain(pb.ExplainTraceRequest(trace_id=trace_id(SLOW)), timeout=30, metadata=AUTH)
    assert expl.is_outlier and expl.contributions[0].node == DB
    listed = stub.ListOutliers(pb.ListOutliersRequest(), timeout=5, metadata=AUTH).outliers
    assert [(o.trace_id, o.root_cause_node) for o in listed] == [(trace_id(SLOW), DB)]
    assert code_of(stub.ListOutliers, pb.ListOutliersRequest(limit=100_000), timeout=5, metadata=AUTH) == \
        grpc.StatusCode.INVALID_ARGUMENT


def test_watchers_get_published_outliers_and_are_bounded(api) -> None:
    stub, _channel, _models, hub, _server = api
    stream = stub.WatchOutliers(pb.WatchOutliersRequest(min_score=5.0), metadata=AUTH, timeout=20)
    got: list[pb.Explanation] = []
    reader = threading.Thread(target=lambda: got.append(next(stream)))
    reader.start()
    base = {"version": 1, "entry": ENTRY, "start_unix_nano": 0, "time_ms": 0, "target_latency_ms": 1.0,
            "rarer_than": 1.0, "is_outlier": True, "threshold": 9.2, "model_traces": 1, "model_fitted_at": 0.0,
            "intervals": 0, "attribution_seconds": 0.0, "contributions": [], "graph": []}
    for _ in range(100):  # until the stream has subscribed
        hub.publish({**base, "trace_id": "1" * 32, "outlier_score": 2.0})  # below min_score: filtered
        hub.publish({**base, "trace_id": "2" * 32, "outlier_score": 9.0})
        reader.join(0.1)
        if got:
            break
    assert got and got[0].trace_id == "2" * 32
    second = stub.WatchOutliers(pb.WatchOutliersRequest(), metadata=AUTH, timeout=5)
    with pytest.raises(grpc.RpcError) as err:
        next(second)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # max_watchers=1
    stream.cancel()
