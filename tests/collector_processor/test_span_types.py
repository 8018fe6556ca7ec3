"""collector_processor.span_types: interned (service, operation, kind) ids, bounded, thread-safe, as arrays."""

from __future__ import annotations

import threading

import numpy as np

from collector_processor.span_types import OTHER_OPERATION, SpanTypes


def test_ids_are_dense_stable_and_distinguish_every_part_of_the_key() -> None:
    types = SpanTypes()
    keys = [("web", "GET /", "span"), ("web", "GET /cart", "span"), ("db", "SELECT", "db"), ("db", "SELECT", "span"),
            ("queue", "orders publish", "messaging"), ("web2", "GET /cart", "span")]
    ids = [types.intern(*k) for k in keys]
    assert ids == list(range(len(keys))) and len(types) == len(keys)
    assert [types.intern(*k) for k in reversed(keys)] == ids[::-1]  # the same key, the same id
    for i, (service, operation, kind) in zip(ids, keys, strict=True):
        assert (types.service[i], types.operation[i], types.kind[i]) == (service, operation, kind)
    assert types.intern("api", "x") == len(keys) and types.kind[-1] == "span"  # default kind


def test_arrays_give_each_type_its_service_index_and_catch_all_flag() -> None:
    types = SpanTypes()
    for service, op in [("gw", "GET /*"), ("cart", "GET /cart"), ("gw", "GET /login"), ("db", "SELECT"),
                        ("cart", "/")]:
        types.intern(service, op)
    svc, catch_all = types.arrays()
    names = np.array(types.service)
    for i in range(len(types)):  # equal service index <=> equal service name
        assert np.array_equal(svc == svc[i], names == names[i])
    assert sorted(set(svc.tolist())) == [0, 1, 2] and svc.dtype == np.int64
    assert catch_all.tolist() == [True, False, False, False, True]
    assert types.arrays()[0] is svc  # cached until a new type arrives
    types.intern("new", "op")
    assert types.arrays()[0].tolist() == [*svc.tolist(), 3]


def test_beyond_the_bound_new_operations_share_one_other_type_per_service() -> None:
    types = SpanTypes(max_types=3)
    first = [types.intern("a", f"op{i}") for i in range(3)]
    extra_a = {types.intern("a", f"more{i}") for i in range(5)}
    extra_b = {types.intern("b", f"more{i}") for i in range(2)}
    assert first == [0, 1, 2] and extra_a == {3} and extra_b == {4}
    assert types.operation[3] == types.operation[4] == OTHER_OPERATION
    # a service new beyond the cap shares one {other}:{other} bucket with every other new service
    assert types.service[3:] == ["a", OTHER_OPERATION] and types.overflowed == 7
    assert types.intern("a", "op1") == 1  # known types keep their ids


def test_concurrent_interning_gives_every_key_one_id() -> None:
    types = SpanTypes()
    keys = [(f"s{i % 7}", f"op{i}", "span") for i in range(400)]
    orders = [keys if i % 2 == 0 else keys[::-1] for i in range(8)]
    results: dict[int, list[int]] = {}

    def work(i: int) -> None:
        results[i] = [types.intern(*k) for k in orders[i]]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(orders))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by_key = {k: types.intern(*k) for k in keys}
    assert len(types) == len(keys) and sorted(by_key.values()) == list(range(len(keys)))
    for i, order in enumerate(orders):
        assert results[i] == [by_key[k] for k in order]
    for k, i in by_key.items():
        assert (types.service[i], types.operation[i], types.kind[i]) == k
