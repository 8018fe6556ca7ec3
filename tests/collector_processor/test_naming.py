"""collector_processor.naming: one operation name per endpoint (ids and numbers stripped, words and versions kept)."""

from __future__ import annotations

import uuid

import pytest

from collector_processor.naming import is_catch_all, normalise_operation, operation_of


def test_ids_of_every_form_collapse_to_one_name() -> None:
    names = {normalise_operation(f"GET /users/{uid}/cart") for uid in
             ("7", "1234567", "-3", str(uuid.uuid4()), str(uuid.uuid4()).upper(), "9f86d081884c7d65", "DEADBEEF1")}
    assert names == {"GET /users/{id}/cart"}
    assert normalise_operation("price 3.14 qty +7 delta -2") == "price {id} qty {id} delta {id}"
    assert normalise_operation("/search?page=2&size=10") == "/search?page={id}&size={id}"


@pytest.mark.parametrize("name", ["/api/v1/x", "SELECT ts.trip2", "facade", "deadbeef cafe", "HTTP GET", "0x1f",
                                  "user_1 login", "redis SET"])
def test_words_versions_and_hex_words_without_digits_are_kept(name: str) -> None:
    assert normalise_operation(name) == name


@pytest.mark.parametrize("name", ["item42", "/api/v12/x", "SELECT ts.trip12"])
def test_multi_digit_suffixes_glued_to_a_word_are_kept(name: str) -> None:
    assert normalise_operation(name) == name


def test_whitespace_empty_names_and_length_bound() -> None:
    assert normalise_operation("a   b\t c \n") == "a b c"
    assert normalise_operation("") == normalise_operation("   ") == "unnamed"
    assert normalise_operation("x" * 1000) == "x" * 200
    assert normalise_operation("y" * 1000, max_len=10) == "y" * 10
    long_ids = " ".join(["7"] * 5000)
    assert len(normalise_operation(long_ids)) == 200 and set(normalise_operation(long_ids).split()) == {"{id}"}


def test_operation_prefers_the_route_then_rpc_then_the_name() -> None:
    assert operation_of("GET /u/5", "/u/{uid}", "get", "svc", "m") == "GET /u/{uid}"
    assert operation_of("GET /u/5", "/u/:id", None, None, None) == "/u/:id"
    assert operation_of("x", "/orders/42", "post", None, None) == "POST /orders/{id}"  # a route is normalised too
    assert operation_of("x", None, None, "shop.Cart", "Add") == "shop.Cart/Add"
    assert operation_of("GET /u/5", None, None, "shop.Cart", None) == "GET /u/{id}"  # half an RPC: the name
    assert operation_of("z" * 500, None, None, None, None, max_len=20) == "z" * 20


@pytest.mark.parametrize(("op", "expected"), [
    ("GET /*", True), ("/**", True), ("GET /", True), ("/", True), ("ANY /api/*/items", True),
    ("GET /users/{id}", False), ("checkout", False), ("GET /api", False), ("shop.Cart/Add", False),
])
def test_catch_all_routes(op: str, expected: bool) -> None:
    assert is_catch_all(op) is expected
