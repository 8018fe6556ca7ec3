"""The simulated retail site: span structure and exact timing of every request."""

from __future__ import annotations

import numpy as np
import pytest

from plugin.demo.faults import resolve_fault
from plugin.demo.simulator import CLIENT, NS, SERVER, SimSpan, Simulator
from plugin.demo.site import Call, Latency, Service, Site, retail_site

SITE = retail_site()
START = 1_700_000_000 * NS


def _traces(n=200, seed=3, fault=None, rate=20.0):
    return Simulator(SITE, seed=seed, rate=rate).generate(n, START, fault)


def _server_children(span: SimSpan) -> list[SimSpan]:
    """The SERVER span under a CLIENT span (exactly one for service calls, none for databases)."""
    return [c for c in span.children if c.kind == SERVER]


def _check_server(span: SimSpan) -> int:
    """Check one SERVER span's layout exactly; returns its own time (ns)."""
    service = SITE.service(span.service)
    assert span.kind == SERVER and span.name == service.operation
    assert span.attributes["http.route"] == service.route
    by_callee = {}
    for child in span.children:
        assert child.kind == CLIENT and child.service == span.service
        by_callee.setdefault((child.attributes["peer.service"], child.name), child)
    assert len(by_callee) == len(span.children), "each call happens at most once per request"
    t = None
    first = None
    for stage in service.stages:
        present = []
        for call in stage:
            callee = SITE.service(call.callee)
            name = call.db_operation if callee.is_db else callee.operation
            child = by_callee.pop((call.callee, name), None)
            if child is None:
                assert call.probability < 1, f"mandatory call {span.service} -> {call.callee} missing"
                continue
            present.append(child)
        if not present:
            continue
        starts = {c.start_ns for c in present}
        assert len(starts) == 1, "calls of one stage start together (parallel)"
        stage_start = starts.pop()
        if first is None:
            first = stage_start
        else:
            assert stage_start == t, "a stage starts when the slowest call of the previous one returned"
        t = max(c.end_ns for c in present)
    assert not by_callee, f"unexpected calls {list(by_callee)}"
    if first is None:  # no calls: all own time
        return span.duration_ns
    pre = first - span.start_ns
    post = span.end_ns - t
    own = pre + post
    assert pre == int(own * service.pre_fraction), "own time is split before/after the calls"
    assert post >= 0
    return own


def _check_client(span: SimSpan) -> None:
    callee = SITE.service(span.attributes["peer.service"])
    if callee.is_db:
        assert span.children == []
        assert span.attributes["db.system"] == callee.db_system
        assert span.attributes["db.name"] == callee.db_name
        assert span.attributes["db.statement"].startswith(span.attributes["db.operation"])
        assert span.duration_ns > 0
        return
    (server,) = _server_children(span)
    assert server.service == callee.name
    assert span.start_ns <= server.start_ns and server.end_ns <= span.end_ns, "client encloses server"
    # network each way: halfnorm(loc=1 ms) draws
    assert server.start_ns - span.start_ns >= 1_000_000 - 1
    assert span.end_ns - server.end_ns >= 1_000_000 - 1


def test_site_is_the_retail_tree_of_ten_services():
    assert len(SITE.services) == 10
    assert SITE.entry == "website"
    assert {s.name for s in SITE.services.values() if s.is_db} == {"product-db", "customer-db", "order-db"}
    assert SITE.callers_of("customer-db") == ["auth-service", "product-catalog"]
    assert SITE.callers_of("product-db") == ["caching-service"]


def test_site_validation_rejects_bad_topologies():
    lat = Latency("halfnorm", scale=0.1)
    with pytest.raises(ValueError, match="unknown service"):
        Site({"a": Service("a", "A", "GET /", lat, stages=((Call("b"),),))}, "a").validate()
    with pytest.raises(ValueError, match="cycle"):
        Site({"a": Service("a", "A", "GET /", lat, stages=((Call("b"),),)),
              "b": Service("b", "B", "GET /", lat, stages=((Call("a"),),))}, "a").validate()
    with pytest.raises(ValueError, match="not reachable"):
        Site({"a": Service("a", "A", "GET /", lat), "b": Service("b", "B", "GET /", lat)}, "a").validate()
    with pytest.raises(ValueError, match="db_operation"):
        Site({"a": Service("a", "A", "GET /", lat, stages=((Call("d"),),)),
              "d": Service("d", "D", "", lat, db_system="postgresql")}, "a").validate()
    with pytest.raises(ValueError, match="family"):
        Latency("lognormal", scale=1.0).sample(3, np.random.default_rng(0))


def test_every_span_is_laid_out_exactly():
    traces = _traces(300)
    for t in traces:
        assert t.root.service == "website" and t.root.kind == SERVER and not t.faulty
        for span in t.spans():
            if span.kind == SERVER:
                _check_server(span)
            else:
                _check_client(span)


def test_span_counts_and_cache_misses():
    traces = _traces(1000)
    misses = 0
    for t in traces:
        spans = t.spans()
        services = {s.service for s in spans if s.kind == SERVER}
        assert services == {"website", "api-gateway", "auth-service", "product-catalog", "caching-service",
                            "shipping-cost", "order-service"}
        db = [s for s in spans if "db.system" in s.attributes]
        hit_db = {s.attributes["peer.service"] for s in db}
        assert {"customer-db", "order-db"} <= hit_db
        misses += "product-db" in hit_db
        # 7 server spans, 6 client spans to services, 3 or 4 database calls
        assert len(spans) == 7 + 6 + len(db) and len(db) in (3, 4)
    assert 430 <= misses <= 570  # cache misses half the time (binomial, n=1000, p=0.5)


def test_arrivals_follow_the_rate_and_stay_ordered():
    traces = _traces(2000, rate=50.0)
    starts = np.array([t.start_ns for t in traces])
    assert starts[0] > START and np.all(np.diff(starts) > 0)
    mean_gap_s = np.diff(starts).mean() / NS
    assert mean_gap_s == pytest.approx(1 / 50.0, rel=0.1)


def test_latencies_follow_their_distributions():
    traces = _traces(4000)
    shipping = np.array([s.duration_ns for t in traces for s in t.spans()
                         if s.kind == SERVER and s.service == "shipping-cost"]) / NS
    spec = SITE.service("shipping-cost").own  # halfnorm: mean = loc + scale * sqrt(2 / pi)
    assert shipping.mean() == pytest.approx(spec.loc + spec.scale * np.sqrt(2 / np.pi), rel=0.05)
    assert shipping.min() >= spec.loc
    order_db = np.array([s.duration_ns for t in traces for s in t.spans()
                         if s.attributes.get("peer.service") == "order-db"]) / NS
    spec = SITE.service("order-db").own  # truncexpon: support [0, b * scale]
    assert order_db.max() <= spec.b * spec.scale + 1e-9
    b = spec.b
    assert order_db.mean() == pytest.approx(spec.scale * (1 - (b + 1) * np.exp(-b)) / (1 - np.exp(-b)), rel=0.05)


def test_same_seed_same_requests_and_other_seed_differs():
    a, b, c = _traces(50, seed=11), _traces(50, seed=11), _traces(50, seed=12)
    assert [s.__dict__ for t in a for s in t.spans()] == [s.__dict__ for t in b for s in t.spans()]
    assert [t.root.duration_ns for t in a] != [t.root.duration_ns for t in c]


def _own(trace, service):
    (span,) = [s for s in trace.spans() if s.kind == SERVER and s.service == service]
    return _check_server(span)


def test_slow_service_fault_adds_exactly_its_delay_to_the_own_time():
    fault = resolve_fault(SITE, "caching-service", 2.0)
    normal, faulty = _traces(100, seed=5), _traces(100, seed=5, fault=fault)
    for n, f in zip(normal, faulty, strict=True):
        assert f.faulty
        assert _own(f, "caching-service") - _own(n, "caching-service") == 2 * NS
        assert _own(f, "shipping-cost") == _own(n, "shipping-cost")
        assert f.root.duration_ns - n.root.duration_ns <= 2 * NS + 1


def test_network_fault_delays_the_call_into_the_service():
    fault = resolve_fault(SITE, "net:shipping-cost", 1.5)
    normal, faulty = _traces(100, seed=5), _traces(100, seed=5, fault=fault)

    def gap(trace):
        (client,) = [s for s in trace.spans() if s.kind == CLIENT and s.attributes["peer.service"] == "shipping-cost"]
        (server,) = _server_children(client)
        return server.start_ns - client.start_ns, client.end_ns - server.end_ns, server.duration_ns

    for n, f in zip(normal, faulty, strict=True):
        (nq, nr, nd), (fq, fr, fd) = gap(n), gap(f)
        assert fq - nq == 1_500_000_000 and fr == nr and fd == nd


def test_slow_database_fault_slows_every_query():
    fault = resolve_fault(SITE, "Customer DB", 1.0)
    normal, faulty = _traces(50, seed=9), _traces(50, seed=9, fault=fault)
    for n, f in zip(normal, faulty, strict=True):
        nd = sorted(s.duration_ns for s in n.spans() if s.attributes.get("peer.service") == "customer-db")
        fd = sorted(s.duration_ns for s in f.spans() if s.attributes.get("peer.service") == "customer-db")
        assert len(nd) == len(fd) == 2
        assert [b - a for a, b in zip(nd, fd, strict=True)] == [NS, NS]


def test_bad_arguments():
    with pytest.raises(ValueError, match="rate"):
        Simulator(SITE, rate=0)
    assert Simulator(SITE).generate(0, START) == []
