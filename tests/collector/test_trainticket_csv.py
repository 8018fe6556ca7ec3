"""Real Train Ticket spans (Nezha): CSV -> OTLP requests (csv_spans) -> real gRPC -> pipeline -> store; the call
graph is checked against the services and parent links of the CSV itself."""

from __future__ import annotations

import grpc
import networkx as nx
import pandas as pd
from conftest import shared_dataset
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from collector_processor import OtlpGrpcReceiver, csv_spans

from .conftest import complete_all


def test_trainticket_csv_through_grpc(pipeline, store):
    root = shared_dataset("nezha_trainticket")
    path = root / "construct_data" / "2023-01-30" / "trace" / "11_39_trace.csv"
    raw = pd.read_csv(path)
    g = OtlpGrpcReceiver(pipeline, "127.0.0.1:0").start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{g.port}") as ch:
            stub = TraceServiceStub(ch)
            for req in csv_spans.iter_otlp_requests([path], batch_size=500):
                assert not stub.Export(req, timeout=30).HasField("partial_success")
    finally:
        g.stop(0)
    complete_all(pipeline)
    st = pipeline.stats()
    assert st["spans_received"] == len(raw) and st["spans_rejected"] == 0 and st["spans_dropped"] == 0
    dup = int(raw.duplicated(["TraceID", "SpanID"]).sum())
    assert st["spans_duplicate"] == dup and st["spans_stored"] == len(raw) - dup
    assert st["traces_stored"] == raw["TraceID"].nunique() and st["traces_incomplete"] == 0

    services = {csv_spans.service_of_pod(p) for p in raw["PodName"]}
    # entry points: the gateway's catch-all root, qualified by the first endpoint behind it
    entries = store.entry_points()
    assert entries and all(e.startswith("ts-gateway-service:/* -> /api/") for e in entries)
    seen_services: set[str] = set()
    for e in entries:
        cg = store.graph(e)
        assert nx.is_directed_acyclic_graph(cg.causal_graph())
        seen_services |= {m.service for m in cg.nodes.values() if m.kind in ("span", "call_gap")}
        # every call edge into a service is a call-gap node whose only callee is that service's server span
        for _, b in cg.call_edges:
            if b.startswith("net:"):
                callee = [y for x, y in cg.call_edges if x == b]
                assert callee and all(cg.nodes[y].service == cg.nodes[b].service for y in callee)
        assert any(m.kind == "db" and m.service == "mysql" for m in cg.nodes.values()) or len(cg.nodes) < 10
    assert seen_services == services

    # every cross-service parent link of the CSV appears as caller -> net:callee -> callee
    raw["service"] = raw["PodName"].map(csv_spans.service_of_pod)
    parent = raw.set_index(["TraceID", "SpanID"])["service"]
    parent = parent[~parent.index.duplicated()]
    keys = list(zip(raw["TraceID"], raw["ParentID"], strict=True))
    raw["parent_service"] = [parent.get(k) for k in keys]
    cross = raw[raw["parent_service"].notna() & (raw["parent_service"] != raw["service"])]
    want = {(p, c) for p, c in zip(cross["parent_service"], cross["service"], strict=True)}
    got = set()
    for e in entries:
        cg = store.graph(e)
        for a, b in cg.call_edges:
            if b.startswith("net:"):
                got.add((cg.nodes[a].service, cg.nodes[b].service))
    assert want == got

    # features of the largest entry: one row per trace, latencies consistent with the CSV root durations
    e = entries[0]
    df = store.features(e)
    dur = raw[raw["ParentID"] == "root"].set_index("TraceID")["Duration"] / 1000.0
    assert (df["__duration_ms"] - dur.loc[df.index]).abs().max() < 0.01
    assert (df[e] == df["__duration_ms"]).all()
