"""The records that travel between the collector's parts and out of it: the analysed batch the analyser
produces and the trace store keeps, the call graph of an entry point, a stored trace's features, and the
completed trace listeners get. The bottom of the collector: it imports nothing from the rest of it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# columns of AnalysedBatch.values
LAT, OWN, GAP, COUNT, ERR, FIRST = range(6)


@dataclass
class AnalysedBatch:
    """Everything the store keeps about a batch of completed traces (features in long form, by trace)."""

    trace_ids: list[str]
    entries: list[str]                 # entry node per trace
    start: np.ndarray                  # root start (ns) per trace
    duration_ms: np.ndarray            # root duration per trace
    complete: np.ndarray               # bool per trace
    n_spans: np.ndarray                # spans per trace
    f_trace: np.ndarray                # feature rows: trace ordinal (sorted)
    f_node_idx: np.ndarray             # feature rows: index into ``nodes``
    nodes: list[str]                   # the distinct nodes of the batch
    values: np.ndarray                 # feature rows: (latency, own, gap, count, error, first offset) ms
    # feature rows: the node failed and a failed span of it has a failed callee span (empty: not computed)
    callee_error: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    node_info: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # node -> (service, op, kind)
    graph_nodes: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (entry, node) -> [traces, par, seq]
    graph_edges: dict[tuple[str, str, str], int] = field(default_factory=dict)   # (entry, caller, callee) -> traces
    orphan_spans: int = 0
    cycle_spans: int = 0
    skewed_spans: int = 0
    reparented_spans: int = 0          # spans adopted by a wrapper span (see call_graph.wrapper_adoptions)

    def __len__(self) -> int:
        return len(self.trace_ids)

    def bounds(self) -> np.ndarray:
        """Feature-row offsets: rows of trace k are ``bounds[k]:bounds[k+1]``."""
        return np.searchsorted(self.f_trace, np.arange(len(self.trace_ids) + 1))

    def errors(self, k: int, b: np.ndarray | None = None) -> dict[str, int]:
        """Node -> failed spans of trace k, for the nodes that failed."""
        b = self.bounds() if b is None else b
        lo, hi = int(b[k]), int(b[k + 1])
        err = self.values[lo:hi, ERR]
        hit = np.flatnonzero(err > 0)
        return {self.nodes[int(self.f_node_idx[lo + i])]: int(err[i]) for i in hit.tolist()}

    def row(self, k: int, b: np.ndarray | None = None) -> dict[str, float]:
        """Node -> latency (ms) of trace k."""
        b = self.bounds() if b is None else b
        lo, hi = int(b[k]), int(b[k + 1])
        nodes = self.nodes
        return dict(zip([nodes[i] for i in self.f_node_idx[lo:hi].tolist()], self.values[lo:hi, LAT].tolist(),
                        strict=True))


@dataclass(frozen=True)
class NodeInfo:
    """Metadata of a node: who to blame (service), what it does (operation), how it was built (kind),
    and how its children's latencies combine into its own (``"sum"`` | ``"max"`` | ``None`` for leaves)."""

    service: str
    operation: str
    kind: str  # "span" | "call_gap" | "db" | "messaging"
    structure: str | None = None


@dataclass
class CallGraph:
    """Call graph of one entry point: ``call_edges`` are caller -> callee, without cycles (the engine's
    ``rca_engine.invert_call_graph`` turns them into the causal graph of latencies; plugin.causal_graph composes)."""

    entry: str
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    call_edges: list[tuple[str, str]] = field(default_factory=list)
    traces: int = 0

    def mechanisms(self) -> dict[str, str]:
        """Node -> ``"sum"`` | ``"max"`` for every non-leaf node (rca_engine's ``mechanisms`` dict)."""
        return {n: m.structure for n, m in self.nodes.items() if m.structure is not None}


@dataclass
class NodeFeatures:
    """One node's values in one trace (ms)."""

    latency_ms: float
    own_ms: float
    gap_ms: float
    count: int
    error: bool
    start_offset_ms: float
    errors: int = 0  # how many of the node's spans failed (``error``: at least one)
    callee_error: bool = False  # it failed and a span of it had a failed callee span (its error may be a callee's)


@dataclass
class TraceFeatures:
    """A stored trace: entry point, timing and per-node features."""

    trace_id: str
    entry: str
    start_unix_nano: int
    duration_ms: float
    complete: bool
    n_spans: int
    nodes: dict[str, NodeFeatures] = field(default_factory=dict)

    def row(self) -> dict[str, float]:
        """Node -> latency (ms): the wide feature row of this trace."""
        return {n: f.latency_ms for n, f in self.nodes.items()}

    def mark_callee_errors(self, call_edges: list[tuple[str, str]]) -> None:
        """Set each failed node's ``callee_error`` from the call graph's caller -> callee edges: a failed node with
        a failed callee node in the trace. The fallback for traces stored before the stores kept the flag computed
        at analysis time from the spans (``AnalysedBatch.callee_error``)."""
        for caller, callee in call_edges:
            a, b = self.nodes.get(caller), self.nodes.get(callee)
            if a is not None and b is not None and a.error and b.error:
                a.callee_error = True


@dataclass
class CompletedTrace:
    """What listeners get for every stored trace."""

    trace_id: str            # 32 lower-case hex digits
    entry: str               # entry point node id (root span type)
    start_unix_nano: int
    duration_ms: float       # root span duration
    complete: bool           # root seen and completed by idle time (False: evicted / no root / detached spans)
    row: dict[str, float] = field(default_factory=dict)  # node -> latency (ms), the trace's feature row
    n_spans: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # node -> failed spans, only nodes that failed

    @property
    def failed(self) -> bool:
        """Whether the entry point's span failed (the request's outcome)."""
        return self.errors.get(self.entry, 0) > 0
