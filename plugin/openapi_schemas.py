"""JSON schemas (OpenAPI 3.1 components) of every body the REST API and the JSON-datasource protocol serve.

`plugin.rest` builds /openapi.json from its route table plus these components; tests validate live
responses against them with jsonschema.
"""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


NUM = {"type": "number"}
NUM_OR_NULL = {"type": ["number", "null"]}
STR = {"type": "string"}
STR_OR_NULL = {"type": ["string", "null"]}
INT = {"type": "integer"}


def obj(props: dict[str, Any], required: list[str] | None = None, extra: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props, "required": required or list(props)}
    if not extra:
        out["additionalProperties"] = False
    return out


TRACE_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
EXPLANATION_KIND = {"type": "string", "enum": ["latency", "error"]}  # why slow | why failed

SCHEMAS: dict[str, Any] = {
    "Error": obj({"error": STR}, extra=False),
    "Contribution": obj(
        {
            "rank": {"type": "integer", "minimum": 1},
            "node": STR,
            "service": STR,
            "operation": STR,
            "kind": STR,
            "contribution": NUM,
            "share": NUM,
            "contribution_lo": NUM_OR_NULL,
            "contribution_hi": NUM_OR_NULL,
            "own_latency_ms": NUM_OR_NULL,
            "node_latency_ms": NUM_OR_NULL,
            "counterfactual_latency_ms": NUM_OR_NULL,
            # error explanations only (optional): failed in this trace, P(failed on its own), P(request
            # succeeds had it not failed on its own), failed but its caller recovered
            "failed": {"type": "boolean"},
            "own_failure": NUM,
            "success_without": NUM,
            "handled": {"type": "boolean"},
        },
        required=["rank", "node", "service", "operation", "kind", "contribution", "share", "contribution_lo",
                  "contribution_hi", "own_latency_ms", "node_latency_ms", "counterfactual_latency_ms"],
    ),
    "CausalEdge": obj({"source": STR, "target": STR, "source_contribution": NUM}),
    "Explanation": obj(
        {
            "version": INT,
            "kind": EXPLANATION_KIND,
            "trace_id": TRACE_ID,
            "entry": STR,
            "start_unix_nano": INT,
            "time_ms": INT,
            "target_latency_ms": NUM,
            "outlier_score": NUM,
            "rarer_than": NUM,
            "is_outlier": {"type": "boolean"},
            "threshold": NUM,
            "model_traces": INT,
            "model_fitted_at": NUM,
            "intervals": INT,
            "attribution_seconds": NUM,
            "contributions": {"type": "array", "items": ref("Contribution")},
            "graph": {"type": "array", "items": ref("CausalEdge")},
        }
    ),
    "OutlierSummary": obj(
        {
            "kind": EXPLANATION_KIND,
            "trace_id": TRACE_ID,
            "entry": STR,
            "time_ms": INT,
            "target_latency_ms": NUM,
            "outlier_score": NUM,
            "rarer_than": NUM,
            "root_cause_node": STR_OR_NULL,
            "root_cause_service": STR_OR_NULL,
            "root_cause_share": NUM_OR_NULL,
            "summary": STR,
        }
    ),
    "OutlierList": obj({"outliers": {"type": "array", "items": ref("OutlierSummary")}}),
    "IncidentService": obj(
        {
            "service": STR,
            "share": NUM,  # of the outliers' votes (one per outlier); sums to 1 over services
            "top_node": STR_OR_NULL,
            "first_in": INT,  # outliers whose explanation ranks this service first
            "score": NUM,  # the combined ranking: mean over the kinds of evidence present of this service's share
            "evidence": {"type": "object", "additionalProperties": NUM},  # kind -> share (outliers, shift, ...)
        }
    ),
    "ShiftedNode": obj(
        {
            "node": STR, "service": STR, "kind": STR, "caller_service": STR_OR_NULL,
            "score": NUM,  # nats, corrected for the window's tests
            "test": STR, "effect_ms": NUM, "baseline_median_ms": NUM, "window_median_ms": NUM,
            "baseline_p99_ms": NUM, "window_p99_ms": NUM, "baseline_n": INT, "window_n": INT,
            "entries": {"type": "array", "items": STR},
        }
    ),
    "DetectedIncident": obj(
        {
            "kind": {"const": "regression"}, "trace_id": STR, "entry": STR, "time_ms": INT, "to_ms": INT,
            "outlier_score": NUM, "lead_service": STR_OR_NULL, "summary": STR, "drift": NUM,
            "contributions": {"type": "array", "items": {"type": "object"}},
            "services": {"type": "array", "items": ref("IncidentService")},
        },
        required=["kind", "entry", "time_ms", "to_ms", "outlier_score", "lead_service", "summary", "services"],
    ),
    "DetectedIncidentList": obj({"incidents": {"type": "array", "items": ref("DetectedIncident")}}),
    "IncidentSummary": obj(
        {
            "outliers": INT,
            "services": {"type": "array", "items": ref("IncidentService")},
            "entries": {"type": "array", "items": STR},
            "from_ms": {"type": ["integer", "null"]},
            "to_ms": {"type": ["integer", "null"]},
            "evidence": {"type": "array", "items": {"enum": ["attribution", "outliers", "shift"]}},
            "shift": obj({"changed": {"type": "boolean"}, "min_score": NUM, "drift": NUM, "tests": INT,
                          "nodes": {"type": "array", "items": ref("ShiftedNode")}}),
            "attribution": {"type": "array", "items": {"type": "object"}},
            "baseline": obj({"from_ms": INT, "to_ms": INT, "traces": INT,
                             "excluded": {"type": "array", "items": obj({"from_ms": INT, "to_ms": INT,
                                                                         "services": {"type": "array",
                                                                                      "items": STR}})}}),
            "window_traces": INT,
            "error_rate": ref("IncidentErrorRate"),
        }
    ),
    "IncidentErrorRate": obj(
        {
            "method": STR,
            "significant": {"type": "boolean"},
            "services": {"type": "array", "items": obj({"rank": INT, "service": STR, "extra_failed_requests": NUM,
                                                        "share": NUM})},
            "entries": {"type": "array", "items": ref("ErrorRateChange")},
        }
    ),
    "NodeStats": {
        "type": ["object", "null"],
        "properties": {"traces": INT, "mean_ms": NUM, "p50_ms": NUM, "p95_ms": NUM, "p99_ms": NUM},
        "required": ["traces", "mean_ms", "p50_ms", "p95_ms", "p99_ms"],
    },
    "GraphNode": obj(
        {
            "id": STR,
            "service": STR,
            "operation": STR,
            "kind": STR,
            "structure": STR_OR_NULL,
            "mechanism": STR_OR_NULL,
            "stats": ref("NodeStats"),
        }
    ),
    "Graph": obj(
        {
            "entry": STR,
            "traces": INT,
            "model": {"type": "string", "enum": ["ready", "learning"]},
            "nodes": {"type": "array", "items": ref("GraphNode")},
            "call_edges": {"type": "array", "items": obj({"caller": STR, "callee": STR})},
            "causal_edges": {"type": "array", "items": obj({"source": STR, "target": STR})},
        }
    ),
    "ModelStatus": obj(
        {
            "entry": STR,
            "state": {"type": "string", "enum": ["learning", "ready"]},
            "traces_seen": INT,
            "min_traces": INT,
            "fitted_at": NUM_OR_NULL,
            "rows": INT,
            "fit_seconds": NUM_OR_NULL,
            "fits": INT,
            "last_error": STR_OR_NULL,
        }
    ),
    "Status": obj(
        {
            "version": STR,
            "uptime_s": NUM,
            "threshold": NUM,
            "threshold_rarer_than": NUM,
            "min_traces": INT,
            "models": {"type": "array", "items": ref("ModelStatus")},
            "pipeline": {"type": "object", "additionalProperties": NUM},
            # counters since start, and `pending`: traces (or a learning backlog) queued for scoring plus
            # outliers queued for explanation; 0 means everything received so far is scored and explained
            "detector": {"type": "object", "additionalProperties": INT,
                         "properties": {"pending": {**INT, "minimum": 0}}},
            "annotations": {"type": ["object", "null"], "additionalProperties": INT},
            # replicas sharing a ClickHouse store (null for one): traces passed to the detector after the settle
            # delay (settle_s), held back as fragments of a trace split across replicas, waiting now
            "replica": {"type": ["object", "null"], "additionalProperties": NUM},
        }
    ),
    "Health": obj({"status": STR}),
    # --- JSON-datasource protocol (simpod-json-datasource) ---
    "DsTable": obj(
        {
            "type": {"const": "table"},
            "refId": STR,
            "columns": {
                "type": "array",
                "items": obj({"text": STR, "type": {"enum": ["string", "number", "time"]}}),
            },
            "rows": {"type": "array", "items": {"type": "array"}},
        },
        required=["type", "columns", "rows"],
    ),
    "DsQueryResponse": {"type": "array", "items": ref("DsTable")},
    "DsQueryRequest": {
        "type": "object",
        "properties": {
            "range": {"type": "object", "properties": {"from": STR, "to": STR}},
            "targets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "target": STR,
                        "refId": STR,
                        "payload": {"type": ["object", "string", "null"]},
                        "hide": {"type": "boolean"},
                    },
                },
            },
            "scopedVars": {"type": "object"},
            "adhocFilters": {"type": "array"},
        },
    },
    "DsMetric": obj(
        {
            "label": STR,
            "value": STR,
            "payloads": {
                "type": "array",
                "items": obj({"label": STR, "name": STR, "type": STR}, extra=True),
            },
        }
    ),
    "DsMetrics": {"type": "array", "items": ref("DsMetric")},
    "DsOptions": {"type": "array", "items": obj({"label": STR, "value": STR})},
    "DsVariable": {"type": "array", "items": obj({"__text": STR, "__value": STR})},
    "DsTagKeys": {"type": "array", "items": obj({"type": STR, "text": STR})},
    "DsTagValues": {"type": "array", "items": obj({"text": STR})},
    "DsAnnotations": {
        "type": "array",
        "items": obj(
            {
                "annotation": {"type": ["object", "null"]},
                "time": INT,
                "timeEnd": INT,
                "title": STR,
                "text": STR,
                "tags": {"type": "array", "items": STR},
            }
        ),
    },
    "DsSearch": {"type": "array", "items": STR},
    "AnyObject": {"type": "object"},
}

# GET /api/v1/regression and POST /api/v1/whatif (plugin.regression)
_WINDOW = obj({"from_ms": INT, "to_ms": INT, "traces": {"type": ["integer", "null"]}})
_INTERVENTION = {"oneOf": [{"type": "number", "minimum": 0}, STR]}
SCHEMAS.update({
    "RegressionWindow": _WINDOW,
    "RegressionBaseline": obj({**_WINDOW["properties"],
                               "source": {"type": "string", "enum": ["given", "day_before", "hour_before"]}}),
    "RegressionContribution": obj(
        {
            "rank": {"type": "integer", "minimum": 1},
            "node": STR,
            "service": STR,
            "operation": STR,
            "kind": STR,
            "change_kind": {"type": "string", "enum": ["changed", "new", "gone", "own_rate", "propagation"]},
            "contribution": NUM,  # in the statistic's unit (ms, probability for tail>T, pp for error_rate)
            "contribution_lo": NUM_OR_NULL,
            "contribution_hi": NUM_OR_NULL,
            "counterfactual": NUM_OR_NULL,  # the statistic had only this node not changed
            "p_value": NUM_OR_NULL,
            # node: its own time (per call); edge: its calls per request (a new, removed or more often made call)
            "player": {"type": "string", "enum": ["node", "edge"]},
            "edge": {"oneOf": [{"type": "null"}, ref("RegressionEdge")]},
            # stat=error_rate only (percent): own-failure rate, observed failure rate, per-callee propagation
            "own_rate_before": NUM_OR_NULL,
            "own_rate_after": NUM_OR_NULL,
            "failure_rate_before": NUM_OR_NULL,
            "failure_rate_after": NUM_OR_NULL,
            "propagation_before": {"type": "object", "additionalProperties": NUM},
            "propagation_after": {"type": "object", "additionalProperties": NUM},
        },
        required=["rank", "node", "service", "operation", "kind", "change_kind", "contribution", "contribution_lo",
                  "contribution_hi", "counterfactual", "p_value"],
    ),
    "StoredRegression": obj({"key": STR, "source": {"type": "string", "enum": ["query", "watch"]}, "entry": STR,
                             "from_ms": INT, "to_ms": INT, "saved_ms": INT, "top_service": STR, "summary": STR,
                             # the answer as given: a Regression (query) or a DetectedIncident (watch)
                             "regression": {"type": "object"}}),
    "StoredRegressionList": obj({"regressions": {"type": "array", "items": ref("StoredRegression")}}),
    "RegressionEdge": obj({"callers": {"type": "array", "items": STR}, "callee": STR,
                           "caller_services": {"type": "array", "items": STR}, "callee_service": STR}),
    "RegressionService": obj({"rank": INT, "service": STR, "contribution": NUM,
                              "nodes": {"type": "array", "items": STR}}),
    "Regression": obj(
        {
            "entry": STR,
            "stat": STR,
            "unit": {"type": "string", "enum": ["ms", "probability", "percentage_points"]},
            "baseline_value": NUM,
            "comparison_value": NUM,
            "observed_change": NUM,
            "modelled_change": NUM,
            "unexplained": NUM,
            "noise_floor": NUM,
            "significant": {"type": "boolean"},
            "change_interval": {"type": ["array", "null"], "items": NUM},
            "contributions": {"type": "array", "items": ref("RegressionContribution")},
            "services": {"type": "array", "items": ref("RegressionService")},
            "method": STR,
            "seconds": NUM,
            "summary": STR,
            "window": ref("RegressionWindow"),
            "baseline": ref("RegressionBaseline"),
            "cached": {"type": "boolean"},
        }
    ),
    "WhatIfRequest": obj(
        {
            "entry": STR,
            "from": {"oneOf": [INT, STR]},
            "to": {"oneOf": [INT, STR]},
            "baseline_from": {"oneOf": [INT, STR]},
            "baseline_to": {"oneOf": [INT, STR]},
            "stat": STR,
            "intervals": INT,
            "interventions": {"type": "object", "additionalProperties": _INTERVENTION, "minProperties": 1},
        },
        required=["interventions"],
    ),
    "WhatIf": obj(
        {
            "entry": STR,
            "target": STR,
            "stat": STR,
            "unit": {"type": "string", "enum": ["ms", "probability"]},
            "interventions": {"type": "object", "additionalProperties": _INTERVENTION},
            "current_value": NUM,
            "predicted_value": NUM,
            "change": NUM,
            "interval": {"type": ["array", "null"], "items": NUM},
            "per_node": {"type": "object", "additionalProperties": NUM},
            "rows": INT,
            "num_samples": INT,
            "seconds": NUM,
            "window": ref("RegressionWindow"),
            "baseline": ref("RegressionBaseline"),
        }
    ),
})
# an entry point's error-rate attribution in an incident summary: a Regression answer without its windows
SCHEMAS["ErrorRateChange"] = obj({
    **{k: v for k, v in SCHEMAS["Regression"]["properties"].items() if k not in ("window", "baseline", "cached")},
    "stat": {"type": "string", "enum": ["error_rate"]},
    "unit": {"type": "string", "enum": ["percentage_points"]},
    "computation": {"type": "string", "enum": ["closed_form", "simulated"]},
    "baseline_rows": INT,
    "comparison_rows": INT,
})
