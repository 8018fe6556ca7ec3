"""Fixtures for the collector tests: a real SQLite store in a temp dir, a pipeline driven by explicit ticks,
and the real OTLP receivers on free loopback ports (always stopped)."""

from __future__ import annotations

import pytest

from collector_processor import (
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    Pipeline,
    PipelineConfig,
    open_store,
)


@pytest.fixture
def store(tmp_path):
    st = open_store(tmp_path / "data")
    yield st
    st.close()


@pytest.fixture
def make_pipeline(store):
    made = []

    def make(**kw) -> Pipeline:
        kw.setdefault("background", False)
        p = Pipeline(store, PipelineConfig(**kw))
        made.append(p)
        return p

    yield make
    for p in made:
        p.close(flush=False)


@pytest.fixture
def pipeline(make_pipeline):
    return make_pipeline()


@pytest.fixture
def receivers(pipeline):
    g = OtlpGrpcReceiver(pipeline, "127.0.0.1:0").start()
    h = OtlpHttpReceiver(pipeline, "127.0.0.1:0").start()
    yield g, h
    g.stop(0)
    h.stop(0)
