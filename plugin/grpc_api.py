"""gRPC query API (whyslow.v1.WhySlow) over the service layer, with health checking, reflection and
optional bearer-token auth (`authorization: Bearer <token>` metadata; the health service is exempt)."""

from __future__ import annotations

import hmac
import logging
import threading
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from plugin.grpc_build import require_stubs

require_stubs()  # generated at build time (make proto / the package build), never here

from plugin import validation  # noqa: E402
from plugin.detector import OutlierHub  # noqa: E402
from plugin.errors import InvalidArgument, NoModel, NotFound, ServiceError, Unauthenticated  # noqa: E402
from plugin.explain import summary_text  # noqa: E402
from plugin.grpc_gen.whyslow.v1 import whyslow_pb2 as pb  # noqa: E402
from plugin.grpc_gen.whyslow.v1 import whyslow_pb2_grpc as pb_grpc  # noqa: E402
from plugin.payloads import HubPayload  # noqa: E402
from plugin.service import WhySlowService  # noqa: E402

log = logging.getLogger("whyslow.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["WhySlow"].full_name
_CODES = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    NoModel: grpc.StatusCode.FAILED_PRECONDITION,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
}
_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/",)


def explanation_message(payload: HubPayload) -> pb.Explanation:
    contributions = [
        pb.Contribution(**{k: v for k, v in dict[str, Any](c).items() if v is not None})
        for c in payload["contributions"]
    ]
    return pb.Explanation(
        kind=payload.get("kind", "latency"),
        trace_id=payload["trace_id"],
        entry=payload["entry"],
        start_unix_nano=int(payload.get("start_unix_nano") or 0),
        target_latency_ms=payload["target_latency_ms"],
        outlier_score=payload["outlier_score"],
        rarer_than=payload["rarer_than"],
        is_outlier=payload["is_outlier"],
        threshold=payload["threshold"],
        model_traces=int(payload["model_traces"]),
        model_fitted_at=float(payload["model_fitted_at"]),
        intervals=int(payload.get("intervals") or 0),
        contributions=contributions,
        graph=[pb.CausalEdge(**e) for e in payload["graph"]],
        summary=summary_text(payload),
    )


def _abort(context: grpc.ServicerContext, exc: ServiceError) -> None:
    context.abort(_CODES.get(type(exc), grpc.StatusCode.INTERNAL), exc.message)


class WhySlowServicer(pb_grpc.WhySlowServicer):
    """Maps RPCs to the service layer and service errors to gRPC status codes."""

    def __init__(self, service: WhySlowService, hub: OutlierHub, max_watchers: int = 16):
        self.service = service
        self.hub = hub
        self.max_watchers = max_watchers
        self._watchers = threading.BoundedSemaphore(max_watchers)

    def _call(self, context: grpc.ServicerContext, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ServiceError as exc:
            _abort(context, exc)
        except Exception as exc:  # noqa: BLE001 - any other failure is an INTERNAL status, never a traceback
            log.exception("gRPC call failed")
            context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__})")

    def ExplainTrace(self, request: pb.ExplainTraceRequest, context: grpc.ServicerContext) -> pb.Explanation:
        payload = self._call(context, self.service.explain, request.trace_id, request.intervals, request.kind or None)
        return explanation_message(payload)

    def ListOutliers(self, request: pb.ListOutliersRequest, context: grpc.ServicerContext) -> Any:
        rows = self._call(
            context,
            self.service.outliers,
            request.from_unix_ms or None,
            request.to_unix_ms or None,
            request.entry or None,
            request.min_score or None,
            request.limit or None,
        )
        return pb.ListOutliersResponse(
            outliers=[
                pb.OutlierSummary(
                    trace_id=r["trace_id"], entry=r["entry"], time_unix_ms=r["time_ms"],
                    target_latency_ms=r["target_latency_ms"], outlier_score=r["outlier_score"],
                    rarer_than=r["rarer_than"], root_cause_node=r["root_cause_node"] or "",
                    root_cause_service=r["root_cause_service"] or "", root_cause_share=r["root_cause_share"] or 0.0,
                    summary=r["summary"], kind=r["kind"],
                )
                for r in rows
            ]
        )

    def WatchOutliers(self, request: pb.WatchOutliersRequest, context: grpc.ServicerContext) -> Any:
        try:
            entry = validation.entry(request.entry)
            floor = validation.score(request.min_score) or 0.0
        except ServiceError as exc:
            _abort(context, exc)
            return
        if not self._watchers.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"too many WatchOutliers streams (at most {self.max_watchers})")
            return
        sub = self.hub.subscribe()
        context.add_callback(lambda: sub.put(None))
        try:
            while context.is_active() and not self.hub.closed.is_set():
                payload = sub.get(timeout=1.0)
                if payload is None:
                    continue
                if entry is not None and payload["entry"] != entry:
                    continue
                if payload["outlier_score"] < floor:
                    continue
                yield explanation_message(payload)
        finally:
            sub.close()
            self._watchers.release()

    def GetCausalGraph(self, request: pb.GetCausalGraphRequest, context: grpc.ServicerContext) -> Any:
        g = self._call(context, self.service.graph, request.entry or None)
        nodes = []
        for n in g["nodes"]:
            stats = pb.NodeStats(**n["stats"]) if n["stats"] else None
            nodes.append(pb.GraphNode(id=n["id"], service=n["service"], operation=n["operation"], kind=n["kind"],
                                      structure=n["structure"] or "", mechanism=n["mechanism"] or "", stats=stats))
        return pb.CausalGraph(
            entry=g["entry"], traces=g["traces"], model=g["model"], nodes=nodes,
            call_edges=[pb.CallEdge(**e) for e in g["call_edges"]],
            causal_edges=[pb.Edge(**e) for e in g["causal_edges"]],
        )


    def GetRegression(self, request: pb.GetRegressionRequest, context: grpc.ServicerContext) -> Any:
        r = self._call(context, self.service.regression, request.entry or None,
                       request.baseline_from_unix_ms or None, request.baseline_to_unix_ms or None,
                       request.from_unix_ms or None, request.to_unix_ms or None, request.stat or None,
                       request.intervals if request.HasField("intervals") else None)
        return regression_message(r)

    def WhatIf(self, request: pb.WhatIfRequest, context: grpc.ServicerContext) -> Any:
        body: dict[str, Any] = {"entry": request.entry or None, "from": request.from_unix_ms or None,
                                "to": request.to_unix_ms or None, "stat": request.stat or None,
                                "baseline_from": request.baseline_from_unix_ms or None,
                                "baseline_to": request.baseline_to_unix_ms or None,
                                "intervals": request.intervals if request.HasField("intervals") else None,
                                "interventions": dict(request.interventions)}
        w = self._call(context, self.service.whatif, body)
        return pb.WhatIfResponse(
            entry=w["entry"], stat=w["stat"], unit=w["unit"], current_value=w["current_value"],
            predicted_value=w["predicted_value"], change=w["change"], interval=w["interval"] or [],
            per_node=w["per_node"], interventions={k: str(v) for k, v in w["interventions"].items()},
            window=_window(w["window"]), baseline=_window(w["baseline"]))


def regression_message(r: dict[str, Any]) -> pb.Regression:
    """The gRPC form of a GET /api/v1/regression answer."""
    return pb.Regression(
        entry=r["entry"], stat=r["stat"], unit=r["unit"], baseline_value=r["baseline_value"],
        comparison_value=r["comparison_value"], observed_change=r["observed_change"],
        modelled_change=r["modelled_change"], unexplained=r["unexplained"], noise_floor=r["noise_floor"],
        significant=r["significant"], change_interval=r["change_interval"] or [],
        contributions=[_contribution(c) for c in r["contributions"]],
        services=[pb.RegressionService(**s) for s in r["services"]],
        window=_window(r["window"]), baseline=_window(r["baseline"]), summary=r["summary"], seconds=r["seconds"])


def _contribution(c: dict[str, Any]) -> pb.RegressionContribution:
    fields = {k: v for k, v in c.items() if v is not None and k != "edge"}
    edge = c.get("edge")
    if edge:
        fields["edge"] = pb.RegressionEdge(**edge)
    return pb.RegressionContribution(**fields)


def _window(w: dict[str, Any]) -> pb.TimeWindow:
    return pb.TimeWindow(from_unix_ms=w["from_ms"], to_unix_ms=w["to_ms"], traces=w.get("traces") or 0,
                         source=w.get("source") or "")


class BearerAuthInterceptor(grpc.ServerInterceptor):
    """Rejects calls without the right bearer token (constant-time compare); health checks are public."""

    def __init__(self, token: str):
        self._token = token.encode()

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(_PUBLIC_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        scheme, _, given = str(metadata.get("authorization", "")).partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token):
            return handler
        return _deny(handler)


def _deny(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    def reject(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

    kwargs = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(reject, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(reject, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(reject, **kwargs)
    return grpc.stream_stream_rpc_method_handler(reject, **kwargs)


class GrpcApi:
    """The gRPC server: WhySlow + grpc.health.v1 + reflection on one port."""

    def __init__(self, service: WhySlowService, hub: OutlierHub, address: str, token: str | None,
                 max_workers: int = 32, max_watchers: int = 16, credentials: Any = None):
        interceptors = [BearerAuthInterceptor(token)] if token else []
        # no SO_REUSEPORT: a port another process (e.g. a second whyslow) listens on must fail, not be shared
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                                  interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
        # watchers hold a worker thread each: at most half the pool, so queries always get threads
        pb_grpc.add_WhySlowServicer_to_server(WhySlowServicer(service, hub, max_watchers), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        try:
            if credentials is not None:  # grpc.ServerCredentials: serve TLS
                self.port = self.server.add_secure_port(address, credentials)
            else:
                self.port = self.server.add_insecure_port(address)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot bind the gRPC API to {address} (address in use?)")

    def start(self) -> None:
        self.server.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = 5.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait(grace + 1)
