"""Replica pieces in-process on one ClickHouse (chdb): entry-point ownership, the WatchOutliers follower, and
fragments of a trace split across replicas stored incomplete."""

from __future__ import annotations

import numpy as np

from collector_processor.records import AnalysedBatch
from plugin.clickhouse_results import open_clickhouse_stores
from plugin.replicas import OutlierFollower, ReplicaShare
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
