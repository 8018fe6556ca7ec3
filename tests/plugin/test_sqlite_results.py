"""plugin.sqlite_results: outlier marks filtered like an independent query over what was written, explanations
and models round-trip (numpy values included), forgetting, and refusing bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from collector_processor import open_store
from plugin.results_store import OutlierMark
from plugin.sqlite_results import open_results_store
from tests.support.analysed import ENTRY, T0, normal_batch, trace_id


@pytest.fixture
def stores(tmp_path):
    traces, results = open_store(tmp_path), open_results_store(tmp_path)
    traces.write_batch(normal_batch(20))
    yield traces, results
    results.close()
    traces.close()


def test_outlier_marks_are_filtered_and_ordered_newest_first(stores) -> None:
    traces, results = stores
    scores = {i: 5.0 + i for i in range(0, 20, 3)}
    for i, s in scores.items():
        results.mark_outlier(trace_id(i).upper(), s - 1.0)
        results.mark_outlier(trace_id(i), s)  # marked again: the new score wins
    results.mark_outlier("f" * 32, 99.0)  # a trace the store does not hold: never listed
    all_marks = results.outliers()
    assert [m.trace_id for m in all_marks] == [trace_id(i) for i in sorted(scores, reverse=True)]
    mark = all_marks[0]
    tf = traces.trace_features(mark.trace_id)
    assert mark == OutlierMark(trace_id(18), 23.0, ENTRY, tf.start_unix_nano, tf.duration_ms)
    lo, hi = T0 + 3 * 1_000_000, T0 + 12 * 1_000_000
    got = results.outliers(from_unix_nano=lo, to_unix_nano=hi, min_score=9.0, limit=5)
    expected = [i for i in sorted(scores, reverse=True) if lo <= T0 + i * 1_000_000 < hi and scores[i] >= 9.0]
    assert [m.trace_id for m in got] == [trace_id(i) for i in expected][:5]
    assert results.outliers(entry="web:GET /") == [] and len(results.outliers(limit=2)) == 2
    assert results.outlier_ids(ENTRY) == {trace_id(i) for i in scores}
    assert results.outlier_ids() == {trace_id(i) for i in scores} | {"f" * 32}


def test_explanations_and_models_round_trip(stores) -> None:
    _, results = stores
    payload = {"trace_id": trace_id(1), "outlier_score": np.float64(12.5), "counts": np.arange(3),
               "contributions": [{"node": "db", "share": np.float32(0.5)}]}
    results.save_explanation(trace_id(1), payload)  # type: ignore[arg-type]
    assert results.explanation(trace_id(1).upper()) == {
        "trace_id": trace_id(1), "outlier_score": 12.5, "counts": [0, 1, 2],
        "contributions": [{"node": "db", "share": 0.5}]}
    assert results.explanation(trace_id(2)) is None
    with pytest.raises(ValueError):
        results.save_explanation(trace_id(3), {"outlier_score": float("nan")})  # type: ignore[typeddict-item]
    with pytest.raises(TypeError, match="not JSON serialisable"):
        results.save_explanation(trace_id(3), {"x": object()})  # type: ignore[typeddict-item]
    results.save_model(ENTRY, b"\x00blob", {"rows": np.int64(20)})
    results.save_model(ENTRY, b"\x01newer", {"rows": 30})
    assert results.load_model(ENTRY) == (b"\x01newer", {"rows": 30}) and results.load_model("other") is None


def test_forget_deletes_the_results_of_the_given_traces(stores) -> None:
    _, results = stores
    for i in (1, 2):
        results.mark_outlier(trace_id(i), 10.0)
        results.save_explanation(trace_id(i), {"trace_id": trace_id(i)})  # type: ignore[typeddict-item]
    assert results.forget([trace_id(1).upper(), "0" * 32]) == 2  # its mark and its explanation
    assert results.outlier_ids() == {trace_id(2)} and results.explanation(trace_id(1)) is None
    assert results.forget([]) == 0
    counts = results.counts()
    assert counts["outliers"] == 1 and counts["explanations"] == 1


def test_bad_settings_and_a_closed_store_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="synchronous must be"):
        open_results_store(tmp_path, synchronous="SOMETIMES")
    results = open_results_store(tmp_path / "new")  # a data dir without traces yet
    results.close()
    results.close()
    with pytest.raises(RuntimeError, match="closed"):
        results.mark_outlier(trace_id(1), 1.0)
