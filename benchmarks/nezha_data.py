"""Loader of the Nezha Train-Ticket traces (Yu et al., FSE 2023; MIT) in ../shared/datasets/nezha_trainticket.

Only the 2023-01-30 day is present: 17 latency faults (network delay, CPU contention), 3 one-minute span
files per fault, and one fault-free minute (``construct_data/.../11_39_trace.csv``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DAY = "2023-01-30"
FAULT_FREE = ("construct_data", DAY, "trace", "11_39_trace.csv")


@dataclass
class Fault:
    """One injected fault and the span files of its window."""

    index: int
    inject_ns: int
    service: str  # ground truth: service of the injected pod
    kind: str  # network_delay | cpu_contention (other days also: cpu_consumed, return, exception)
    files: list[Path]


def service_of(pod: str) -> str:
    """``ts-basic-service-5dc8d4f9fd-llznp`` -> ``ts-basic-service`` (pod name minus the last two segments)."""
    return pod.rsplit("-", 2)[0]


def load_faults(root: Path, day: str = DAY, clock: str = "inject_timestamp") -> list[Fault]:
    """The faults of one day of a Nezha directory (``rca_data/<day>/<day>-fault_list.json``), in time order.
    ``clock``: the field that gives the injection time: ``inject_timestamp`` (unix s) or ``inject_time`` (the
    wall-clock text, read as UTC: on 2023-01-29 the timestamps of the code faults are 8 hours off the span files,
    while the text matches them on every day)."""
    data = json.loads((root / "rca_data" / day / f"{day}-fault_list.json").read_text())
    trace_dir = root / "rca_data" / day / "trace"
    faults = []
    for hour in sorted(data, key=int):
        for item in data[hour]:
            ts = (int(item["inject_timestamp"]) if clock == "inject_timestamp"
                  else int(pd.Timestamp(item["inject_time"]).value // 1_000_000_000))
            t = pd.Timestamp(ts, unit="s")
            files = []
            for m in range(3):
                tm = t.floor("min") + pd.Timedelta(minutes=m)
                files.append(trace_dir / f"{tm.hour:02d}_{tm.minute:02d}_trace.csv")
            faults.append(Fault(len(faults), ts * 1_000_000_000, service_of(item["inject_pod"]),
                                item["inject_type"], files))
    return faults


def fault_free_file(root: Path) -> Path:
    return root.joinpath(*FAULT_FREE)


def read_spans(paths: list[Path]) -> pd.DataFrame:
    """Spans of the given CSV files with ``service`` added (existing files only)."""
    frames = [pd.read_csv(p, dtype={"TraceID": str, "SpanID": str, "ParentID": str}) for p in paths if p.exists()]
    df = pd.concat(frames, ignore_index=True).drop_duplicates(subset=["TraceID", "SpanID"])
    df["service"] = df["PodName"].map(service_of)
    return df


def trace_start(spans: pd.DataFrame) -> pd.Series:
    """Start (ns) of each span's trace, aligned with ``spans``."""
    return spans.groupby("TraceID")["StartTimeUnixNano"].transform("min")


def own_times(spans: pd.DataFrame) -> pd.DataFrame:
    """Per span: node id and own time in ms (duration minus the children's durations, floored at 0).

    A span whose children run in another service is a client call: its own time is the call gap (network,
    queueing, the callee's pre/post-processing outside its server span) and is attributed to the callee
    (node ``net:{callee_service}:{callee_operation}``), as the architecture's node naming does.
    """
    s = spans[["TraceID", "SpanID", "ParentID", "service", "OperationName", "Duration", "StartTimeUnixNano"]]
    s = s.copy()
    s["dur_ms"] = s["Duration"].astype(float) / 1000.0
    kids = s[["TraceID", "ParentID", "dur_ms", "service", "OperationName"]].rename(
        columns={"ParentID": "SpanID", "dur_ms": "kid_ms", "service": "kid_service", "OperationName": "kid_op"})
    child_sum = kids.groupby(["TraceID", "SpanID"])["kid_ms"].sum()
    s = s.join(child_sum, on=["TraceID", "SpanID"])
    s["kid_ms"] = s["kid_ms"].fillna(0.0)
    s["own_ms"] = np.maximum(s["dur_ms"] - s["kid_ms"], 0.0)
    # the first child in another service makes this span a client call
    remote = kids.merge(s[["TraceID", "SpanID", "service"]], on=["TraceID", "SpanID"])
    remote = remote[remote["kid_service"] != remote["service"]].drop_duplicates(subset=["TraceID", "SpanID"])
    s = s.merge(remote[["TraceID", "SpanID", "kid_service", "kid_op"]], on=["TraceID", "SpanID"], how="left")
    is_gap = s["kid_service"].notna()
    s["kind"] = np.where(is_gap, "call_gap", "span")
    s["node_service"] = np.where(is_gap, s["kid_service"], s["service"])
    s["node"] = np.where(is_gap, "net:" + s["kid_service"].astype(str) + ":" + s["kid_op"].astype(str),
                         s["service"] + ":" + s["OperationName"])
    return s[["TraceID", "SpanID", "node", "node_service", "kind", "own_ms", "dur_ms", "StartTimeUnixNano"]]
