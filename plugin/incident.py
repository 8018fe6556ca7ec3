"""Incident summary: which service is behind the slow traces of a time window.

Each explained outlier votes once, its positive contributions normalised to sum 1 (two extreme traces do not
outvote many moderate ones). Evidence on a node inside one service counts for that service. A call gap or a database
call is an edge between two pods, and a delay at either end shows there (a network delay on the callee's
interface, CPU contention in the caller slowing its outgoing calls), so its evidence is split between the two ends
by :func:`resolve_edge_ends`. Validation: ``benchmarks/nezha_trainticket.py`` (Train Ticket faults named first in
17 of 17 when each flow's outliers are picked relative to its fault-free traces and their background is subtracted;
12 of 17 on the outliers ``whyslow serve`` explains at its default threshold). ``GET /api/v1/incident`` combines this
outlier evidence with the window's shift scores and distribution change against its baseline
(:mod:`plugin.incident_ranking`; ``benchmarks/nezha_serve.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

EDGE_KINDS = ("call_gap", "db", "messaging")


def resolve_edge_ends(singles: dict[str, float], pairs: dict[tuple[str, str], float],
                      steps: int = 1, seen: set[tuple[str, str]] | None = None) -> dict[str, float]:
    """Per-service evidence when an edge's delay may come from either end (network tomography's question).

    Evidence on nodes inside a service counts for it. An edge's evidence (``pairs``, keyed (callee, caller)) is
    first split half to each end, then (``steps`` times) re-split in proportion to each end's weight. Without
    ``seen`` the weight is the end's total evidence: a pod whose calls to *several* peers are all slow collects
    the edges, while each peer has only the one edge. With ``seen`` (the edges present in the attributed traces,
    slow or not) the weight is the end's own evidence plus its *mean* evidence per edge over its incoming edges or
    over its outgoing edges, whichever is larger ("per edge"): a pod-level fault is consistent in one direction --
    a delay on a pod's interface slows every call *into* it, CPU contention its work and every call it makes -- so
    an end whose other edges in that direction are fine (a gateway or orchestrator calling many peers, one of them
    slow) is the less likely culprit, however much total evidence it gathers. With 0 steps this is the plain half
    split; with many the split becomes winner-take-all per edge.
    """
    total = dict(singles)
    for (a, b), x in pairs.items():
        total[a] = total.get(a, 0.0) + x / 2
        total[b] = total.get(b, 0.0) + x / 2
    weight = total
    if seen is not None:
        inward: dict[str, list[float]] = {}
        outward: dict[str, list[float]] = {}
        for callee, caller in seen | set(pairs):
            x = pairs.get((callee, caller), 0.0) / 2
            inward.setdefault(callee, []).append(x)
            outward.setdefault(caller, []).append(x)
        ends = set(inward) | set(outward)
        weight = {e: singles.get(e, 0.0) + max(_mean(inward.get(e, [0.0])), _mean(outward.get(e, [0.0])))
                  for e in ends}
    for _ in range(steps):
        new = dict(singles)
        for (a, b), x in pairs.items():
            wa, wb = weight.get(a, 0.0), weight.get(b, 0.0)
            f = 0.5 if wa + wb <= 0 else wa / (wa + wb)
            new[a] = new.get(a, 0.0) + x * f
            new[b] = new.get(b, 0.0) + x * (1 - f)
        total = new
        if seen is None:
            weight = total
    return total


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def explanation_edges(payload: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Node -> (callee service, caller service) for the nodes of an Explanation that time an edge between two
    services (call gaps, database and messaging calls); the caller is the node the edge's latency flows into."""
    service = {c["node"]: c["service"] for c in payload.get("contributions", [])}
    kind = {c["node"]: c.get("kind", "span") for c in payload.get("contributions", [])}
    out: dict[str, tuple[str, str]] = {}
    for edge in payload.get("graph", []):
        node, caller = edge["source"], edge["target"]
        if kind.get(node) in EDGE_KINDS and caller in service and service[caller] != service.get(node):
            out[node] = (service[node], service[caller])
    return out


def summarize(payloads: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Services ranked by their share of the evidence of the given explanations (Explanation payloads)."""
    singles: dict[str, float] = {}
    pairs: dict[tuple[str, str], float] = {}
    seen: set[tuple[str, str]] = set()
    first_by: dict[str, int] = {}
    top_node: dict[str, tuple[float, str]] = {}
    n = 0
    for payload in payloads:
        n += 1
        contributions = payload.get("contributions", [])
        positive = {c["node"]: float(c["contribution"]) for c in contributions if c["contribution"] > 0}
        if not positive:
            continue
        total = sum(positive.values())
        edges = explanation_edges(payload)
        seen.update(edges.values())
        service = {c["node"]: c["service"] for c in contributions}
        for node, value in positive.items():
            vote = value / total
            if node in edges:
                pairs[edges[node]] = pairs.get(edges[node], 0.0) + vote
            else:
                singles[service[node]] = singles.get(service[node], 0.0) + vote
            best = top_node.get(service[node])
            if best is None or vote > best[0]:
                top_node[service[node]] = (vote, node)
        lead = contributions[0]["service"] if contributions else None
        if lead is not None:
            first_by[lead] = first_by.get(lead, 0) + 1
    scores = resolve_edge_ends(singles, pairs, seen=seen)
    ranked = sorted((s for s, v in scores.items() if v > 0), key=lambda s: (-scores[s], s))
    return {
        "outliers": n,
        "services": [
            {
                "service": s,
                "share": scores[s] / n if n else 0.0,
                "top_node": top_node[s][1] if s in top_node else None,
                "first_in": first_by.get(s, 0),
            }
            for s in ranked
        ],
    }
