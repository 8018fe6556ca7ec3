"""What `whyslow mcp` offers an AI assistant: one `Tool` per question, each a REST call to `whyslow serve` and a
short text answer the assistant can quote (top causes in ms and share, rarity, links to the panel).

A tool that needs a newer endpoint names it in ``requires``; the server offers the tool only when the running
`whyslow serve` lists that route in its OpenAPI document (how `regression` and failed-trace explanations join as
those endpoints land: one more `Tool` in `TOOLS`).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from plugin.explain import contributor_label, rarer_text, top_contributors
from plugin.mcp_rest import BackendError, WhySlowREST

_TRACE_ID = re.compile(r"^[0-9a-fA-F]{1,32}$")


@dataclass(frozen=True)
class Links:
    """Where a person can look at an explanation: the server's own page, and Grafana's dashboard when known."""

    ui_base: str
    grafana_url: str | None = None
    dashboard_uid: str = "whyslow-rca"

    def trace(self, trace_id: str) -> str:
        parts = [f"panel: {self.ui_base}/ui/?traceId={trace_id}"]
        if self.grafana_url:
            parts.append(f"Grafana: {self.grafana_url}/d/{self.dashboard_uid}?var-traceId={trace_id}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Tool:
    """One MCP tool: its name, what it answers (the assistant reads this), and the call that answers it."""

    name: str
    description: str
    run: Callable[..., str]
    requires: str | None = None  # REST route that must exist on the server for the tool to be offered


def _ms(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:,.0f} ms" if abs(value) >= 10 else f"{value:.1f} ms"


def _when(ms: int | None) -> str:
    if ms is None:
        return "?"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def explain_trace(rest: WhySlowREST, links: Links, trace_id: str, top: int = 3) -> str:
    """Why was this trace slow: verdict, rarity and the top causes with their share and time."""
    trace_id = trace_id.strip().lower()
    if not _TRACE_ID.fullmatch(trace_id):
        return f"'{trace_id[:64]}' is not a trace id (expected up to 32 hexadecimal digits)."
    trace_id = trace_id.rjust(32, "0")
    try:
        e = rest.get(f"/api/v1/traces/{trace_id}/rca")
    except BackendError as exc:
        if exc.status == 404:
            return f"whyslow has no trace {trace_id} (not received, or past retention)."
        if exc.status == 409:
            return f"Trace {trace_id}: whyslow is still learning its entry point's normal behaviour; try later."
        return str(exc)
    head = (f"Trace {trace_id} ({e['entry']}) took {_ms(e['target_latency_ms'])}; "
            f"rarer than 1 in {rarer_text(e['rarer_than'])} requests "
            f"(outlier score {e['outlier_score']:.1f} nats, threshold {e['threshold']:.1f}).")
    if not e["is_outlier"]:
        return f"{head}\nNot an outlier: within what is normal for {e['entry']}.\n{links.trace(trace_id)}"
    lines = [head, "Top causes (share of the outlier score; the trace's latency had this node been typical):"]
    for i, c in enumerate(top_contributors(e, max(1, min(int(top), 10))), 1):
        own = c.get("own_latency_ms")
        lines.append(
            f"{i}. {contributor_label(c)} [{c['service']}]: {100 * c['share']:.0f}%"
            + (f", {'call gap' if c.get('kind') == 'call_gap' else 'own time'} {_ms(own)}" if own is not None else "")
            + f", would have taken {_ms(c.get('counterfactual_latency_ms'))}")
    if len(lines) == 2:
        lines.append("(no node contributes positively)")
    lines.append(links.trace(trace_id))
    return "\n".join(lines)


def list_outliers(rest: WhySlowREST, links: Links, since: str = "now-1h", until: str = "now",
                  entry: str | None = None, limit: int = 10) -> str:
    """The slowest-to-explain requests whyslow flagged in a time window, newest first."""
    limit = max(1, min(int(limit), 100))
    try:
        body = rest.get("/api/v1/outliers", {"from": since, "to": until, "entry": entry, "limit": limit})
    except BackendError as exc:
        return str(exc)
    outliers = body.get("outliers", [])
    if not outliers:
        return f"No outliers between {since} and {until}" + (f" for {entry}." if entry else ".")
    lines = [f"{len(outliers)} outlier(s) between {since} and {until}, newest first:"]
    for o in outliers:
        cause = (f"mostly {o['root_cause_service']} ({o['root_cause_node']}, {100 * o['root_cause_share']:.0f}%)"
                 if o.get("root_cause_service") else "not explained yet")
        lines.append(f"- {_when(o['time_ms'])} {o['entry']}: {_ms(o['target_latency_ms'])}, 1 in "
                     f"{rarer_text(o['rarer_than'])}, {cause}; trace {o['trace_id']}; {links.trace(o['trace_id'])}")
    return "\n".join(lines)


def incident(rest: WhySlowREST, links: Links, since: str = "now-1h", until: str = "now",
             entry: str | None = None) -> str:
    """Which service is behind the slow requests of a time window (one vote per explained outlier)."""
    try:
        body = rest.get("/api/v1/incident", {"from": since, "to": until, "entry": entry})
    except BackendError as exc:
        return str(exc)
    n = body.get("outliers", 0)
    if not n:
        return f"No explained outliers between {since} and {until}: nothing points at a service."
    lines = [f"{n} explained outlier(s) between {since} and {until} on {', '.join(body.get('entries', []))}; "
             "services behind them (share of the votes, one per outlier):"]
    for i, s in enumerate(body.get("services", [])[:5], 1):
        lines.append(f"{i}. {s['service']}: {100 * s['share']:.0f}%, ranked first in {s['first_in']} of {n}"
                     + (f", mostly {s['top_node']}" if s.get("top_node") else ""))
    query = urllib.parse.urlencode({k: v for k, v in {"from": since, "to": until, "entry": entry}.items() if v})
    lines.append(f"details: {rest.base_url}/api/v1/incident?{query}")
    return "\n".join(lines)


def _signed(value: float, unit: str) -> str:
    if unit in ("probability", "percentage_points"):  # error_rate: already in percentage points
        return f"{(100 if unit == 'probability' else 1) * value:+.2f} percentage points"
    return f"{value:+,.1f} ms"


def _value(value: float, unit: str) -> str:
    if unit in ("probability", "percentage_points"):
        return f"{(100 if unit == 'probability' else 1) * value:.2f}%"
    return _ms(value)


def regression(rest: WhySlowREST, links: Links, entry: str | None = None, since: str = "now-15m",
               until: str = "now", stat: str = "p99", baseline_from: str | None = None,
               baseline_to: str | None = None) -> str:
    """Why a latency statistic of an entry point moved between a baseline and a window (GET /api/v1/regression)."""
    params = {"entry": entry, "from": since, "to": until, "stat": stat, "baseline_from": baseline_from,
              "baseline_to": baseline_to}
    try:
        r = rest.get("/api/v1/regression", params)
    except BackendError as exc:
        return str(exc)
    unit = r.get("unit", "ms")
    base = r.get("baseline", {})
    lines = [f"{r['stat']} of {r['entry']} went from {_value(r['baseline_value'], unit)} "
             f"(baseline, {base.get('source', 'given')}) to {_value(r['comparison_value'], unit)}: "
             f"{_signed(r['observed_change'], unit)} observed, {_signed(r['modelled_change'], unit)} explained by the "
             f"services below; resampling alone moves it by {_signed(r['noise_floor'], unit).lstrip('+')} "
             f"({'a real change' if r['significant'] else 'not significant'})."]
    services = r.get("services", [])[:5]
    if services:
        lines.append("Services that moved it:")
        lines += [f"{s['rank']}. {s['service']}: {_signed(s['contribution'], unit)} ({', '.join(s['nodes'][:3])})"
                  for s in services]
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v})
    lines.append(f"details: {rest.base_url}/api/v1/regression?{query}")
    return "\n".join(lines)


TOOLS: list[Tool] = [
    Tool("explain_trace",
         "Explain why one trace (OpenTelemetry trace id, 32 hex digits) was slow: which services caused it, "
         "their share of the latency outlier, own time in ms, how rare the latency is, and links to the panel.",
         explain_trace),
    Tool("list_outliers",
         "List the unusually slow requests whyslow found in a time window (from/to as 'now-1h', 'now', ISO 8601 "
         "or unix ms; optional entry point), newest first, each with its main cause and trace id.",
         list_outliers),
    Tool("incident",
         "Which service is behind the slow requests of a time window (from/to as 'now-1h', 'now', ISO 8601 or "
         "unix ms): services ranked by their share of the explained outliers.",
         incident),
    Tool("regression",
         "Why a latency statistic (p99 by default; mean, median, pNN or tail>T ms) -- or, with stat=error_rate, the "
         "error rate -- of an entry point changed between a baseline (default: a day earlier, else the hour before) "
         "and a window (default the last 15 minutes): the services that moved it, in ms (percentage points for the "
         "error rate), and whether the change is beyond noise.",
         regression, requires="/api/v1/regression"),
]


def available(rest: WhySlowREST, tools: list[Tool] = TOOLS) -> list[Tool]:
    """The tools this server can answer: those without a requirement, and those whose route it lists."""
    return [t for t in tools if t.requires is None or rest.has_route(t.requires)]


def call(tool: Tool, rest: WhySlowREST, links: Links, **arguments: Any) -> str:
    """Run one tool; anything unexpected becomes a one-line answer, never a traceback."""
    try:
        return tool.run(rest, links, **arguments)
    except (KeyError, TypeError, ValueError) as exc:
        return f"whyslow answered {tool.name} with something unexpected ({type(exc).__name__}: {exc})"
