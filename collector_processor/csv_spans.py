"""CSV span tables (Nezha / Train Ticket style) -> OTLP ExportTraceServiceRequest batches.

Input columns: ``TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano[,Duration]``
(``ParentID == "root"`` marks a root). What the table does not say is inferred, and these are the assumptions:
- service = pod name without its last two ``-`` segments (Kubernetes ``<deployment>-<replicaset>-<pod>``);
  the pod name is kept as resource attribute ``k8s.pod.name``;
- SERVER: a root span, or a span whose parent belongs to another service (the entry of a request into a service);
- CLIENT: a span with a child in another service (an outgoing call), or an ``HTTP <METHOD>`` span (a call whose
  callee left no span), or an SQL statement span (name starting with SELECT/INSERT/UPDATE/DELETE/...), which
  also gets ``db.system = "mysql"`` (Train Ticket's database) so that it becomes a database leaf node;
- everything else INTERNAL; status is unset (the tables carry no error flag); ``Duration`` is ignored
  (start/end are exact).
Kinds are inferred over all files of one call together (a parent and child may sit in neighbouring files).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

COLUMNS = ["TraceID", "SpanID", "ParentID", "PodName", "OperationName", "StartTimeUnixNano", "EndTimeUnixNano"]
DB_SYSTEM = "mysql"
_SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|CALL|CREATE|DROP|ALTER|TRUNCATE)\b", re.IGNORECASE)
_HTTP_CLIENT = re.compile(r"^HTTP (GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS)$")


def service_of_pod(pod: str) -> str:
    """``ts-basic-service-5dc8d4f9fd-llznp`` -> ``ts-basic-service`` (names with < 3 segments are kept)."""
    parts = str(pod).rsplit("-", 2)
    return parts[0] if len(parts) == 3 and parts[0] else str(pod)


def load_span_table(csv_paths: Iterable[str | Path]) -> pd.DataFrame:
    """Read the CSV files and add ``service``, ``kind`` (OTLP span kind int) and ``db`` (bool) columns."""
    frames = [pd.read_csv(p, usecols=COLUMNS, dtype={"TraceID": str, "SpanID": str, "ParentID": str,
                                                     "PodName": str, "OperationName": str}) for p in csv_paths]
    if not frames:
        return pd.DataFrame(columns=[*COLUMNS, "service", "kind", "db"])
    df = pd.concat(frames, ignore_index=True)
    df = df.dropna(subset=["TraceID", "SpanID"]).reset_index(drop=True)
    df["ParentID"] = df["ParentID"].fillna("root")
    df["OperationName"] = df["OperationName"].fillna("")
    df["PodName"] = df["PodName"].fillna("")
    pods = df["PodName"].unique()
    df["service"] = df["PodName"].map({p: service_of_pod(p) for p in pods})
    is_root = df["ParentID"].eq("root").to_numpy()
    key = df["TraceID"] + ":" + df["SpanID"]
    parent_key = df["TraceID"] + ":" + df["ParentID"]
    svc_of = pd.Series(df["service"].to_numpy(), index=key.to_numpy())
    svc_of = svc_of[~svc_of.index.duplicated()]
    parent_svc = parent_key.map(svc_of)
    has_parent = parent_svc.notna().to_numpy()
    cross = has_parent & (parent_svc.to_numpy() != df["service"].to_numpy())
    server = is_root | cross
    callers = set(parent_key[cross])
    has_cross_child = key.isin(callers).to_numpy()
    names = df["OperationName"]
    db = names.str.match(_SQL).to_numpy(dtype=bool)
    http_client = names.str.match(_HTTP_CLIENT).to_numpy(dtype=bool)
    client = ~server & (has_cross_child | db | http_client)
    kind = np.full(len(df), Span.SPAN_KIND_INTERNAL, dtype=np.int64)
    kind[client] = Span.SPAN_KIND_CLIENT
    kind[server] = Span.SPAN_KIND_SERVER
    df["kind"] = kind
    df["db"] = db & client
    return df


def _id(hex_str: str) -> bytes:
    try:
        return bytes.fromhex(hex_str)
    except (ValueError, TypeError):
        return b""  # the pipeline rejects it as an invalid id (counted)


def iter_otlp_requests(csv_paths: Iterable[str | Path], batch_size: int = 1000) -> Iterator[ExportTraceServiceRequest]:
    """Yield OTLP trace export requests of at most ``batch_size`` spans, in file order, one ResourceSpans per
    (service, pod) in each request."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    df = load_span_table(csv_paths)
    n = len(df)
    tids = df["TraceID"].to_numpy()
    sids = df["SpanID"].to_numpy()
    pids = df["ParentID"].to_numpy()
    pods = df["PodName"].to_numpy()
    svcs = df["service"].to_numpy()
    names = df["OperationName"].to_numpy()
    starts = df["StartTimeUnixNano"].to_numpy(dtype=np.int64)
    ends = df["EndTimeUnixNano"].to_numpy(dtype=np.int64)
    kinds = df["kind"].to_numpy()
    dbs = df["db"].to_numpy()
    db_attr = KeyValue(key="db.system", value=AnyValue(string_value=DB_SYSTEM))
    for lo in range(0, n, batch_size):
        req = ExportTraceServiceRequest()
        scopes: dict[str, object] = {}
        for i in range(lo, min(lo + batch_size, n)):
            pod = pods[i]
            scope = scopes.get(pod)
            if scope is None:
                rs = req.resource_spans.add()
                rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=svcs[i]))
                rs.resource.attributes.add(key="k8s.pod.name", value=AnyValue(string_value=pod))
                scope = rs.scope_spans.add()
                scope.scope.name = "csv_spans"
                scopes[pod] = scope
            sp = scope.spans.add(  # type: ignore[attr-defined]
                trace_id=_id(tids[i]), span_id=_id(sids[i]),
                parent_span_id=b"" if pids[i] == "root" else _id(pids[i]),
                name=names[i], kind=int(kinds[i]),
                start_time_unix_nano=int(starts[i]), end_time_unix_nano=int(ends[i]))
            if dbs[i]:
                sp.attributes.append(db_attr)
        yield req


def requests_from_csv(path: str | Path, batch_size: int = 1000) -> Iterator[ExportTraceServiceRequest]:
    """OTLP requests of one CSV file (see :func:`iter_otlp_requests`)."""
    return iter_otlp_requests([path], batch_size)
