"""plugin.metrics: one Prometheus registry per server; the pipeline's counters read at scrape time."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from plugin.metrics import ServerMetrics


def scrape(metrics: ServerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the text exposition, parsed by prometheus_client's own parser."""
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_each_server_has_its_own_registry() -> None:
    a, b = ServerMetrics(), ServerMetrics()
    a.traces.labels("web:GET /").inc(3)
    a.requests.labels("rest", "200").inc()
    a.fit_seconds.observe(0.3)
    a.models.set(2)
    got, other = scrape(a), scrape(b)
    assert got[("whyslow_traces_total", (("entry", "web:GET /"),))] == 3
    assert got[("whyslow_api_requests_total", (("api", "rest"), ("status", "200")))] == 1
    assert got[("whyslow_fit_seconds_count", ())] == 1 and got[("whyslow_fit_seconds_bucket", (("le", "0.5"),))] == 1
    assert got[("whyslow_fit_seconds_bucket", (("le", "0.25"),))] == 0 and got[("whyslow_models_ready", ())] == 2
    assert ("whyslow_traces_total", (("entry", "web:GET /"),)) not in other  # nothing leaks between servers
    assert other[("whyslow_models_ready", ())] == 0


def test_pipeline_counters_are_grouped_by_prefix_and_read_at_each_scrape() -> None:
    stats = {"spans_received": 10, "spans_rejected": 2, "traces_completed": 4, "traces_incomplete": 1,
             "queued_spans": 7, "buffered_traces": 3, "requests_invalid": 5, "flag": True, "note": "text"}
    m = ServerMetrics()
    m.watch_pipeline(lambda: stats)
    got = scrape(m)
    assert got[("whyslow_spans_total", (("outcome", "received"),))] == 10
    assert got[("whyslow_spans_total", (("outcome", "rejected"),))] == 2
    assert got[("whyslow_pipeline_traces_total", (("outcome", "completed"),))] == 4
    assert got[("whyslow_pipeline_traces_total", (("outcome", "incomplete"),))] == 1
    assert got[("whyslow_pipeline_buffered", (("name", "queued_spans"),))] == 7
    assert got[("whyslow_pipeline_buffered", (("name", "buffered_traces"),))] == 3
    assert got[("whyslow_pipeline_events_total", (("name", "requests_invalid"),))] == 5
    assert not any("flag" in str(k) or "note" in str(k) for k in got)  # booleans and text are not numbers
    stats["spans_received"] = 25
    assert scrape(m)[("whyslow_spans_total", (("outcome", "received"),))] == 25  # live, not a copy


def test_a_failing_pipeline_does_not_fail_the_scrape() -> None:
    def stopping() -> dict[str, float]:
        raise RuntimeError("pipeline is stopping")

    m = ServerMetrics()
    m.watch_pipeline(stopping)
    m.scored.inc()
    got = scrape(m)
    assert got[("whyslow_traces_scored_total", ())] == 1
    assert not any(name.startswith("whyslow_spans") for name, _ in got)
