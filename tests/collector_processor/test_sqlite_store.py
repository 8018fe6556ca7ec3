"""collector_processor.sqlite_store: what the SQLite trace store writes reads back exactly; the features query
against an independent pandas filter; replacement, retention listeners and the spool."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from collector_processor import open_store
from collector_processor.records import COUNT, ERR, FIRST, GAP, LAT, OWN
from tests.support.analysed import DB, ENTRY, T0, entry_db_batch, normal_batch, trace_id


@pytest.fixture
def store(tmp_path):
    st = open_store(tmp_path)
    yield st
    st.close()


def test_a_stored_trace_reads_back_with_every_feature(store) -> None:
    batch = entry_db_batch([1, 2], np.array([20.0, 30.0]), np.array([5.0, 6.0]), complete=False)
    batch.values[:, GAP] = [0.0, 1.5, 0.0, 2.5]
    batch.values[:, ERR] = [0, 1, 0, 0]
    batch.values[:, FIRST] = [0.0, 0.25, 0.0, 0.75]
    assert store.write_batch(batch) == 0
    tf = store.trace_features(trace_id(2).upper())  # ids are case-insensitive
    assert (tf.trace_id, tf.entry, tf.start_unix_nano, tf.duration_ms, tf.complete, tf.n_spans) == (
        trace_id(2), ENTRY, T0 + 2 * 1_000_000, 36.0, False, 2)
    for k, node in enumerate([ENTRY, DB]):
        v = batch.values[2 + k]
        f = tf.nodes[node]
        assert (f.latency_ms, f.own_ms, f.gap_ms, f.count, f.error, f.start_offset_ms) == (
            v[LAT], v[OWN], v[GAP], int(v[COUNT]), bool(v[ERR]), v[FIRST])
    assert store.trace_features("0" * 32) is None
    assert store.counts()["traces"] == 2 and store.entry_points() == [ENTRY]


def test_features_match_an_independent_filter_of_what_was_written(store) -> None:
    store.write_batch(normal_batch(50, seed=1))
    store.write_batch(entry_db_batch([50, 51], np.array([1.0, 2.0]), np.array([1.0, 1.0]), complete=False))
    truth = pd.DataFrame({"trace_id": [trace_id(i) for i in range(52)],
                          "start": [T0 + i * 1_000_000 for i in range(52)],
                          "complete": [True] * 50 + [False] * 2})
    everything = store.features(ENTRY)
    assert list(everything.index) == truth["trace_id"].tolist()  # oldest first
    written = normal_batch(50, seed=1).values[:, LAT]
    np.testing.assert_array_equal(everything[ENTRY].to_numpy()[:50], written[0::2])
    np.testing.assert_array_equal(everything[DB].to_numpy()[:50], written[1::2])
    np.testing.assert_allclose(everything["__duration_ms"], everything[ENTRY])
    exclude = {trace_id(49), trace_id(10).upper()}
    cases = [
        ({"since_unix_nano": T0 + 10 * 1_000_000, "until_unix_nano": T0 + 20 * 1_000_000},
         (truth["start"] >= T0 + 10 * 1_000_000) & (truth["start"] < T0 + 20 * 1_000_000), None),
        ({"complete_only": True}, truth["complete"], None),
        ({"limit": 7}, truth["complete"] | True, 7),
        ({"limit": 5, "exclude": exclude, "complete_only": True},
         truth["complete"] & ~truth["trace_id"].isin({t.lower() for t in exclude}), 5),
    ]
    for kwargs, mask, newest in cases:
        expected = truth.loc[mask, "trace_id"].tolist()
        expected = expected[-newest:] if newest else expected
        got = store.features(ENTRY, **kwargs)
        assert list(got.index) == expected, kwargs
        pd.testing.assert_frame_equal(got, everything.loc[expected])
    assert store.features("nobody:GET /").empty


def test_a_rewritten_trace_replaces_the_old_one(store) -> None:
    store.write_batch(entry_db_batch([7], np.array([10.0]), np.array([1.0])))
    assert store.write_batch(entry_db_batch([7, 8], np.array([40.0, 1.0]), np.array([2.0, 1.0]))) == 1
    assert store.counts()["traces"] == 2 and store.trace_features(trace_id(7)).duration_ms == 42.0


def test_retention_tells_its_listeners_which_traces_went(store) -> None:
    store.write_batch(normal_batch(10))
    gone: list[list[str]] = []
    store.on_delete(lambda ids: gone.append(sorted(ids)))
    assert store.retention(max_rows=4) == 6
    assert gone == [[trace_id(i) for i in range(6)]]  # the oldest
    assert list(store.features(ENTRY).index) == [trace_id(i) for i in range(6, 10)]
    assert store.retention(max_age_s=0.0) == 4 and store.counts()["trace_nodes"] == 0  # T0 is long past
    assert store.retention(max_rows=100) == 0 and len(gone) == 2


def test_retention_deletes_a_large_backlog_in_bounded_chunks(store) -> None:
    """A store far beyond max_rows is trimmed chunk by chunk (bounded memory, the writer lock released between
    chunks): the same traces go as in one transaction, the listeners hear each chunk."""
    store.write_batch(normal_batch(10))
    gone: list[list[str]] = []
    store.on_delete(lambda ids: gone.append(sorted(ids)))
    assert store.retention(max_rows=3, chunk=2) == 7
    assert [len(ids) for ids in gone] == [2, 2, 2, 1]
    assert sorted(i for ids in gone for i in ids) == [trace_id(i) for i in range(7)]  # the oldest
    assert list(store.features(ENTRY).index) == [trace_id(i) for i in range(7, 10)]
    assert store.retention(max_age_s=0.0, chunk=2) == 3 and store.counts()["traces"] == 0
    assert store.counts()["trace_nodes"] == 0


def test_the_spool_keeps_requests_until_released_and_across_a_reopen(tmp_path) -> None:
    st = open_store(tmp_path)
    a, b = st.spool_append(b"request one"), st.spool_append(b"request two")
    assert list(st.spool_pending()) == [(a, b"request one"), (b, b"request two")]
    st.write_batch(None, [a])
    assert list(st.spool_pending()) == [(b, b"request two")]
    st.close()
    again = open_store(tmp_path)
    try:
        assert list(again.spool_pending()) == [(b, b"request two")]
        again.write_batch(normal_batch(1), [b])  # the traces it fed and its release in one transaction
        assert list(again.spool_pending()) == [] and again.counts()["spool"] == 0
    finally:
        again.close()
    with pytest.raises(RuntimeError, match="closed"):
        again.spool_append(b"late")
