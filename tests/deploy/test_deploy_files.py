"""deploy/: every file parses, the collector config follows the collector's documented schema, and ports, paths,
data source uids and the plugin id agree across compose, collector, Tempo, Grafana provisioning, the dashboard,
the Helm values, the Dockerfile, the panel's plugin.json and the server's own defaults.

No Docker engine, Kubernetes or Grafana can run here; the Helm chart is rendered with Helm's own Go engine
(tests/deploy/test_helm_chart.py).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from plugin.config import FIELDS, ServeConfig, build_config, parse_address
from tests.support.collector_schema import check_collector_config, check_otlp_exporter

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "whyslow-rca.json"

PANEL_ID = "whyslow-rootcause-panel"
JSON_DS_TYPE = "simpod-json-datasource"
PORTS = {"otlp_grpc": 4317, "otlp_http": 4318, "http": 8080, "grpc": 50051}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(DEPLOY / "docker-compose.yaml")


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return load(DEPLOY / "otel-collector.yaml")


@pytest.fixture(scope="module")
def datasources() -> dict[str, dict[str, Any]]:
    docs = [load(p) for p in sorted((PROVISIONING / "datasources").glob("*.yaml"))]
    return {ds["uid"]: ds for doc in docs for ds in doc["datasources"]}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dockerfile_final_stage() -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """(INSTRUCTION, values, flags) of the Dockerfile's last stage, parsed by Docker's own (Go) parser."""
    dockerfile = pytest.importorskip("dockerfile", reason="the `dockerfile` parser (Docker's Go parser) is missing")
    commands = dockerfile.parse_file(str(DEPLOY / "Dockerfile"))
    stage = [(c.cmd.upper(), tuple(c.value), tuple(c.flags)) for c in commands]
    last_from = max(i for i, (ins, _, _) in enumerate(stage) if ins == "FROM")
    return stage[last_from:]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for ins, values, _ in dockerfile_final_stage():
        if ins == "ENV":
            env.update(zip(values[::2], values[1::2], strict=True))
    return env


# --- every file parses ----------------------------------------------------------------------------------------
def test_every_yaml_and_json_file_parses():
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and "templates" not in p.parts]
    yamls = [p for p in files if p.suffix in (".yaml", ".yml")]
    jsons = [p for p in files if p.suffix == ".json"]
    assert len(yamls) >= 7 and len(jsons) >= 1
    for p in yamls:
        assert load(p) is not None, p
    for p in jsons:
        assert isinstance(json.loads(p.read_text(encoding="utf-8")), dict), p


def test_readme_snippets_parse_and_exporter_snippet_is_valid():
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    parsed = [yaml.safe_load(textwrap.dedent(b)) for b in blocks]
    exporter = next(p for p in parsed if "exporters" in p)
    assert check_otlp_exporter("otlp/whyslow", exporter["exporters"]["otlp/whyslow"]) == []
    assert "otlp/whyslow" in exporter["service"]["pipelines"]["traces"]["exporters"]
    ds = next(p for p in parsed if "datasources" in p)["datasources"][0]
    assert (ds["uid"], ds["type"]) == ("whyslow", JSON_DS_TYPE)
    for section in ("docker compose", "Helm chart", "Sidecar next to an existing OpenTelemetry Collector",
                    "Next to an existing OpenTelemetry Collector", "Existing Grafana", "Why 0.0.0.0"):
        assert section in text


# --- collector ----------------------------------------------------------------------------------------------------
def test_collector_config_follows_the_documented_schema(collector):
    assert check_collector_config(collector) == []


def test_collector_schema_check_catches_mistakes(collector):
    bad = json.loads(json.dumps(collector))
    bad["exporters"]["otlp/whyslow"]["tls"]["insecur"] = True
    bad["processors"]["batch"]["timeout"] = "one second"
    bad["service"]["pipelines"]["traces"]["exporters"].append("otlp/jaeger")
    bad["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = "4317"
    errors = "\n".join(check_collector_config(bad))
    for expected in ("unknown key 'insecur'", "not a duration", "'otlp/jaeger' is not defined",
                     "is not host:port"):
        assert expected in errors


def test_collector_pipeline_sends_to_tempo_and_whyslow(collector, compose):
    pipeline = collector["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"] and pipeline["processors"] == ["batch"]
    endpoints = {name: collector["exporters"][name]["endpoint"] for name in pipeline["exporters"]}
    assert set(endpoints) == {"otlp/tempo", "otlp/whyslow"}
    tempo = load(DEPLOY / "tempo.yaml")
    tempo_grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert endpoints["otlp/tempo"] == f"tempo:{parse_address(tempo_grpc)[1]}"
    whyslow_otlp = dockerfile_env()["WHYSLOW_OTLP_GRPC"]
    assert endpoints["otlp/whyslow"] == f"whyslow:{parse_address(whyslow_otlp)[1]}"
    for host in ("tempo", "whyslow"):
        assert host in compose["services"]
    receiver = collector["receivers"]["otlp"]["protocols"]
    published = {p.rsplit(":", 1)[-1] for p in compose["services"]["otel-collector"]["ports"]}
    assert {str(parse_address(receiver[p]["endpoint"])[1]) for p in ("grpc", "http")} == published == {"4317", "4318"}


# --- Dockerfile -----------------------------------------------------------------------------------------------------
def test_dockerfile_runtime_stage():
    stage = dockerfile_final_stage()
    ins = [i for i, _, _ in stage]
    values = {i: v for i, v, _ in reversed(stage)}  # first occurrence of each instruction
    assert re.match(r"python:3\.\d+-slim$", values["FROM"][0])
    args = dict(v[0].split("=", 1) for i, v, _ in stage if i == "ARG")
    user = [v[0] for i, v, _ in stage if i == "USER"][-1]
    uid = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], user).split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, "runs as an unprivileged numeric user"
    assert ins.index("USER") > max(i for i, x in enumerate(ins) if x == "RUN"), "nothing runs as root after USER"
    assert list(values["ENTRYPOINT"]) == ["whyslow", "serve"]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^whyslow = "plugin\.cli:main"$', pyproject, flags=re.M), "console script of the ENTRYPOINT"
    exposed = {int(p) for i, v, _ in stage if i == "EXPOSE" for p in v}
    assert exposed == set(PORTS.values())
    healthcheck = " ".join(values["HEALTHCHECK"])
    assert f"127.0.0.1:{PORTS['http']}/healthz" in healthcheck
    run_steps = " ".join(v[0] for i, v, _ in stage if i == "RUN")
    assert "--no-index" in run_steps, "the runtime stage installs prebuilt wheels only, builds nothing"
    # gRPC stubs exist before the unprivileged user runs on a read-only filesystem
    assert "require_stubs(strict=True)" in run_steps and "import plugin.grpc_gen" in run_steps
    copies_from = {f.split("=", 1)[1] for i, _, flags in stage if i == "COPY" for f in flags if f.startswith("--from=")}
    dockerfile = pytest.importorskip("dockerfile")
    named = {c.value[2] for c in dockerfile.parse_file(str(DEPLOY / "Dockerfile"))
             if c.cmd.upper() == "FROM" and len(c.value) == 3 and c.value[1].upper() == "AS"}
    assert copies_from == named == {"panel", "wheels"}


def test_dockerfile_binds_every_listener_to_all_interfaces_on_the_default_ports():
    env = dockerfile_env()
    for name, port in PORTS.items():
        key = "WHYSLOW_" + name.upper()
        assert env[key] == f"0.0.0.0:{port}", key
    for key in env:
        if key.startswith("WHYSLOW_"):
            assert key[len("WHYSLOW_"):].lower() in FIELDS, f"{key} is not a server setting"
    # the web page directory is filled by the panel build stage
    ui_dir = env.pop("WHYSLOW_UI_DIR")
    copies = [v for i, v, flags in dockerfile_final_stage() if i == "COPY" and "--from=panel" in flags]
    assert copies and copies[0][-1].rstrip("/") == ui_dir
    cfg = build_config(env=env)  # the image's settings are a valid server configuration
    assert cfg.data_dir == "/data"


def test_default_ports_agree_with_the_server_and_the_contract():
    defaults = ServeConfig()
    for name, port in PORTS.items():
        assert parse_address(getattr(defaults, name)) == ("127.0.0.1", port)
    arch = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for port in PORTS.values():
        assert f"127.0.0.1:{port}" in arch
    for name in (PANEL_ID, "`whyslow`", "`tempo`", "`whyslow-rca` / `traceId`"):
        assert name in arch


def test_dockerignore_keeps_local_artifacts_out():
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    for path in (".git", ".venv", "grafana_panel/node_modules", "plugin/grpc_gen"):
        assert path in ignored


# --- compose ----------------------------------------------------------------------------------------------------
def test_compose_services_ports_and_mounts(compose):
    services = compose["services"]
    assert {"whyslow", "otel-collector", "tempo", "grafana"} <= set(services)
    ws = services["whyslow"]
    assert ws["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / ".." / ws["build"]["dockerfile"]).resolve().is_file()
    published = {p.rsplit(":", 2)[-1]: p for p in ws["ports"]}
    assert set(published) == {str(PORTS["http"]), str(PORTS["grpc"])}
    assert all(p.startswith("127.0.0.1:") for svc in services.values() for p in svc.get("ports", []))
    assert any(v.endswith(":/data") for v in ws["volumes"])
    for svc in services.values():  # every bind-mounted file exists
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                if "grafana_panel/dist" in source:
                    continue  # build output of `make panel`
                assert (DEPLOY / source).exists(), source
    for name, svc in services.items():
        deps = svc.get("depends_on", [])
        for dep in deps:
            assert dep in services, f"{name} depends on unknown {dep}"
            if isinstance(deps, dict):
                assert deps[dep]["condition"] in ("service_started", "service_healthy",
                                                  "service_completed_successfully")
    assert compose["services"]["otel-collector"]["depends_on"]["whyslow"]["condition"] == "service_healthy"
    healthchecks = [v for i, v, _ in dockerfile_final_stage() if i == "HEALTHCHECK"]
    assert healthchecks, "service_healthy needs the image's HEALTHCHECK"
    for volume in (v.split(":", 1)[0] for s in services.values() for v in s.get("volumes", [])):
        if not volume.startswith((".", "/")):
            assert volume in compose["volumes"]


def test_compose_grafana_loads_the_panel_and_the_json_data_source(compose):
    grafana = compose["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_PLUGINS_ALLOW_LOADING_UNSIGNED_PLUGINS"] == PANEL_ID
    assert JSON_DS_TYPE in env["GF_INSTALL_PLUGINS"].split(",")
    assert JSON_DS_TYPE in env["GF_PLUGINS_PREINSTALL_SYNC"].split(",")
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("."))
    assert mounts["../grafana_panel/dist"] == f"/var/lib/grafana/plugins/{PANEL_ID}"
    built = DEPLOY / "../grafana_panel/dist/plugin.json"
    if built.is_file():  # after `make panel`: the mounted directory is the plugin Grafana expects there
        meta = json.loads(built.read_text(encoding="utf-8"))
        assert meta["id"] == PANEL_ID and meta["type"] == "panel"
        assert (built.parent / "module.js").is_file()
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = load(PROVISIONING / "dashboards" / "whyslow.yaml")["providers"][0]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == provider["options"]["path"] + "/" + DASHBOARD.name


def test_compose_tempo_matches_its_config(compose):
    tempo_cfg = load(DEPLOY / "tempo.yaml")
    tempo = compose["services"]["tempo"]
    assert any(p.endswith(f":{tempo_cfg['server']['http_listen_port']}") for p in tempo["ports"])
    assert "-config.file=/etc/tempo.yaml" in tempo["command"]
    assert any(v.startswith("./tempo.yaml:/etc/tempo.yaml") for v in tempo["volumes"])
    storage = tempo_cfg["storage"]["trace"]
    assert storage["wal"]["path"].startswith("/var/tempo") and storage["local"]["path"].startswith("/var/tempo")


# --- Grafana provisioning and dashboard --------------------------------------------------------------------------
def test_data_sources(datasources, compose):
    tempo, ws = datasources["tempo"], datasources["whyslow"]
    assert tempo["type"] == "tempo"
    port = load(DEPLOY / "tempo.yaml")["server"]["http_listen_port"]
    assert tempo["url"] == f"http://tempo:{port}"
    assert ws["type"] == JSON_DS_TYPE
    assert ws["url"] == f"http://whyslow:{PORTS['http']}"
    (link,) = tempo["correlations"]
    assert link["type"] == "external" and link["config"]["field"] == "traceID"
    assert link["config"]["target"]["url"] == "/d/whyslow-rca?var-traceId=${traceID}"


def test_prometheus_scrapes_whyslow_for_the_self_time_panel(datasources, compose):
    prom = compose["services"]["prometheus"]
    scrape = load(DEPLOY / "prometheus.yaml")
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in prom["volumes"] if v.startswith("."))
    config_path = mounts["./prometheus.yaml"]
    assert f"--config.file={config_path}" in prom["command"]
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"whyslow:{PORTS['http']}"]
    port = next(p.rsplit(":", 1)[-1] for p in prom["ports"])
    assert datasources["prometheus"]["type"] == "prometheus"
    assert datasources["prometheus"]["url"] == f"http://prometheus:{port}"
    assert "prometheus" in compose["services"]["grafana"]["depends_on"]


def test_dashboard_panels_and_variable(dashboard, datasources):
    assert dashboard["uid"] == "whyslow-rca"
    (var,) = dashboard["templating"]["list"]
    assert (var["name"], var["type"]) == ("traceId", "textbox")
    panels = {p["type"]: p for p in dashboard["panels"]}
    plugin_json = json.loads((ROOT / "grafana_panel" / "src" / "plugin.json").read_text(encoding="utf-8"))
    assert plugin_json["id"] == PANEL_ID and plugin_json["type"] == "panel"
    rca = panels[PANEL_ID]
    assert rca["datasource"] == {"type": JSON_DS_TYPE, "uid": "whyslow"}
    assert rca["targets"] == [{"refId": "A", "datasource": rca["datasource"], "target": "rca",
                               "payload": {"traceId": "$traceId"}}]
    traces = panels["traces"]
    assert traces["datasource"]["uid"] == "tempo" and traces["targets"][0]["query"] == "$traceId"
    tables = {p["targets"][0]["target"]: p for p in dashboard["panels"] if p["type"] == "table"}
    assert set(tables) == {"outliers", "incident"}
    table = tables["outliers"]
    (override,) = table["fieldConfig"]["overrides"]
    assert override["matcher"]["options"] == "trace_id"
    assert override["properties"][0]["value"][0]["url"].startswith("/d/whyslow-rca?var-traceId=${__value.raw}")
    (share,) = tables["incident"]["fieldConfig"]["overrides"]
    assert share["matcher"]["options"] == "share" and share["properties"][0]["value"] == "percentunit"
    for p in dashboard["panels"]:  # every data source the dashboard uses is provisioned, with the same type
        ds = p["datasource"]
        assert datasources[ds["uid"]]["type"] == ds["type"]
        for t in p["targets"]:
            assert t["datasource"] == ds
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_queries_are_answered_by_the_real_backend(dashboard, tmp_path):
    """The dashboard's JSON data source targets, sent as Grafana sends them, to a real whyslow server."""
    import urllib.request

    from plugin.server import WhySlowServer

    cfg = ServeConfig(data_dir=str(tmp_path), otlp_grpc="127.0.0.1:0", otlp_http="127.0.0.1:0",
                      http="127.0.0.1:0", grpc="127.0.0.1:0").validate()
    server = WhySlowServer(cfg).start()
    try:
        base = server.url("http")

        def post(path: str, body: dict[str, Any]) -> Any:
            req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())

        offered = {m["value"] for m in post("/metrics", {})}
        for panel in dashboard["panels"]:
            if panel["datasource"]["uid"] != "whyslow":
                continue
            for target in panel["targets"]:
                assert target["target"] in offered
                frames = post("/query", {"targets": [dict(target)], "scopedVars": {},
                                         "range": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}})
                assert frames and all(f["type"] == "table" for f in frames)
                names = {c["text"] for f in frames for c in f["columns"]}
                if target["target"] == "rca":  # no trace selected yet: the summary frame says so
                    assert {"status", "message"} <= names
                    assert frames[0]["rows"][0][0] == "no_trace"
                elif target["target"] == "incident":
                    assert {"service", "share", "top_node"} <= names
                else:
                    assert "trace_id" in names  # the column the table's data link is on
        with urllib.request.urlopen(base + "/healthz", timeout=10) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(base + "/readyz", timeout=10) as resp:
            assert resp.status == 200
    finally:
        server.stop(5)
