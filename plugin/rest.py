"""REST API, JSON-datasource protocol, metrics and web UI on one Flask app.

Every route is declared once in `ROUTES`; the app registers them and /openapi.json is generated from
the same table (plus `plugin.openapi_schemas`), so the document always matches the implementation.
Errors are JSON `{"error": message}` for every status, never a traceback.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from plugin.datasource import DataSource
from plugin.errors import InvalidArgument, ServiceError
from plugin.openapi_schemas import SCHEMAS, ref
from plugin.service import VERSION, WhySlowService

log = logging.getLogger("whyslow.rest")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_UI_DIR = REPO_ROOT / "grafana_panel" / "harness-dist"
MAX_BODY = 1 << 20


@dataclass
class Param:
    name: str
    where: str  # "query" | "path"
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass
class Route:
    method: str
    path: str  # OpenAPI form: /api/v1/traces/{trace_id}/rca
    handler: str  # name of a RestApi method
    summary: str
    responses: dict[int, str]  # status -> schema name ("text" for text/plain, "html" for text/html)
    params: list[Param] = field(default_factory=list)
    body: str | None = None
    auth: bool = True
    tag: str = "whyslow"


TRACE_PARAM = Param("trace_id", "path", {"type": "string"}, "Trace id: 32 hexadecimal characters", True)
TIME_SCHEMA = {"oneOf": [{"type": "integer"}, {"type": "string"}]}
ERR = "Error"

ROUTES: list[Route] = [
    Route("GET", "/api/v1/traces/{trace_id}/rca", "rca",
          "Root-cause explanation of one trace: ranked causal contributions to its entry latency",
          {200: "Explanation", 400: ERR, 401: ERR, 404: ERR, 409: ERR},
          [TRACE_PARAM, Param("intervals", "query", {"type": "integer", "minimum": 0, "maximum": 200},
                              "Bootstrap resamples for contribution intervals (0: none)"),
           Param("kind", "query", {"type": "string", "enum": ["latency", "error"]},
                 "latency: why slow; error: why failed; default: the stored latency explanation, else the stored "
                 "error one, else error when the request failed and latency otherwise")]),
    Route("GET", "/api/v1/outliers", "outliers", "Recent explained outliers, newest first",
          {200: "OutlierList", 400: ERR, 401: ERR},
          [Param("from", "query", TIME_SCHEMA, "Start: unix ms, ISO 8601, or now-<n><s|m|h|d|w>"),
           Param("to", "query", TIME_SCHEMA, "End: unix ms, ISO 8601, or now[-<n><s|m|h|d|w>]"),
           Param("entry", "query", {"type": "string"}, "Entry point node id"),
           Param("min_score", "query", {"type": "number", "minimum": 0}, "Minimum IT score (nats)"),
           Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, "At most (default 100)"),
           Param("kind", "query", {"type": "string", "enum": ["latency", "error"]},
                 "Only slow (latency) or failed (error) requests (default: both)")]),
    Route("GET", "/api/v1/incident", "incident",
          "Which services are behind a time window: its explained outliers (one vote each), per-node shift scores of"
          " own time and call gaps (nats, calibrated like the IT score, robust to drift) and the distribution-change"
          " attribution against the baseline before it (default: the preceding 30 minutes without earlier incident"
          " minutes); edges (call gaps, database calls) resolved to the end whose edges are consistently slow."
          " Beside it, error_rate: each entry point's error-rate change against the same baseline attributed to the"
          " nodes whose own failures or propagation changed (as GET /api/v1/regression?stat=error_rate)",
          {200: "IncidentSummary", 400: ERR, 401: ERR},
          [Param("from", "query", TIME_SCHEMA, "Start: unix ms, ISO 8601, or now-<n><s|m|h|d|w>"),
           Param("to", "query", TIME_SCHEMA, "End: unix ms, ISO 8601, or now[-<n><s|m|h|d|w>]"),
           Param("entry", "query", {"type": "string"}, "Entry point node id (default: all)"),
           Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000},
                 "At most this many outliers, newest first (default 1000)"),
           Param("baseline_from", "query", TIME_SCHEMA, "Baseline start (default: 30 minutes before its end)"),
           Param("baseline_to", "query", TIME_SCHEMA, "Baseline end (default: the window's start)")]),
    Route("GET", "/api/v1/incidents", "detected_incidents",
          "Regressions found by continuous detection (every minute, each entry point's last 5 minutes against its "
          "baseline; shift score at least 6.9 nats, 1 in 1,000), newest first",
          {200: "DetectedIncidentList", 400: ERR, 401: ERR},
          [Param("entry", "query", {"type": "string"}, "Entry point node id (default: all)"),
           Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, "At most (default 100)")]),
    Route("GET", "/api/v1/regression", "regression",
          "Why did a latency statistic of an entry point change between a baseline and a window: the change in ms "
          "split among the nodes (and services) whose own time changed (Shapley values, bootstrap intervals); "
          "stat=error_rate: the change of the entry's error rate in percentage points split among the nodes whose "
          "own-failure rate or propagation of a callee's failure changed",
          {200: "Regression", 400: ERR, 401: ERR, 404: ERR},
          [Param("entry", "query", {"type": "string"}, "Entry point (optional when there is only one)"),
           Param("from", "query", TIME_SCHEMA, "Window start (default: 15 minutes before its end)"),
           Param("to", "query", TIME_SCHEMA, "Window end (default: now)"),
           Param("baseline_from", "query", TIME_SCHEMA, "Baseline start (default: the window a day earlier when "
                 "it holds traces, else the hour before the window)"),
           Param("baseline_to", "query", TIME_SCHEMA, "Baseline end (default: the window's start when only "
                 "baseline_from is given)"),
           Param("stat", "query", {"type": "string"}, "mean, median, p50, p90, p95, p99 (any pNN; default p99), "
                 "tail>THRESHOLD_MS or error_rate"),
           Param("intervals", "query", {"type": "integer", "minimum": 0, "maximum": 200},
                 "Bootstrap replicates for intervals (default 50, 0: none)")]),
    Route("GET", "/api/v1/regressions", "stored_regressions",
          "Regressions kept in the results store: answers of /api/v1/regression (source query) and the continuous "
          "detection's findings (source watch), newest window first; they outlive a restart and go with their "
          "window's traces",
          {200: "StoredRegressionList", 400: ERR, 401: ERR},
          [Param("entry", "query", {"type": "string"}, "Entry point node id (default: all)"),
           Param("source", "query", {"type": "string", "enum": ["query", "watch"]}, "Only this source"),
           Param("from", "query", TIME_SCHEMA, "Windows ending after this time"),
           Param("to", "query", TIME_SCHEMA, "Windows starting before this time"),
           Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, "At most (default 100)")]),
    Route("POST", "/api/v1/whatif", "whatif",
          "A latency statistic of an entry point in a window had some nodes' or services' own time been scaled "
          "(0.7 = 30 % faster) or at its baseline distribution",
          {200: "WhatIf", 400: ERR, 401: ERR, 404: ERR}, body="WhatIfRequest"),
    Route("GET", "/api/v1/graph", "graph", "Call graph and causal graph of an entry point, with per-node stats",
          {200: "Graph", 400: ERR, 401: ERR, 404: ERR},
          [Param("entry", "query", {"type": "string"}, "Entry point (optional when there is only one)")]),
    Route("GET", "/api/v1/status", "status", "Models per entry point and counters", {200: "Status", 401: ERR}),
    Route("GET", "/healthz", "healthz", "Liveness", {200: "Health"}, auth=False, tag="ops"),
    Route("GET", "/readyz", "readyz", "Readiness: receivers and APIs are serving", {200: "Health", 503: ERR},
          auth=False, tag="ops"),
    Route("GET", "/metrics", "prometheus", "Prometheus metrics (text exposition format)",
          {200: "text", 401: ERR}, tag="ops"),
    Route("GET", "/openapi.json", "openapi", "This document", {200: "AnyObject"}, auth=False, tag="ops"),
    # JSON-datasource protocol (simpod-json-datasource)
    Route("GET", "/", "ds_root", "Data source connection test", {200: "Health", 401: ERR}, tag="grafana"),
    Route("POST", "/metrics", "ds_metrics", "Available query targets", {200: "DsMetrics", 400: ERR, 401: ERR},
          body="AnyObject", tag="grafana"),
    Route("POST", "/metric-payload-options", "ds_payload_options", "Options of a target's payload field",
          {200: "DsOptions", 400: ERR, 401: ERR}, body="AnyObject", tag="grafana"),
    Route("POST", "/options", "ds_payload_options", "Options of a target's payload field (older plugin versions)",
          {200: "DsOptions", 400: ERR, 401: ERR}, body="AnyObject", tag="grafana"),
    Route("POST", "/search", "ds_search", "Available targets (SimpleJson)", {200: "DsSearch", 400: ERR, 401: ERR},
          body="AnyObject", tag="grafana"),
    Route("POST", "/query", "ds_query", "Explanation frames (rca), outlier table, outlier annotations",
          {200: "DsQueryResponse", 400: ERR, 401: ERR}, body="DsQueryRequest", tag="grafana"),
    Route("POST", "/annotations", "ds_annotations", "Outlier annotations (SimpleJson annotation API)",
          {200: "DsAnnotations", 400: ERR, 401: ERR}, body="AnyObject", tag="grafana"),
    Route("POST", "/variable", "ds_variable", "Variable values: recent outlier trace ids, or entry points",
          {200: "DsVariable", 400: ERR, 401: ERR}, body="AnyObject", tag="grafana"),
    Route("POST", "/tag-keys", "ds_tag_keys", "Ad-hoc filter keys", {200: "DsTagKeys", 400: ERR, 401: ERR},
          body="AnyObject", tag="grafana"),
    Route("POST", "/tag-values", "ds_tag_values", "Ad-hoc filter values", {200: "DsTagValues", 400: ERR, 401: ERR},
          body="AnyObject", tag="grafana"),
    # web UI
    Route("GET", "/ui/", "ui_index", "The panel's standalone page", {200: "html"}, auth=False, tag="ui"),
    Route("GET", "/ui/{path}", "ui_file", "Static files of the standalone page", {200: "any", 404: ERR},
          [Param("path", "path", {"type": "string"}, "File path", True)], auth=False, tag="ui"),
]


def flask_rule(path: str) -> str:
    if path == "/ui/{path}":
        return "/ui/<path:path>"
    return re.sub(r"\{(\w+)\}", r"<\1>", path)


def openapi_document(routes: list[Route] = ROUTES) -> dict[str, Any]:
    """OpenAPI 3.1 document generated from the route table."""
    paths: dict[str, Any] = {}
    used: set[str] = set()
    for route in routes:
        op_id = route.handler
        if op_id in used:  # an alias path of the same handler
            op_id = route.handler + "_" + re.sub(r"\W+", "_", route.path).strip("_")
        used.add(op_id)
        op: dict[str, Any] = {
            "operationId": op_id,
            "summary": route.summary,
            "tags": [route.tag],
            "responses": {},
        }
        if route.params:
            op["parameters"] = [
                {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                 "description": p.description, "schema": p.schema}
                for p in route.params
            ]
        if route.body:
            op["requestBody"] = {"required": False, "content": {"application/json": {"schema": ref(route.body)}}}
        if not route.auth:
            op["security"] = []
        for status, schema in route.responses.items():
            if schema == "text":
                content = {"text/plain": {"schema": {"type": "string"}}}
            elif schema == "html":
                content = {"text/html": {"schema": {"type": "string"}}}
            elif schema == "any":
                content = {"*/*": {"schema": {}}}
            else:
                content = {"application/json": {"schema": ref(schema)}}
            op["responses"][str(status)] = {"description": _REASONS.get(status, "response"), "content": content}
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "whyslow API",
            "version": VERSION,
            "description": "Causal root-cause attribution of slow traces: REST API and the Grafana JSON "
                           "data source protocol. Send `Authorization: Bearer <token>` when a token is set.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


_REASONS = {200: "OK", 400: "Invalid input", 401: "Missing or wrong bearer token", 404: "Not found",
            409: "No model yet for this trace's entry point", 503: "Not ready"}

NOT_BUILT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>whyslow: panel not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>whyslow</h1>
<p>The panel's standalone page is not built yet. Build it with <code>make panel</code> (it writes
<code>grafana_panel/harness-dist/</code>), or point <code>--ui-dir</code> at a built copy, then reload.</p>
<p>The API is up: see <a href="/openapi.json">/openapi.json</a> and <a href="/api/v1/status">/api/v1/status</a>.</p>
</body></html>
"""


class RestApi:
    """Handlers of the route table, bound to one service."""

    def __init__(self, service: WhySlowService, metrics: Any, config: Any, ready: Callable[[], bool]):
        self.service = service
        self.metrics = metrics
        self.config = config
        self.ready = ready
        self.datasource = DataSource(service)
        self.ui_dir = Path(config.ui_dir) if config.ui_dir else DEFAULT_UI_DIR
        self._openapi = openapi_document()

    # --- REST ---
    def rca(self, trace_id: str) -> Any:
        return self.service.explain(trace_id, request.args.get("intervals"), request.args.get("kind"))

    def outliers(self) -> Any:
        a = request.args
        return {"outliers": self.service.outliers(a.get("from"), a.get("to"), a.get("entry"),
                                                  a.get("min_score"), a.get("limit"), a.get("kind"))}

    def incident(self) -> Any:
        a = request.args
        return self.service.incident(a.get("from"), a.get("to"), a.get("entry"), a.get("limit"),
                                     a.get("baseline_from"), a.get("baseline_to"))

    def detected_incidents(self) -> Any:
        a = request.args
        return self.service.detected_incidents(a.get("entry"), a.get("limit"))

    def regression(self) -> Any:
        a = request.args
        return self.service.regression(a.get("entry"), a.get("baseline_from"), a.get("baseline_to"), a.get("from"),
                                       a.get("to"), a.get("stat"), a.get("intervals"))

    def stored_regressions(self) -> Any:
        a = request.args
        return self.service.stored_regressions(a.get("entry"), a.get("source"), a.get("from"), a.get("to"),
                                               a.get("limit"))

    def whatif(self) -> Any:
        return self.service.whatif(_body())

    def graph(self) -> Any:
        return self.service.graph(request.args.get("entry"))

    def status(self) -> Any:
        return self.service.status()

    def healthz(self) -> Any:
        return {"status": "ok"}

    def readyz(self) -> Any:
        if not self.ready():
            return {"error": "not ready"}, 503
        return {"status": "ready"}

    def prometheus(self) -> Any:
        from plugin.metrics import CONTENT_TYPE

        return Response(self.metrics.render(), content_type=CONTENT_TYPE)

    def openapi(self) -> Any:
        return self._openapi

    # --- JSON datasource ---
    def ds_root(self) -> Any:
        return {"status": "ok"}

    def ds_metrics(self) -> Any:
        return jsonify(self.datasource.metrics(_body()))

    def ds_payload_options(self) -> Any:
        return jsonify(self.datasource.payload_options(_body()))

    def ds_search(self) -> Any:
        return jsonify(self.datasource.search(_body()))

    def ds_query(self) -> Any:
        return jsonify(self.datasource.query(_body()))

    def ds_annotations(self) -> Any:
        return jsonify(self.datasource.annotations(_body()))

    def ds_variable(self) -> Any:
        return jsonify(self.datasource.variable(_body()))

    def ds_tag_keys(self) -> Any:
        return jsonify(self.datasource.tag_keys(_body()))

    def ds_tag_values(self) -> Any:
        return jsonify(self.datasource.tag_values(_body()))

    # --- UI ---
    def ui_index(self) -> Any:
        if (self.ui_dir / "index.html").is_file():
            return send_from_directory(self.ui_dir, "index.html")
        return Response(NOT_BUILT_PAGE, content_type="text/html; charset=utf-8")

    def ui_file(self, path: str) -> Any:
        if not (self.ui_dir / "index.html").is_file():
            return {"error": "the panel page is not built (run `make panel`)"}, 404
        return send_from_directory(self.ui_dir, path)


def _body() -> dict[str, Any]:
    if not request.data:
        return {}
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidArgument("request body must be JSON")
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    return body


def create_app(service: WhySlowService, metrics: Any, config: Any, ready: Callable[[], bool]) -> Flask:
    """The Flask app: routes from `ROUTES`, bearer auth, JSON errors, optional CORS."""
    app = Flask("whyslow", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.sort_keys = False  # type: ignore[attr-defined]
    api = RestApi(service, metrics, config, ready)
    app.extensions["whyslow_api"] = api
    token = config.auth_token.encode() if config.auth_token else None
    public = {flask_rule(r.path) for r in ROUTES if not r.auth}

    for route in ROUTES:
        app.add_url_rule(
            flask_rule(route.path),
            endpoint=f"{route.method}:{route.path}",
            view_func=getattr(api, route.handler),
            methods=[route.method],
        )

    @app.before_request
    def _auth() -> Any:
        if token is None or request.method == "OPTIONS":
            return None
        rule = request.url_rule.rule if request.url_rule is not None else None
        if rule in public:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
            resp = jsonify({"error": "missing or invalid bearer token"})
            resp.status_code = 401
            resp.headers["WWW-Authenticate"] = 'Bearer realm="whyslow"'
            return resp
        return None

    @app.after_request
    def _after(resp: Response) -> Response:
        origin = request.headers.get("Origin")
        allowed = config.cors_origins
        if origin and allowed and ("*" in allowed or origin in allowed):
            resp.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
            resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            resp.headers["Vary"] = "Origin"
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        if metrics is not None:
            api_name = "grafana" if request.method == "POST" or request.path == "/" else "rest"
            metrics.requests.labels(api_name, str(resp.status_code)).inc()
        return resp

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Any:
        return jsonify({"error": exc.message}), exc.http_status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        messages = {404: "not found", 405: "method not allowed", 413: "request body too large"}
        message = messages.get(exc.code or 500, (exc.description or exc.name or "error").split("\n")[0])
        resp = jsonify({"error": message})
        resp.status_code = exc.code or 500
        if exc.code == 405:
            allowed = exc.get_response().headers.get("Allow")
            if allowed:
                resp.headers["Allow"] = allowed
        return resp

    @app.errorhandler(Exception)
    def _internal(exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"error": f"internal error ({type(exc).__name__})"}), 500

    return app
