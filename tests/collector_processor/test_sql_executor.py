"""The SQL executor seam: literals round-trip through the real engine (chdb, and clickhouse-connect over the
test HTTP front), store URLs parse with clear errors, engine errors become one-line SqlErrors."""

from __future__ import annotations

import pytest

from collector_processor.sql_executor import SqlError, connect, ident, parse_target, quote
from tests.support.chdb import fresh_url, http_front_url

TRICKY = ["", "a'b", "back\\slash", "new\nline\ttab", "nul\0byte", "ünïcødé ✓", "');DROP TABLE x;--"]


@pytest.fixture(params=["chdb", "http"])
def ex(request):
    e = connect(fresh_url() if request.param == "chdb" else http_front_url())
    yield e
    e.close()


def test_literals_round_trip(ex):
    t = f"{ident(ex.database)}.t"
    ex.command(f"CREATE TABLE {t} (k UInt32, s String, f Float64, a Array(Float64), m Map(String, String), "
               "i Int64) ENGINE = MergeTree ORDER BY k")
    rows = [(k, s, 0.1 * k, [1.5, -2.0], {"x": s}, -(2 ** 62) + k) for k, s in enumerate(TRICKY)]
    ex.insert(t, ("k", "s", "f", "a", "m", "i"), rows)
    got = ex.query(f"SELECT k, s, f, a, m, i FROM {t} ORDER BY k")
    assert [tuple(r) for r in got] == [(k, s, f, a, m, i) for k, s, f, a, m, i in rows]
    for s in TRICKY:  # rendered into the SQL text, a value matches itself and nothing else
        assert ex.query(f"SELECT k FROM {t} WHERE s = {quote(s)}") == [(TRICKY.index(s),)]


def test_engine_errors_are_one_line(ex):
    with pytest.raises(SqlError) as info:
        ex.query(f"SELECT nosuch FROM {ident(ex.database)}.missing")
    assert "\n" not in str(info.value) and "missing" in str(info.value)


def test_targets_and_identifiers():
    t = parse_target("clickhouse://alice:s%40cret@ch.example:9000/obs")
    assert (t.host, t.port, t.user, t.password, t.database) == ("ch.example", 9000, "alice", "s@cret", "obs")
    assert "s@cret" not in t.redacted()
    assert parse_target("clickhouse://ch").port == 8123 and parse_target("clickhouses://ch").port == 8443
    assert parse_target("chdb:///var/lib/x?database=d").path == "/var/lib/x"
    for bad in ("postgres://h/db", "clickhouse:///db", "clickhouse://h/bad-name", "chdb://"):
        with pytest.raises(ValueError):
            parse_target(bad)
    with pytest.raises(ValueError):
        ident("a`b")
    assert quote(None) == "NULL" and quote(True) == "1" and quote([1, "a"]) == "[1,'a']"
