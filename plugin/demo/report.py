"""Readable terminal explanation of one slow trace (the same content the panel shows).

Input is the server's explanation object (``GET /api/v1/traces/{id}/rca``): ranked ``contributions`` with
``service``, ``operation``, ``kind``, ``contribution`` (nats), ``share`` and ``counterfactual_latency_ms``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BAR_WIDTH = 28


def display_name(service: str, names: Mapping[str, str]) -> str:
    """Human name of a service (the demo's catalogue), else the service name itself."""
    return names.get(service, service)


def node_label(c: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """What a contribution row is about, in words: a service, a database query, or a network hop."""
    who = display_name(str(c.get("service") or ""), names)
    kind = c.get("kind")
    op = str(c.get("operation") or "")
    if kind == "call_gap":
        return f"network → {who}"
    if kind in ("db", "messaging"):
        return f"{who} ({op})" if op else who
    return f"{who} ({op})" if op else who


def seconds(ms: float | None) -> str:
    """Latency in ms shown in seconds (or ms when short)."""
    if ms is None:
        return "?"
    return f"{ms / 1000:.2f} s" if abs(ms) >= 100 else f"{ms:.0f} ms"


def top_cause(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The largest positive contribution of an explanation, or None."""
    rows = [c for c in payload.get("contributions", []) if (c.get("contribution") or 0) > 0]
    return max(rows, key=lambda c: c["contribution"]) if rows else None


def render_explanation(payload: Mapping[str, Any], names: Mapping[str, str], top: int = 5) -> str:
    """Ranked bars of the top contributors with their share and the counterfactual latency of the entry."""
    entry = str(payload.get("entry") or "")
    entry_service = entry.partition(":")[0]
    entry_name = display_name(entry_service, names)
    latency = payload.get("target_latency_ms")
    score = float(payload.get("outlier_score") or 0.0)
    rarer = float(payload.get("rarer_than") or 1.0)
    lines = [
        f"Trace {payload.get('trace_id')}: {entry_name} ({entry.partition(':')[2]}) took {seconds(latency)}"
        f" — IT outlier score {score:.1f} nats, rarer than 1 in {rarer:,.0f} normal requests"
    ]
    rows = [c for c in payload.get("contributions", []) if (c.get("contribution") or 0) > 0][:top]
    if not rows:
        lines.append("  no service contributed positively (the model sees nothing unusual)")
        return "\n".join(lines)
    biggest = max(float(c["contribution"]) for c in rows)
    width = max(len(node_label(c, names)) for c in rows)
    for i, c in enumerate(rows, start=1):
        contribution = float(c["contribution"])
        n = max(1, round(BAR_WIDTH * contribution / biggest)) if biggest > 0 else 0
        bar = "█" * n + " " * (BAR_WIDTH - n)
        share = float(c.get("share") or 0.0)
        line = f"  {i}. {node_label(c, names):<{width}}  {bar} {contribution:6.2f} nats {100 * share:5.0f}%"
        cf = c.get("counterfactual_latency_ms")
        # the counterfactual line only where it says something (a visible change of the entry's latency)
        if cf is not None and latency is not None and abs(latency - cf) >= max(10.0, 0.01 * abs(latency)):
            who = display_name(str(c.get("service") or ""), names)
            what = "the network into " + who if c.get("kind") == "call_gap" else who
            line += f"\n     {entry_name} would have taken {seconds(cf)} instead of {seconds(latency)} had {what} been normal"
        lines.append(line)
    negative = sum(float(c["contribution"]) for c in payload.get("contributions", [])
                   if (c.get("contribution") or 0) < 0)
    if rows and float(rows[0].get("share") or 0.0) > 1.0 and negative < 0:
        lines.append(f"     (shares are of the outlier score; the other nodes' negative contributions, "
                     f"{negative:.2f} nats together, offset part of it)")
    return "\n".join(lines)


def render_failure(payload: Mapping[str, Any], names: Mapping[str, str], top: int = 5) -> str:
    """Why one request failed: the services whose own failure made it fail, with their share, the chance it
    would have succeeded without it, and the errors a caller handled."""
    entry = str(payload.get("entry") or "")
    entry_name = display_name(entry.partition(":")[0], names)
    score = float(payload.get("outlier_score") or 0.0)
    rarer = float(payload.get("rarer_than") or 1.0)
    lines = [f"Trace {payload.get('trace_id')}: {entry_name} ({entry.partition(':')[2]}) failed"
             f" — IT outlier score {score:.1f} nats, rarer than 1 in {rarer:,.0f} normal requests"]
    contributions = payload.get("contributions", [])
    rows = [c for c in contributions if (c.get("contribution") or 0) > 0][:top]
    for i, c in enumerate(rows, start=1):
        line = (f"  {i}. {node_label(c, names)}: {float(c['contribution']):.2f} nats "
                f"({100 * float(c.get('share') or 0.0):.0f}%), failed on its own with probability "
                f"{float(c.get('own_failure') or 0.0):.2f}")
        if float(c.get("success_without") or 0.0) > 0:
            line += (f"\n     had it not failed, the request would have succeeded with probability "
                     f"{float(c['success_without']):.2f}")
        lines.append(line)
    handled = [node_label(c, names) for c in contributions if c.get("handled")]
    if handled:
        lines.append(f"  handled by their caller (not blamed): {', '.join(handled)}")
    return "\n".join(lines)


def answer_failure(payload: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """The failure question in one line: which service's own failure made the request fail."""
    cause = top_cause(payload)
    if cause is None:
        return "Nothing stands out: no service's own failure explains this request's failure."
    return (f"Answer: the request failed because {display_name(str(cause.get('service') or ''), names)} failed "
            f"on its own; the services above it only passed its error on.")


def answer(payload: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """The demo's question in one line: a slow database in the back end, a malfunctioning service, or the
    network? (from the top cause of one explanation)."""
    cause = top_cause(payload)
    if cause is None:
        return "Nothing stands out: no node made this request unusually slow."
    who = display_name(str(cause.get("service") or ""), names)
    kind = cause.get("kind")
    if kind in ("db", "messaging"):
        return f"Answer: a slow database in the back end, {who}, not a malfunctioning service."
    if kind == "call_gap":
        return f"Answer: neither a database nor a service's own work: the network on the calls into {who}."
    return f"Answer: a malfunctioning service, {who} (its own work), not a slow database."


def render_regression(payload: Mapping[str, Any], names: Mapping[str, str], top: int = 5) -> str:
    """Ranked bars of the services that moved a latency statistic (``GET /api/v1/regression``), in ms, with
    their intervals and the counterfactual statistic had each not changed."""
    stat = str(payload.get("stat") or "")
    lines = [f"{stat} of the page load: {seconds(payload.get('baseline_value'))} before, "
             f"{seconds(payload.get('comparison_value'))} after ({_signed(payload.get('observed_change'))}); "
             f"the changed services explain {_signed(payload.get('modelled_change'))}, "
             f"resampling noise alone reaches ±{seconds(payload.get('noise_floor'))}"]
    rows = [c for c in payload.get("contributions", [])][:top]
    if not rows or not payload.get("significant"):
        lines.append("  no service changed beyond resampling noise")
        return "\n".join(lines)
    biggest = max(abs(float(c["contribution"])) for c in rows) or 1.0
    width = max(len(node_label(c, names)) for c in rows)
    for i, c in enumerate(rows, start=1):
        value = float(c["contribution"])
        bar = "█" * max(1, round(BAR_WIDTH * abs(value) / biggest))
        lo, hi = c.get("contribution_lo"), c.get("contribution_hi")
        interval = f"  (95% {seconds(lo)} .. {seconds(hi)})" if lo is not None and hi is not None else ""
        line = f"  {i}. {node_label(c, names):<{width}}  {bar:<{BAR_WIDTH}} {_signed(value)}{interval}"
        cf = c.get("counterfactual")
        if cf is not None:
            line += f"\n     {stat} would be {seconds(cf)} had it not changed"
        lines.append(line)
    return "\n".join(lines)


def _signed(ms: Any) -> str:
    if ms is None:
        return "?"
    return ("+" if float(ms) >= 0 else "-") + seconds(abs(float(ms)))
