"""The demo's errors fault: the failing service answers at once with HTTP 500, an exception event and an error
status; its caller retries and recovers on about a third of the requests (a handled error, the request succeeds),
otherwise every caller up to the entry point fails with it."""

from __future__ import annotations

import pytest

from plugin.demo.faults import FaultError, resolve_fault
from plugin.demo.simulator import SERVER, Simulator
from plugin.demo.site import retail_site


def test_errors_fault_fails_the_service_and_its_callers_unless_handled():
    site = retail_site()
    fault = resolve_fault(site, "errors:Order Service")
    assert fault.is_errors and fault.service == "order-service"
    traces = Simulator(site, seed=1).generate(300, 0, fault)
    reached = [t for t in traces if any(s.service == "order-service" for s in t.spans())]
    assert len(reached) > 50
    handled = 0
    for t in reached:
        origin = [s for s in t.spans() if s.service == "order-service" and s.kind == SERVER and s.error]
        assert origin and all(s.events == ["exception"] and s.attributes["http.response.status_code"] == 500
                              and s.duration_ns <= 1_000_000 and not s.children for s in origin)
        retried = [s for s in t.spans() if s.service == "order-service" and s.kind == SERVER and not s.error]
        if t.root.error:   # propagated: no retry, every span on the way up failed, no other span did
            assert not retried
            assert all(not s.events for s in t.spans() if s.error and s.service != "order-service")
        else:              # handled: the retry succeeded
            handled += 1
            assert retried
    assert 0.2 < handled / len(reached) < 0.5
    assert not any(s.error for t in traces if t not in reached for s in t.spans())


def test_unknown_errors_fault_lists_the_names():
    with pytest.raises(FaultError, match="errors:order-service"):
        resolve_fault(retail_site(), "errors:nope")
