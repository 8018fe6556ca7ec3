"""The explanation payload every API serves: one JSON object, persisted by the results store and read by REST
(``Explanation`` in /openapi.json), gRPC (``pb.Explanation``) and the JSON data source, so the three agree.

TypedDicts (not dataclasses): the payload is JSON from end to end (stored as text, served as is), and a
TypedDict lets mypy check every reader without a conversion step on the hot path."""

from __future__ import annotations

from typing import TypedDict


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


class CausalEdgeRow(TypedDict):
    """An edge of the causal graph (cause -> effect) with the contribution of its source."""

    source: str
    target: str
    source_contribution: float


class ExplanationPayload(TypedDict):
    """Why one trace was slow: its IT outlier score and every node's contribution (built by
    ``plugin.explain.build_payload``; ``version`` is ``plugin.explain.PAYLOAD_VERSION``)."""

    version: int
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
