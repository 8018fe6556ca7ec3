"""The explanation payload every API serves: one JSON object, persisted by the results store and read by REST
(``Explanation`` in /openapi.json), gRPC (``pb.Explanation``) and the JSON data source, so the three agree.

TypedDicts (not dataclasses): the payload is JSON from end to end (stored as text, served as is), and a
TypedDict lets mypy check every reader without a conversion step on the hot path."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class ContributionRow(TypedDict):
    """One node's share of the outlier score, ranked (1 = largest contribution)."""

    rank: int
    node: str
    service: str
    operation: str
    kind: str
    contribution: float
    share: float
    contribution_lo: float | None
    contribution_hi: float | None
    own_latency_ms: float | None
    node_latency_ms: float | None
    counterfactual_latency_ms: float | None
    # error explanations only: the node failed in this trace; the probability it failed on its own (not
    # through a failing callee); P(the request succeeds) had it not failed on its own; it failed but its
    # caller recovered (a handled error)
    failed: NotRequired[bool]
    own_failure: NotRequired[float]
    success_without: NotRequired[float]
    handled: NotRequired[bool]


class CausalEdgeRow(TypedDict):
    """An edge of the causal graph (cause -> effect) with the contribution of its source."""

    source: str
    target: str
    source_contribution: float


class ExplanationPayload(TypedDict):
    """Why one trace was slow: its IT outlier score and every node's contribution (built by
    ``plugin.explain.build_payload``; ``version`` is ``plugin.explain.PAYLOAD_VERSION``)."""

    version: int
    kind: NotRequired[str]  # "latency" (why slow; absent in payloads saved before errors) | "error" (why failed)
    trace_id: str
    entry: str
    start_unix_nano: int
    time_ms: int
    target_latency_ms: float
    outlier_score: float
    rarer_than: float
    is_outlier: bool
    threshold: float
    model_traces: int
    model_fitted_at: float
    intervals: int
    attribution_seconds: float
    contributions: list[ContributionRow]
    graph: list[CausalEdgeRow]


# A detected regression of an entry point (plugin.watch.regression_payload): ``kind`` is ``"regression"``; it
# travels through the same outlier hub, annotation pusher and WatchOutliers stream as an explanation.
RegressionAlert = dict[str, Any]
HubPayload = ExplanationPayload | RegressionAlert


def services_of(contributions: list[dict[str, Any]], modelled_change: float) -> list[dict[str, Any]]:
    """A regression's contributions summed per service (``service``, ``contribution``, ``nodes``), ranked in the
    direction of the modelled change: what moved the statistic most comes first."""
    per_service: dict[str, dict[str, Any]] = {}
    for row in contributions:
        agg = per_service.setdefault(row["service"], {"service": row["service"], "contribution": 0.0, "nodes": []})
        agg["contribution"] += row["contribution"]
        agg["nodes"].append(row["node"])
    sign = 1.0 if modelled_change >= 0 else -1.0
    services = sorted(per_service.values(), key=lambda s: -sign * s["contribution"])
    for rank, s in enumerate(services, 1):
        s["rank"] = rank
    return services
