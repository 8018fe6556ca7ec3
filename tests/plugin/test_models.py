"""plugin.models: the model of each entry point learned from the trace store, refit scheduling, persistence in the
results store, and what the status shows (real SQLite stores, the real engine)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from collector_processor import NodeInfo, open_store
from plugin import model_blobs
from plugin.config import ServeConfig
from plugin.metrics import ServerMetrics
from plugin.models import EARLY_REFIT_S, FittedModel, ModelManager, feature_matrix, node_meta
from plugin.results_store import follow_retention
from plugin.sqlite_results import open_results_store
from tests.support.analysed import DB, ENTRY, entry_db_batch, normal_batch, trace_id


@pytest.fixture
def stores(tmp_path):
    traces, results = open_store(tmp_path), open_results_store(tmp_path)
    follow_retention(traces, results)
    yield traces, results
    results.close()
    traces.close()


def manager(stores, **kw) -> ModelManager:
    kw.setdefault("min_traces", 50)
    kw.setdefault("window", 400)
    config = ServeConfig(data_dir="unused", **kw)
    return ModelManager(*stores, config, ServerMetrics())


def test_feature_matrix_is_exactly_the_columns_as_float_with_absent_nodes_at_zero() -> None:
    df = pd.DataFrame({"b": [1, 2], "extra": [9, 9], "a": [0.5, np.nan]})
    out = feature_matrix(df, ["a", "b", "c"])
    assert list(out.columns) == ["a", "b", "c"] and all(out.dtypes == np.float64)
    assert out.to_numpy().tolist() == [[0.5, 1.0, 0.0], [0.0, 2.0, 0.0]]
    assert node_meta(NodeInfo("db", "SELECT", "db", None)).kind == "db"


def test_first_fit_on_the_stored_normal_traces(stores) -> None:
    traces, results = stores
    traces.write_batch(normal_batch(200))
    traces.write_batch(entry_db_batch([900], np.array([30.0]), np.array([5.0]), complete=False))
    results.mark_outlier(trace_id(0), 12.0)
    models = manager(stores)
    first: list[tuple[str, FittedModel]] = []
    models.first_fit_listeners.append(lambda e, f: first.append((e, f)))
    with pytest.raises(ValueError, match="only 199 complete normal traces stored, need 250"):
        models.fit(ENTRY, min_rows=250)
    assert models.status()[0].last_error.startswith("only 199") and models.get(ENTRY) is None
    fitted = models.fit(ENTRY, exclude={trace_id(1), "f" * 32})
    assert fitted.rows == 198  # the marked outlier, the excluded trace and the incomplete one are left out
    assert set(fitted.columns) == {ENTRY, DB} and fitted.causal_edges == [(DB, ENTRY)]
    assert fitted.nodes[DB].service == "db" and fitted.mechanisms[ENTRY] == "sum"
    expected = pd.DataFrame(traces.features(ENTRY, limit=400, complete_only=True)).drop(index=[trace_id(0),
                                                                                               trace_id(1)])
    assert fitted.medians[DB] == pytest.approx(float(np.median(expected[DB])))
    assert fitted.model.n_rows == 198 and first == [(ENTRY, fitted)]
    status = models.status()[0]
    assert (status.state, status.fits, status.last_error, status.rows) == ("ready", 1, None, 198)
    models.fit(ENTRY)
    assert len(first) == 1  # listeners hear about the first model only


def test_models_persist_and_load_with_the_trace_count(stores) -> None:
    traces, results = stores
    traces.write_batch(normal_batch(120))
    first = manager(stores)
    fitted = first.fit(ENTRY)
    record = results.load_model(ENTRY)
    assert record is not None
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(record[0])  # an authenticated blob, never a bare pickle
    assert isinstance(model_blobs.load(record[0], first._blob_key), FittedModel)
    fresh = manager(stores)
    assert fresh.load() == 1
    loaded = fresh.get(ENTRY)
    assert loaded is not None and loaded.fitted_at == fitted.fitted_at and loaded.columns == fitted.columns
    sample = feature_matrix(pd.DataFrame([{ENTRY: 80.0, DB: 75.0}]), loaded.columns)
    np.testing.assert_array_equal(loaded.model.it_score(ENTRY, sample[ENTRY], base="upper"),
                                  fitted.model.it_score(ENTRY, sample[ENTRY], base="upper"))
    status = fresh.status()[0]
    assert status.state == "ready" and status.traces_seen == 120


def test_a_corrupt_stored_model_is_ignored_and_refitted(stores) -> None:
    traces, results = stores
    traces.write_batch(normal_batch(60))
    results.save_model(ENTRY, b"not a pickle", {"rows": 0, "fitted_at": 0.0, "fit_seconds": 0.0})
    models = manager(stores)
    assert models.load() == 0 and models.get(ENTRY) is None
    assert models.due() == [ENTRY]  # 60 stored traces >= min_traces: fit now


def test_refits_are_due_when_stale_young_or_the_graph_grew(stores) -> None:
    traces, _ = stores
    traces.write_batch(normal_batch(100))
    models = manager(stores, refit_interval_s=3600.0)
    models.observe(ENTRY, 40)
    assert models.due() == [] and models.status()[0].state == "learning"  # 40 < min_traces
    models.observe(ENTRY, 60)
    assert models.due() == [ENTRY]
    fitted = models.fit(ENTRY)
    t = fitted.fitted_at
    assert models.due(t + 1) == []
    models.observe(ENTRY, 10)
    assert models.due(t + 3600) == [ENTRY]  # stale with new traces
    assert models.due(t + EARLY_REFIT_S + 1) == []  # early, but neither young nor grown
    models.nodes_seen(ENTRY, {ENTRY, DB, "cache:GET"})
    assert models.due(t + EARLY_REFIT_S - 1) == [] and models.due(t + EARLY_REFIT_S + 1) == [ENTRY]
    models.fit(ENTRY)  # the new node is still not in the stored graph: ignored from now on
    models.nodes_seen(ENTRY, {"cache:GET"})
    assert models.due(models.get(ENTRY).fitted_at + EARLY_REFIT_S + 1) == []
    models.observe(ENTRY, 200)  # the data doubled since the fit: a young model refits early
    assert models.due(models.get(ENTRY).fitted_at + EARLY_REFIT_S + 1) == [ENTRY]
    no_early = manager(stores, refit_interval_s=3600.0, early_refit=False)
    no_early.load()
    no_early.observe(ENTRY, 500)
    assert no_early.due(no_early.get(ENTRY).fitted_at + EARLY_REFIT_S + 1) == []


def test_a_failed_fit_backs_off(stores) -> None:
    models = manager(stores, min_traces=5)
    models.observe(ENTRY, 10)
    with pytest.raises(ValueError):
        models.fit(ENTRY)  # nothing stored: no graph, no rows
    status = models.status()[0]
    assert status.state == "learning" and status.last_error and status.fits == 0
    assert models.due() == []  # backing off
