"""Replica pieces in-process on one ClickHouse (chdb): entry-point ownership, the WatchOutliers follower, and
fragments of a trace split across replicas: stored incomplete, held back by the settle gate whichever part is
stored first, never fitted on."""

from __future__ import annotations

import time

import numpy as np
import pytest

from collector_processor.records import AnalysedBatch, CompletedTrace
from plugin.clickhouse_results import open_clickhouse_stores
from plugin.replicas import OutlierFollower, ReplicaShare, SettleGate, settle_delay
from tests.support.chdb import fresh_url


def test_every_entry_point_has_exactly_one_owner():
    entries = [f"svc{k}:GET /{k}" for k in range(200)]
    shares = [ReplicaShare(i, 3) for i in range(3)]
    owners = [[s.owns(e) for s in shares] for e in entries]
    assert all(sum(o) == 1 for o in owners)
    per_replica = np.sum(owners, axis=0)
    assert per_replica.min() > 40  # spread, not all on one replica
    assert ReplicaShare(0, 1).owns("anything") and ReplicaShare(2, 3).owner("x") == ReplicaShare(0, 3).owner("x")


def test_follower_publishes_other_replicas_outliers_once():
    url = fresh_url()
    _, mine = open_clickhouse_stores(url, replica="0")
    _, theirs = open_clickhouse_stores(url, replica="1")
    heard: list[str] = []
    follower = OutlierFollower(mine, "0", lambda p: heard.append(p["trace_id"]))
    theirs.save_explanation("a" * 32, {"trace_id": "a" * 32, "contributions": []})
    mine.save_explanation("b" * 32, {"trace_id": "b" * 32, "contributions": []})  # its own: the detector publishes
    assert follower.poll() == 1 and heard == ["a" * 32]
    assert follower.poll() == 0 and heard == ["a" * 32]  # the overlap re-reads it, nobody hears it twice
    theirs.save_explanation("c" * 32, {"trace_id": "c" * 32, "contributions": []})
    assert follower.poll() == 1 and heard == ["a" * 32, "c" * 32]


def _one(trace_id: str, complete: bool = True) -> AnalysedBatch:
    return AnalysedBatch(
        trace_ids=[trace_id], entries=["svc:GET /r"], start=np.array([1_700_000_000_000_000_000]),
        duration_ms=np.array([10.0]), complete=np.array([complete]), n_spans=np.array([1]),
        f_trace=np.array([0]), f_node_idx=np.array([0]), nodes=["svc:GET /r"], values=np.array([[10.0, 10, 0, 1, 0, 0]]),
        node_info={"svc:GET /r": ("svc", "GET /r", "span")}, graph_nodes={("svc:GET /r", "svc:GET /r"): [1, 0, 0]})


def test_a_trace_split_across_replicas_is_stored_incomplete():
    url = fresh_url()
    r0, _ = open_clickhouse_stores(url, replica="0")
    r1, _ = open_clickhouse_stores(url, replica="1")
    assert r0.write_batch(_one("1" * 32)) == 0
    assert r0.write_batch(_one("1" * 32)) == 1 and not r0.fragments  # its own trace re-opened: replaced
    assert list(r0.features("svc:GET /r", complete_only=True).index) == ["1" * 32]
    fragment = _one("1" * 32)
    assert r1.write_batch(fragment) == 1  # the other replica stored part of it before
    assert not fragment.complete[0] and "1" * 32 in r1.fragments and r1.fragment_count == 1
    assert r0.features("svc:GET /r", complete_only=True).empty  # never fitted on
    assert r0.trace_features("1" * 32).complete is False


def _completed(trace_id: str) -> CompletedTrace:
    return CompletedTrace(trace_id, "svc:GET /r", 1_700_000_000_000_000_000, 10.0, True, {"svc:GET /r": 10.0}, 1)


def _gates(url: str, settle_s: float = 30.0):
    """Two replicas' trace stores on one database, each with its gate in front of a list (the detector)."""
    out = []
    for replica in ("0", "1"):
        store, _ = open_clickhouse_stores(url, replica=replica, settle_s=settle_s)
        scored: list[str] = []
        out.append((store, SettleGate(store, lambda t, s=scored: s.append(t.trace_id), settle_s), scored))
    return out


@pytest.mark.parametrize("first", [0, 1])
def test_neither_part_of_a_split_trace_is_scored_whichever_is_stored_first(first):
    (s0, g0, scored0), (s1, g1, scored1) = _gates(fresh_url())
    stores, gates = (s0, s1), (g0, g1)
    a, b = first, 1 - first
    split, whole_a, whole_b = "5" * 32, "a" * 32, "b" * 32
    # the first part: nothing to see yet, it waits with a trace that is whole
    stores[a].write_batch(_one(split))
    # the other replica's pipeline does not take that part for an earlier version of its own (it would skip its
    # part as "kept stored" and nobody would see the split)
    assert stores[b].stored_span_counts([split]) == {} and stores[a].stored_span_counts([split]) == {split: 1}
    stores[a].write_batch(_one(whole_a))
    gates[a].on_trace(_completed(split))
    gates[a].on_trace(_completed(whole_a))
    assert gates[a].release(time.monotonic() + 1) == 0 and gates[a].counters.settling == 2  # not settled yet
    # the second part, on the other replica: seen split as it is written, dropped at once
    later = _one(split)
    stores[b].write_batch(later)
    stores[b].write_batch(_one(whole_b))
    assert not later.complete[0] and split in stores[b].fragments
    gates[b].on_trace(_completed(split))
    gates[b].on_trace(_completed(whole_b))
    # settled: the first part is found split too; the whole traces go on, once each
    settled = time.monotonic() + 31  # every trace above waits 30 s from when it was handed over
    assert gates[a].release(settled) == 1 and gates[b].release(settled) == 1
    scored = (scored0, scored1)
    assert scored[a] == [whole_a] and scored[b] == [whole_b]
    assert g0.counters.fragments == g1.counters.fragments == 1
    assert gates[a].release(settled + 60) == 0 and gates[a].counters.settling == 0
    # reported incomplete by every replica, never fitted on (whichever version of the row wins)
    for store in stores:
        assert store.trace_features(split).complete is False
        assert store.trace_features(whole_a).complete is True
        frame = store.features("svc:GET /r", complete_only=True)
        assert split not in frame.index
    assert {r[0] for r in s0.ex.query(f"SELECT trace_id FROM {s0.db}.fragments")} == {split}


def test_parts_written_together_are_both_found_once_settled():
    """Neither replica saw the other's part as it wrote (both wrote before either looked): the settle check
    finds the split on both sides."""
    (s0, g0, scored0), (s1, g1, scored1) = _gates(fresh_url())
    split = "6" * 32
    rows = []
    for store in (s0, s1):  # written as if at the same moment: the write-time look is skipped
        store.ex.insert(store.t("trace_parts"), ("trace_id", "replica", "n_spans", "stored_unix_nano"),
                        [(split, store.replica, 3, time.time_ns())])
        rows.append(_completed(split))
    g0.on_trace(rows[0])
    g1.on_trace(rows[1])
    now = time.monotonic() + 31
    assert g0.release(now) == g1.release(now) == 0 and not scored0 and not scored1
    assert g0.counters.fragments == g1.counters.fragments == 1


def test_unsettled_traces_are_not_fitted_on_and_one_replica_never_waits():
    url = fresh_url()
    settling, _ = open_clickhouse_stores(url, replica="0", settle_s=60)
    single, _ = open_clickhouse_stores(url, replica="1")
    settling.write_batch(_one("7" * 32))
    assert settling.features("svc:GET /r", complete_only=True).empty  # could still be a fragment
    assert list(settling.features("svc:GET /r").index) == ["7" * 32]
    assert list(single.features("svc:GET /r", complete_only=True).index) == ["7" * 32]


class _Flaky:
    """A store whose fragment lookups fail until told otherwise."""

    def __init__(self) -> None:
        self.fragments: dict[str, None] = {}
        self.up = False

    def find_fragments(self, trace_ids):
        if not self.up:
            raise ConnectionError("ClickHouse is away")
        return set()


def test_a_failed_lookup_is_retried_and_stopping_passes_the_rest_on():
    store, scored = _Flaky(), []
    gate = SettleGate(store, lambda t: scored.append(t.trace_id), settle_s=10)
    for k in range(3):
        gate.on_trace(_completed(f"{k:032x}"))
    t0 = time.monotonic()
    assert gate.release(t0 + 11) == 0 and gate.counters.check_errors == 1 and gate.counters.settling == 3
    store.up = True
    assert gate.release(t0 + 12) == 3 and scored == [f"{k:032x}" for k in range(3)]
    gate.on_trace(_completed("f" * 32))
    gate.stop(timeout=0)  # not started: what waits is checked and passed on now
    assert scored[-1] == "f" * 32 and gate.counters.settled == 4 and gate.counters.unchecked == 0


def test_the_settle_delay_covers_the_other_replicas_completion_wait():
    from collector_processor import PipelineConfig

    cfg = PipelineConfig()
    # a rootless part completes max_trace_wait_s after its first span, a rooted one trace_timeout_s after its last
    assert settle_delay(2.0) > cfg.max_trace_wait_s + 2.0
    assert settle_delay(0.5, max_trace_wait_s=3.0) == pytest.approx(8.5)


def test_the_gate_holds_a_bounded_number_of_traces(monkeypatch):
    import plugin.replicas

    monkeypatch.setattr(plugin.replicas, "MAX_SETTLING", 2)
    store, scored = _Flaky(), []
    store.up = True
    gate = SettleGate(store, lambda t: scored.append(t.trace_id), settle_s=60)
    for k in range(5):
        gate.on_trace(_completed(f"{k:032x}"))
    assert gate.release(time.monotonic()) == 3  # the oldest beyond the bound are checked before they settled
    assert scored == [f"{k:032x}" for k in range(3)] and gate.counters.early == 3 and gate.counters.settling == 2


def test_the_owner_counts_only_settled_traces_towards_its_first_fit():
    """A first fit waits until min_traces traces have settled, instead of starting on unsettled ones, finding
    too few rows and backing off."""
    from plugin.config import ServeConfig
    from plugin.replicas import ReplicaModelManager

    url = fresh_url()
    traces, results = open_clickhouse_stores(url, replica="0", settle_s=30)
    entry = "svc:GET /r"
    owner = ReplicaShare(0, 2).owner(entry)
    manager = ReplicaModelManager(traces, results, ServeConfig(min_traces=3), share=ReplicaShare(owner, 2))
    for k in range(3):
        traces.write_batch(_one(f"{k + 1:032x}"))
    manager.sync(now=100.0)
    assert manager.status()[0].traces_seen == 0  # stored, not settled: no first fit yet
    manager.sync(now=120.0)
    assert manager.status()[0].traces_seen == 0
    manager.sync(now=130.0)  # the traces counted at 100 s have settled
    assert manager.status()[0].traces_seen == 3
    assert manager.settled_count(entry, 5, now=131.0) == 3  # the newest sample at least 30 s old
    assert manager.settled_count(entry, 5, now=161.0) == 5
