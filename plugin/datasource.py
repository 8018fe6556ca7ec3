"""The simpod-json-datasource protocol: Grafana's JSON data source pointed at whyslow gets explanations
as the frames of docs/ARCHITECTURE.md (target "rca"), outliers as a table (target "outliers") and as
annotations (target "annotations", or the legacy POST /annotations), plus variable and ad-hoc values.

Problems with one target become status rows (the panel shows states), never HTTP errors.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from plugin import validation
from plugin.errors import InvalidArgument, NoModel, NotFound, ServiceError
from plugin.explain import rarer_text, summary_text
from plugin.payloads import ExplanationPayload
from plugin.service import WhySlowService

log = logging.getLogger("whyslow.datasource")

SUMMARY_COLUMNS = [
    ("status", "string"), ("message", "string"), ("trace_id", "string"), ("entry", "string"),
    ("target_latency_ms", "number"), ("outlier_score", "number"), ("rarer_than", "number"),
    ("model_traces", "number"), ("kind", "string"),
]
CONTRIBUTION_COLUMNS = [
    ("rank", "number"), ("node", "string"), ("service", "string"), ("operation", "string"), ("kind", "string"),
    ("contribution", "number"), ("share", "number"), ("contribution_lo", "number"), ("contribution_hi", "number"),
    ("own_latency_ms", "number"), ("node_latency_ms", "number"), ("counterfactual_latency_ms", "number"),
    # error explanations only (null for latency): 1/0 flags and probabilities (see plugin.payloads)
    ("failed", "number"), ("own_failure", "number"), ("success_without", "number"), ("handled", "number"),
]
GRAPH_COLUMNS = [("source", "string"), ("target", "string"), ("source_contribution", "number")]
OUTLIER_COLUMNS = [
    ("time", "time"), ("trace_id", "string"), ("entry", "string"), ("target_latency_ms", "number"),
    ("outlier_score", "number"), ("rarer_than", "number"), ("root_cause_service", "string"),
    ("root_cause_node", "string"), ("root_cause_share", "number"), ("summary", "string"), ("kind", "string"),
]
INCIDENT_COLUMNS = [("service", "string"), ("share", "number"), ("top_node", "string"), ("first_in", "number"),
                    ("outliers", "number"), ("score", "number")]
REGRESSION_SUMMARY_COLUMNS = [
    ("status", "string"), ("message", "string"), ("entry", "string"), ("stat", "string"), ("unit", "string"),
    ("baseline_value", "number"), ("comparison_value", "number"), ("observed_change", "number"),
    ("modelled_change", "number"), ("unexplained", "number"), ("noise_floor", "number"),
    ("significant", "number"), ("baseline_from", "time"), ("baseline_to", "time"), ("baseline_source", "string"),
    ("baseline_traces", "number"), ("window_traces", "number"),
]
REGRESSION_COLUMNS = [
    ("rank", "number"), ("service", "string"), ("node", "string"), ("kind", "string"), ("change_kind", "string"),
    ("contribution", "number"), ("contribution_lo", "number"), ("contribution_hi", "number"),
    ("counterfactual", "number"), ("p_value", "number"), ("player", "string"),
]
ANNOTATION_COLUMNS = [("time", "time"), ("timeEnd", "time"), ("title", "string"), ("text", "string"),
                      ("tags", "string")]
TAG_KEYS = ("entry", "root_cause_service")

METRICS: list[dict[str, Any]] = [
    {
        "label": "Root-cause explanation of one trace",
        "value": "rca",
        "payloads": [
            {"label": "Trace id", "name": "traceId", "type": "input",
             "placeholder": "32 hex characters, or $traceId"},
        ],
    },
    {
        "label": "Explained slow traces (table)",
        "value": "outliers",
        "payloads": [
            {"label": "Entry point", "name": "entry", "type": "select", "reloadMetric": False},
            {"label": "Minimum IT score (nats)", "name": "min_score", "type": "input"},
            {"label": "Limit", "name": "limit", "type": "input", "placeholder": "100"},
        ],
    },
    {
        "label": "Which service is behind the slow traces of the time range (table)",
        "value": "incident",
        "payloads": [
            {"label": "Entry point", "name": "entry", "type": "select", "reloadMetric": False},
        ],
    },
    {
        "label": "Explained slow traces (annotations)",
        "value": "annotations",
        "payloads": [
            {"label": "Entry point", "name": "entry", "type": "select", "reloadMetric": False},
            {"label": "Minimum IT score (nats)", "name": "min_score", "type": "input"},
        ],
    },
    {
        "label": "Why did latency change against a baseline (per-node change in ms; table / bar chart)",
        "value": "regression",
        "payloads": [
            {"label": "Entry point", "name": "entry", "type": "select", "reloadMetric": False},
            {"label": "Statistic", "name": "stat", "type": "input", "placeholder": "p99"},
            {"label": "Baseline start", "name": "baseline_from", "type": "input",
             "placeholder": "default: the range a day earlier, else the hour before"},
            {"label": "Baseline end", "name": "baseline_to", "type": "input"},
        ],
    },
]


def table(columns: list[tuple[str, str]], rows: list[list[Any]], ref_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "table", "columns": [{"text": n, "type": t} for n, t in columns], "rows": rows}
    if ref_id:
        out["refId"] = ref_id
    return out


def _payload(target: dict[str, Any]) -> dict[str, Any]:
    raw = target.get("payload")
    if raw is None:
        raw = target.get("data")
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return {}
        try:
            raw = json.loads(text)
        except ValueError:
            raise InvalidArgument("target payload must be a JSON object") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument("target payload must be a JSON object")
    return raw


def _scoped(body: dict[str, Any], name: str) -> Any:
    scoped = body.get("scopedVars")
    if isinstance(scoped, dict):
        var = scoped.get(name)
        if isinstance(var, dict):
            return var.get("value", var.get("text"))
        return var
    return None


def _cell(value: Any) -> Any:
    """A table cell: booleans as 1/0 (the protocol's column types are string, number and time)."""
    return int(value) if isinstance(value, bool) else value


def _range(body: dict[str, Any]) -> dict[str, Any]:
    """The request's dashboard time range ({"from", "to"}), or {} when absent or malformed."""
    rng = body.get("range")
    return rng if isinstance(rng, dict) else {}


def _unresolved(value: Any) -> bool:
    """A value Grafana left as a variable: empty, $var / ${var} or the older [[var]] syntax."""
    return value is None or (isinstance(value, str) and (not value.strip() or value.strip().startswith(("$", "[["))))


class DataSource:
    """Answers the JSON-datasource endpoints with the service layer."""

    def __init__(self, service: WhySlowService):
        self.service = service

    # --- /metrics, /metric-payload-options, /search ------------------------------------------------
    def metrics(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return METRICS

    def search(self, body: dict[str, Any]) -> list[str]:
        return [m["value"] for m in METRICS]

    def payload_options(self, body: dict[str, Any]) -> list[dict[str, str]]:
        name = body.get("name")
        if name == "entry":
            return [{"label": e, "value": e} for e in self.service.entries()]
        return []

    # --- /query -----------------------------------------------------------------------------------
    def query(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        targets = body.get("targets") or []
        if not isinstance(targets, list):
            raise InvalidArgument("targets must be a list")
        for target in targets[:20]:
            if not isinstance(target, dict) or target.get("hide") is True:
                continue
            kind = target.get("target") or "rca"
            ref_id = target.get("refId") if isinstance(target.get("refId"), str) else None
            if kind == "rca":
                out.extend(self.rca_frames(body, target, ref_id))
            elif kind in ("outliers", "annotations"):
                try:
                    rows = self._outliers(body, _payload(target))
                except ServiceError as exc:
                    out.append(table([("error", "string")], [[exc.message]], ref_id))
                    continue
                out.append(self.outlier_table(rows, ref_id) if kind == "outliers"
                           else self.annotation_table(rows, ref_id))
            elif kind == "incident":
                out.append(self.incident_table(body, target, ref_id))
            elif kind == "regression":
                out.extend(self.regression_frames(body, target, ref_id))
            else:
                out.append(table([("error", "string")], [[f"unknown target {str(kind)[:64]!r}"]], ref_id))
        return out

    def rca_frames(self, body: dict[str, Any], target: dict[str, Any], ref_id: str | None) -> list[dict[str, Any]]:
        """The three frames of one explanation; problems become the summary's status."""
        try:
            payload = _payload(target)
        except InvalidArgument as exc:
            return self._status_frames("error", exc.message, None, ref_id)
        trace_id = payload.get("traceId", payload.get("trace_id"))
        if _unresolved(trace_id):
            trace_id = _scoped(body, "traceId")
        if _unresolved(trace_id):
            return self._status_frames("no_trace", "Select a trace to explain.", None, ref_id)
        trace_id = str(trace_id).strip()
        try:
            intervals = validation.intervals(payload.get("intervals"))
            kind = validation.kind(payload.get("kind"))
        except InvalidArgument as exc:
            return self._status_frames("error", exc.message, None, ref_id)
        try:
            expl = self.service.explain(trace_id, intervals, kind)
        except InvalidArgument as exc:
            return self._status_frames("unknown_trace", f"{exc.message} (got {trace_id[:80]!r})", None, ref_id)
        except NotFound as exc:
            return self._status_frames("unknown_trace", exc.message, trace_id, ref_id)
        except NoModel as exc:
            return self._status_frames("learning", exc.message, trace_id, ref_id)
        except Exception as exc:  # noqa: BLE001 - a panel shows the state, the log has the detail
            log.exception("explaining %s failed", trace_id)
            return self._status_frames("error", f"explanation failed: {type(exc).__name__}", trace_id, ref_id)
        return self.explanation_frames(expl, ref_id)

    def _status_frames(self, status: str, message: str, trace_id: str | None, ref_id: str | None) -> list[dict]:
        summary = [[status, message, trace_id, None, None, None, None, None, None]]
        return [
            table(SUMMARY_COLUMNS, summary, ref_id),
            table(CONTRIBUTION_COLUMNS, [], ref_id),
            table(GRAPH_COLUMNS, [], ref_id),
        ]

    def explanation_frames(self, expl: ExplanationPayload, ref_id: str | None) -> list[dict[str, Any]]:
        ok = expl["is_outlier"]
        message = summary_text(expl) if ok else (
            f"Not an outlier: IT score {expl['outlier_score']:.2f} is below the threshold "
            f"{expl['threshold']:.2f} (rarer than 1 in {rarer_text(expl['rarer_than'])})"
        )
        summary = [[
            "ok" if ok else "not_outlier", message, expl["trace_id"], expl["entry"], expl["target_latency_ms"],
            expl["outlier_score"], expl["rarer_than"], expl["model_traces"], expl.get("kind", "latency"),
        ]]
        contributions = [[_cell(dict[str, Any](c).get(name)) for name, _ in CONTRIBUTION_COLUMNS]
                         for c in expl["contributions"]]
        graph = [[e["source"], e["target"], e["source_contribution"]] for e in expl["graph"]]
        return [
            table(SUMMARY_COLUMNS, summary, ref_id),
            table(CONTRIBUTION_COLUMNS, contributions, ref_id),
            table(GRAPH_COLUMNS, graph, ref_id),
        ]

    # --- outliers: table, annotations, variables -------------------------------------------------
    def _outliers(self, body: dict[str, Any], payload: dict[str, Any]) -> list[dict[str, Any]]:
        rng = _range(body)
        entry = payload.get("entry")
        if _unresolved(entry):
            entry = None
        min_score = payload.get("min_score")
        if _unresolved(min_score):
            min_score = None
        limit = payload.get("limit")
        if _unresolved(limit):
            limit = None
        raw_filters = body.get("adhocFilters")
        filters: list[Any] = raw_filters if isinstance(raw_filters, list) else []
        if entry is None:
            entry = next((f.get("value") for f in filters if isinstance(f, dict) and f.get("key") == "entry"
                          and f.get("operator", "=") == "="), None)
        rows = self.service.outliers(rng.get("from"), rng.get("to"), entry, min_score, limit)
        for f in filters:
            if not isinstance(f, dict) or f.get("key") not in TAG_KEYS:
                continue
            key, op, value = f["key"], f.get("operator", "="), f.get("value")
            if op == "=":
                rows = [r for r in rows if r.get(key) == value]
            elif op == "!=":
                rows = [r for r in rows if r.get(key) != value]
        return rows

    def incident_table(self, body: dict[str, Any], target: dict[str, Any], ref_id: str | None) -> dict[str, Any]:
        """Services behind the dashboard's time range: its explained outliers, shift scores and distribution change
        against the 30 minutes before it (GET /api/v1/incident; ``score``: the combined ranking)."""
        rng = _range(body)
        try:
            entry = _payload(target).get("entry")
            summary = self.service.incident(rng.get("from"), rng.get("to"), None if _unresolved(entry) else entry)
        except ServiceError as exc:
            return table([("error", "string")], [[exc.message]], ref_id)
        rows = [[s["service"], s["share"], s["top_node"], s["first_in"], summary["outliers"], s["score"]]
                for s in summary["services"]]
        return table(INCIDENT_COLUMNS, rows, ref_id)

    def regression_frames(self, body: dict[str, Any], target: dict[str, Any], ref_id: str | None
                          ) -> list[dict[str, Any]]:
        """Summary (one row) and per-node change of the dashboard range against its baseline (GET
        /api/v1/regression); problems become the summary's status."""
        rng = _range(body)
        try:
            payload = _payload(target)
            args = {k: (None if _unresolved(payload.get(k)) else payload.get(k))
                    for k in ("entry", "stat", "baseline_from", "baseline_to", "intervals")}
            r = self.service.regression(args["entry"], args["baseline_from"], args["baseline_to"], rng.get("from"),
                                        rng.get("to"), args["stat"], args["intervals"])
        except ServiceError as exc:
            status = [["error", exc.message] + [None] * (len(REGRESSION_SUMMARY_COLUMNS) - 2)]
            return [table(REGRESSION_SUMMARY_COLUMNS, status, ref_id), table(REGRESSION_COLUMNS, [], ref_id)]
        summary = [[
            "ok", r["summary"], r["entry"], r["stat"], r["unit"], r["baseline_value"], r["comparison_value"],
            r["observed_change"], r["modelled_change"], r["unexplained"], r["noise_floor"], int(r["significant"]),
            r["baseline"]["from_ms"], r["baseline"]["to_ms"], r["baseline"]["source"], r["baseline"]["traces"],
            r["window"]["traces"],
        ]]
        rows = [[c.get(name, "node" if name == "player" else None) for name, _ in REGRESSION_COLUMNS]
                for c in r["contributions"]]
        return [table(REGRESSION_SUMMARY_COLUMNS, summary, ref_id), table(REGRESSION_COLUMNS, rows, ref_id)]

    def outlier_table(self, rows: list[dict[str, Any]], ref_id: str | None) -> dict[str, Any]:
        return table(OUTLIER_COLUMNS, [[r[name] if name != "time" else r["time_ms"] for name, _ in OUTLIER_COLUMNS]
                                       for r in rows], ref_id)

    def annotation(self, row: dict[str, Any]) -> dict[str, Any]:
        tags = ["whyslow"]
        if row.get("root_cause_service"):
            tags.append(f"root-cause:{row['root_cause_service']}")
        return {
            "time": row["time_ms"],
            "timeEnd": row["time_ms"] + int(round(row["target_latency_ms"] or 0)),
            "title": f"Slow {row['entry']} ({row['target_latency_ms']:.0f} ms)",
            "text": f"{row['summary']} [trace {row['trace_id']}]",
            "tags": tags,
        }

    def annotation_table(self, rows: list[dict[str, Any]], ref_id: str | None) -> dict[str, Any]:
        items = [self.annotation(r) for r in rows]
        return table(ANNOTATION_COLUMNS, [[a["time"], a["timeEnd"], a["title"], a["text"], ",".join(a["tags"])]
                                          for a in items], ref_id)

    def annotations(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Legacy POST /annotations (SimpleJson): body has range and annotation{query}."""
        annotation = body.get("annotation") if isinstance(body.get("annotation"), dict) else None
        payload: dict[str, Any] = {}
        query = annotation.get("query") if annotation else None
        if isinstance(query, str) and query.strip() and not query.strip().startswith("#"):
            payload = {"entry": query.strip()}
        rows = self._outliers(body, payload)
        return [{"annotation": annotation, **self.annotation(r)} for r in rows]

    def variable(self, body: dict[str, Any]) -> list[dict[str, str]]:
        raw = body.get("payload")
        payload: dict[str, Any] = raw if isinstance(raw, dict) else {}
        target = payload.get("target") or "outliers"
        if target == "entries":
            return [{"__text": e, "__value": e} for e in self.service.entries()]
        if target != "outliers":
            raise InvalidArgument("variable target must be 'outliers' or 'entries'")
        rows = self._outliers(body, {k: v for k, v in payload.items() if k in ("entry", "min_score", "limit")})
        return [
            {"__text": f"{r['trace_id']} {r['entry']} {r['target_latency_ms']:.0f}ms "
                       f"{r.get('root_cause_service') or ''}".strip(), "__value": r["trace_id"]}
            for r in rows
        ]

    def tag_keys(self, body: dict[str, Any]) -> list[dict[str, str]]:
        return [{"type": "string", "text": k} for k in TAG_KEYS]

    def tag_values(self, body: dict[str, Any]) -> list[dict[str, str]]:
        key = body.get("key")
        if key == "entry":
            return [{"text": e} for e in self.service.entries()]
        if key == "root_cause_service":
            rows = self.service.outliers(limit=validation.MAX_LIMIT)
            return [{"text": s} for s in sorted({r["root_cause_service"] for r in rows if r["root_cause_service"]})]
        raise InvalidArgument(f"unknown tag key; known keys: {', '.join(TAG_KEYS)}")

