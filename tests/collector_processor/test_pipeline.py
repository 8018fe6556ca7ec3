"""collector_processor.pipeline: accept -> queue -> assemble -> analyse -> store -> listeners, every span counted
(real SQLite store; time driven with explicit ticks)."""

from __future__ import annotations

import pytest

from collector_processor import PipelineFull
from collector_processor.otlp_decode import DecodeFailure
from tests.support.otlp_build import CLIENT, SERVER, request
from tests.support.pipeline import complete_all


def chain_request(trace: int, slow_ms: float = 0.0, bad_spans: int = 0):
    spans = [
        {"service": "web", "trace": trace, "span": 1, "name": "GET /cart", "kind": SERVER, "start_ms": 0,
         "end_ms": 40 + slow_ms},
        {"service": "web", "trace": trace, "span": 2, "parent": 1, "name": "db query", "kind": CLIENT, "start_ms": 5,
         "end_ms": 30 + slow_ms, "attrs": {"peer.service": "db"}},
        {"service": "db", "trace": trace, "span": 3, "parent": 2, "name": "SELECT", "kind": SERVER, "start_ms": 6,
         "end_ms": 29 + slow_ms},
    ]
    spans += [{"service": "web", "trace": b"", "span": 100 + i, "name": "x", "start_ms": 0, "end_ms": 1}
              for i in range(bad_spans)]
    return request(spans)


def test_spans_are_counted_queued_stored_and_handed_to_listeners(make_pipeline, store) -> None:
    pipeline = make_pipeline()
    got = []
    pipeline.add_listener(got.append)
    batch = pipeline.accept(chain_request(1, bad_spans=2))
    assert (batch.received, batch.rejected, len(batch.spans)) == (5, 2, 3)
    pipeline.accept(chain_request(2, slow_ms=100.0).SerializeToString())  # bytes as the receivers pass them
    s = pipeline.stats()
    assert (s["requests_received"], s["spans_received"], s["spans_accepted"], s["spans_rejected"]) == (2, 8, 6, 2)
    assert s["queued_spans"] == 6 and s["traces_stored"] == 0
    assert complete_all(pipeline) == 2
    s = pipeline.stats()
    assert (s["queued_spans"], s["buffered_spans"], s["traces_stored"], s["spans_stored"]) == (0, 0, 2, 6)
    assert s["spans_accepted"] == s["spans_stored"] + s["spans_dropped"] + s["buffered_spans"] + s["queued_spans"]
    assert sorted(t.trace_id for t in got) == [f"{1:032x}", f"{2:032x}"]
    for t in got:
        stored = store.trace_features(t.trace_id)
        assert stored is not None and t.row == stored.row() and t.entry == stored.entry
        assert t.duration_ms == stored.duration_ms and t.n_spans == 3 and t.complete
    slow = next(t for t in got if t.trace_id.endswith("2"))
    assert slow.duration_ms == pytest.approx(140.0)


def test_undecodable_bytes_are_counted_and_raised(make_pipeline) -> None:
    pipeline = make_pipeline()
    with pytest.raises(DecodeFailure):
        pipeline.accept(b"\xff\xff\xff not protobuf")
    pipeline.count_request_error("requests_too_large")
    s = pipeline.stats()
    assert (s["requests_received"], s["requests_invalid"], s["requests_too_large"]) == (2, 1, 1)


def test_a_full_queue_asks_for_a_retry_and_counts_the_refused_spans(make_pipeline) -> None:
    pipeline = make_pipeline(max_queue_spans=4, retry_after_s=2.5)
    pipeline.accept(chain_request(1))
    with pytest.raises(PipelineFull, match="retry in 2.5 s") as err:
        pipeline.accept(chain_request(2))
    assert err.value.retry_after_s == 2.5
    assert len(pipeline.accept(request([])).spans) == 0  # a request without spans needs no room
    s = pipeline.stats()
    assert (s["requests_refused"], s["spans_refused"], s["queued_spans"]) == (1, 3, 3)
    complete_all(pipeline)
    pipeline.accept(chain_request(2))  # drained: accepted again
    assert pipeline.stats()["queued_spans"] == 3


def test_a_failing_listener_is_counted_and_the_others_still_run(make_pipeline, store) -> None:
    pipeline = make_pipeline()
    seen = []

    def broken(_trace) -> None:
        raise RuntimeError("listener bug")

    pipeline.add_listener(broken)
    pipeline.add_listener(seen.append)
    pipeline.accept(chain_request(7))
    assert complete_all(pipeline) == 1
    assert pipeline.stats()["listener_errors"] == 1 and len(seen) == 1
    assert store.trace_features(f"{7:032x}") is not None


def test_close_stores_what_is_buffered_and_refuses_more(make_pipeline, store) -> None:
    pipeline = make_pipeline()
    rootless = request([{"service": "db", "trace": 9, "span": 3, "parent": 2, "name": "SELECT", "kind": SERVER,
                         "start_ms": 6, "end_ms": 29}])
    pipeline.accept(rootless)
    pipeline.tick()
    assert pipeline.stats()["buffered_traces"] == 1  # waiting for its root
    pipeline.close()
    s = pipeline.stats()
    assert (s["traces_stored"], s["traces_incomplete"], s["buffered_traces"]) == (1, 1, 0)
    assert store.trace_features(f"{9:032x}").complete is False
    with pytest.raises(PipelineFull):
        pipeline.accept(chain_request(10))


def test_spooled_requests_are_replayed_by_the_next_pipeline(make_pipeline, store) -> None:
    first = make_pipeline(spool=True)
    first.accept(chain_request(11))
    first.close(flush=False)  # a crash: acknowledged, never stored
    second = make_pipeline(spool=True)
    assert second.stats()["spans_replayed"] == 3 and second.stats()["queued_spans"] == 3
    assert complete_all(second) == 1 and store.trace_features(f"{11:032x}") is not None
    second.close()  # stored and final (a shutdown flush): only now is its spool row released
    third = make_pipeline(spool=True)
    assert third.stats()["spans_replayed"] == 0  # stored: released from the spool
