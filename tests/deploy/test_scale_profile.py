"""The compose "scale" profile (ClickHouse, the collector's ClickHouse exporter, two whyslow replicas pulling
otel_traces, Grafana with the ClickHouse data source): settings agree across the files and are valid for the
server's own configuration loader, and the dashboard's SQL runs on the real ClickHouse engine (chdb) against the
tables the ClickHouse store creates."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from collector_processor.sql_executor import connect, parse_target
from plugin.clickhouse_results import open_clickhouse_stores
from plugin.config import build_config
from tests.support.chdb import chdb_path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCALE = {"clickhouse", "otel-collector-clickhouse", "whyslow-model-key", "whyslow-0", "whyslow-1", "grafana-clickhouse"}


def _load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_scale_profile_services_agree():
    compose = _load(DEPLOY / "docker-compose.yaml")
    services = compose["services"]
    assert {n for n, s in services.items() if "scale" in s.get("profiles", [])} == SCALE
    assert all("profiles" not in services[n] for n in ("whyslow", "otel-collector", "tempo", "grafana"))
    shares = []
    for name in ("whyslow-0", "whyslow-1"):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        cfg = build_config(env=env)
        store, source = parse_target(cfg.store), parse_target(cfg.source_url)
        assert store.host == source.host == "clickhouse" and store.port == 8123 and cfg.source == "clickhouse"
        assert env["CLICKHOUSE_PASSWORD"] == services["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"]
        assert store.user == services["clickhouse"]["environment"]["CLICKHOUSE_USER"]
        shares.append(cfg.replica_share())
        # one model key for both, made once by whyslow-model-key, mounted read-only outside the data dir
        assert services[name]["volumes"] == ["whyslow-model-key:/etc/whyslow/model-key:ro"]
        assert cfg.model_key_file == "/etc/whyslow/model-key/model.key"
        assert services[name]["depends_on"]["whyslow-model-key"]["condition"] == "service_completed_successfully"
    assert sorted(shares) == [(0, 2), (1, 2)]
    keymaker = services["whyslow-model-key"]
    assert keymaker["volumes"] == ["whyslow-model-key:/data"] and "whyslow-model-key" in compose["volumes"]
    assert keymaker["entrypoint"][:2] == ["python", "-c"] and "/data/model.key" in keymaker["entrypoint"][2]
    # the collector writes where the replicas read
    collector = _load(DEPLOY / "otel-collector-clickhouse.yaml")
    exporter = collector["exporters"]["clickhouse"]
    assert collector["service"]["pipelines"]["traces"]["exporters"] == ["clickhouse"]
    assert exporter["endpoint"].startswith("tcp://clickhouse:9000")
    assert exporter["database"] == source.database and exporter["traces_table_name"] == cfg.source_table
    assert exporter["create_schema"] is True
    mounts = [v.split(":")[0] for v in services["otel-collector-clickhouse"]["volumes"]]
    assert mounts == ["./otel-collector-clickhouse.yaml"]


def test_the_replicas_model_key_is_made_once_and_kept(tmp_path):
    import subprocess
    import sys

    """What whyslow-model-key runs makes the key where the replicas read it and leaves an existing key alone."""
    entrypoint = _load(DEPLOY / "docker-compose.yaml")["services"]["whyslow-model-key"]["entrypoint"]
    code = entrypoint[2].replace("/data/model.key", str(tmp_path / "model.key"))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    key = (tmp_path / "model.key").read_bytes()
    assert len(key) >= 32 and (tmp_path / "model.key").stat().st_mode & 0o777 == 0o600
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # a restart of the stack keeps it
    assert (tmp_path / "model.key").read_bytes() == key


def test_grafana_clickhouse_data_source_and_dashboard():
    (ds,) = _load(DEPLOY / "grafana/clickhouse/provisioning/datasources/clickhouse.yaml")["datasources"]
    compose = _load(DEPLOY / "docker-compose.yaml")
    store = parse_target(build_config(env={k: str(v) for k, v in
                                           compose["services"]["whyslow-0"]["environment"].items()}).store)
    assert ds["type"] == "grafana-clickhouse-datasource"
    assert (ds["jsonData"]["host"], ds["jsonData"]["port"], ds["jsonData"]["defaultDatabase"]) == (
        store.host, store.port, store.database)
    grafana = compose["services"]["grafana-clickhouse"]
    assert ds["type"] in grafana["environment"]["GF_INSTALL_PLUGINS"].split(",")
    dashboard = json.loads((DEPLOY / "grafana/clickhouse/dashboards/whyslow-clickhouse.json").read_text())
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].endswith(dashboard["uid"] + ".json")
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == ds["uid"]
        assert all(t["datasource"]["uid"] == ds["uid"] and t["rawSql"] for t in panel["targets"])


def test_dashboard_sql_runs_on_the_store_tables():
    """The panels' SQL (Grafana macros expanded as the data source does) on a ClickHouse store's tables."""
    dashboard = json.loads((DEPLOY / "grafana/clickhouse/dashboards/whyslow-clickhouse.json").read_text())
    ex = connect(f"chdb://{chdb_path()}?database=whyslow")
    for table in ("explanations", "outliers", "models", "traces"):
        ex.command(f"DROP TABLE IF EXISTS whyslow.{table}")
    _, results = open_clickhouse_stores(f"chdb://{chdb_path()}?database=whyslow", replica="1")
    now = time.time_ns()
    for k, service in enumerate(["cart", "cart", "db"]):
        results.save_explanation(f"{k:032x}", {
            "entry": "web:GET /", "start_unix_nano": now - k * 1_000_000_000, "target_latency_ms": 900.0 + k,
            "outlier_score": 12.0, "is_outlier": True, "rarer_than": 1e5, "contributions": [
                {"service": service, "operation": "GET /x", "kind": "span", "contribution": 10.0, "share": 0.8}]})
    lo, hi = (now - 3600 * 1_000_000_000) // 1_000_000, (now + 60 * 1_000_000_000) // 1_000_000
    expand = f"start_time >= toDateTime64({lo / 1000}, 3) AND start_time <= toDateTime64({hi / 1000}, 3)"
    answers = []
    for panel in dashboard["panels"]:
        sql = panel["targets"][0]["rawSql"].replace("$__timeFilter(start_time)", expand)
        answers.append(ex.query(sql))
    assert answers[0] == [("cart", 2, 80.0), ("db", 1, 80.0)]
    rows = answers[1]
    assert [r[4] for r in rows] == ["cart", "cart", "db"] and rows[0][2] == 900.0 and rows[0][-1] == "1"
    assert "cart GET /x" in rows[0][6]  # the one-line summary
