"""Call-graph helpers; the :class:`CallGraph` record itself lives in :mod:`collector_processor.records`."""

from __future__ import annotations

from collector_processor.records import CallGraph, NodeInfo

__all__ = ["CallGraph", "NodeInfo", "infer_structure"]


def infer_structure(has_children: bool, overlapping: int, sequential: int) -> str | None:
    """``"max"`` when the children of a node mostly ran in parallel, ``"sum"`` otherwise; None for leaves."""
    if not has_children:
        return None
    return "max" if overlapping > sequential else "sum"
