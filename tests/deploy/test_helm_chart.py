"""The Helm chart deploy/helm/whyslow, rendered by Helm's own template engine (helm-python-sdk binds Helm's Go
SDK; no cluster is contacted) with default, persistence and sidecar values; the rendered manifests are checked
key by key, and the server settings they carry are validated by the server's own configuration loader."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from plugin.config import FIELDS, build_config, parse_address
from tests.support.collector_schema import check_otlp_exporter

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "whyslow"
PORTS = {"otlp-grpc": 4317, "otlp-http": 4318, "http": 8080, "grpc": 50051}


def values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["apiVersion"] == "v2" and chart["name"] == "whyslow" and chart["type"] == "application"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{chart["appVersion"]}"' in pyproject, "appVersion is the package version"


def test_every_value_a_template_uses_is_defined():
    """Text check that holds without a renderer: each .Values.a.b path the templates read exists."""
    defined = values()
    used = set()
    for path in (CHART / "templates").iterdir():
        used |= set(re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", path.read_text(encoding="utf-8")))
    assert len(used) > 20
    for ref in sorted(used):
        node: Any = defined
        for key in ref.strip(".").split("."):
            assert isinstance(node, dict) and key in node, f".Values{ref} is not in values.yaml"
            node = node[key]


def test_values_agree_with_the_server():
    v = values()
    assert {k.replace("otlpGrpc", "otlp-grpc").replace("otlpHttp", "otlp-http"): p
            for k, p in v["ports"].items()} == PORTS
    for key in v["config"]:
        assert key in FIELDS, f"values.config.{key} is not a server setting"
    assert v["podSecurityContext"]["runAsNonRoot"] is True
    assert v["securityContext"]["readOnlyRootFilesystem"] is True
    assert v["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert v["readinessProbe"]["httpGet"]["path"] == "/readyz"
    from plugin.rest import ROUTES

    paths = {r.path for r in ROUTES if r.method == "GET"}
    assert {"/healthz", "/readyz"} <= paths


# --- rendered by Helm -------------------------------------------------------------------------------------------
helm = pytest.importorskip("helm_python", reason="helm-python-sdk (Helm's Go engine) is not installed")


def render(overrides: dict[str, Any] | None = None) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """Rendered manifests by kind, and NOTES.txt."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(overrides or {}, name="shop", namespace="observability")
    kinds: dict[str, list[dict[str, Any]]] = {}
    notes = ""
    for name, text in out.items():
        if name.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                kinds.setdefault(doc["kind"], []).append(doc)
    return kinds, notes


def test_lint_is_clean():
    result = helm.lint(str(CHART))
    assert result["errors"] == []
    assert all(m["severity"] <= 1 for m in result["messages"]), result["messages"]  # info only


def _container_env(container: dict[str, Any], configmaps: dict[str, dict[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        env.update(configmaps[ref["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def test_default_render_is_a_hardened_deployment():
    kinds, notes = render()
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Service"]
    (dep,) = kinds["Deployment"]
    (svc,) = kinds["Service"]
    configmaps = {c["metadata"]["name"]: c["data"] for c in kinds["ConfigMap"]}
    assert dep["metadata"]["name"] == "shop-whyslow" and dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    assert c["image"] == "whyslow:0.1.0"
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == PORTS
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["resources"]["limits"] and c["resources"]["requests"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == {"/data", "/tmp"} and set(mounts.values()) == set(volumes)
    assert "emptyDir" in volumes[mounts["/data"]]
    # the settings the container gets are a valid server configuration on the declared ports
    env = _container_env(c, configmaps)
    cfg = build_config(env=env)
    assert cfg.data_dir == "/data"
    for name, field in (("otlp-grpc", "otlp_grpc"), ("otlp-http", "otlp_http"), ("http", "http"), ("grpc", "grpc")):
        assert parse_address(getattr(cfg, field)) == ("0.0.0.0", PORTS[name])
    assert cfg.min_traces == values()["config"]["min_traces"]
    # the Service reaches the pods on every port
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == PORTS
    for p in svc["spec"]["ports"]:
        assert p["targetPort"] in ports or p["targetPort"] in ports.values()
    assert "shop-whyslow.observability.svc:4317" in notes and "emptyDir" in notes


def test_persistence_token_and_image_values():
    kinds, _ = render({"persistence": {"enabled": True, "storageClass": "fast"},
                       "auth": {"existingSecret": "whyslow-token"},
                       "image": {"repository": "registry.example.com/whyslow", "tag": "1.2.3"}})
    (pvc,) = kinds["PersistentVolumeClaim"]
    assert pvc["spec"]["storageClassName"] == "fast" and pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    pod = kinds["Deployment"][0]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["whyslow-data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    (c,) = pod["containers"]
    assert c["image"] == "registry.example.com/whyslow:1.2.3"
    token = [e for e in c["env"] if e["name"] == "WHYSLOW_AUTH_TOKEN"]
    assert token == [{"name": "WHYSLOW_AUTH_TOKEN",
                      "valueFrom": {"secretKeyRef": {"name": "whyslow-token", "key": "token"}}}]


def test_sidecar_render_gives_the_container_and_the_exporter_to_add():
    kinds, notes = render({"sidecar": {"enabled": True}})
    assert "Deployment" not in kinds and "PersistentVolumeClaim" not in kinds
    configmaps = {c["metadata"]["name"]: c["data"] for c in kinds["ConfigMap"]}
    snippet = configmaps["shop-whyslow-sidecar"]
    container = yaml.safe_load(snippet["container.yaml"])
    volumes = yaml.safe_load(snippet["volumes.yaml"])
    exporter = yaml.safe_load(snippet["collector-exporter.yaml"])["exporters"]["otlp/whyslow"]
    assert check_otlp_exporter("otlp/whyslow", exporter) == []
    env = _container_env(container, configmaps)
    cfg = build_config(env=env)
    # OTLP only on the shared pod's loopback, beside the collector's own 4317/4318
    assert parse_address(cfg.otlp_grpc) == ("127.0.0.1", 14317) and parse_address(cfg.otlp_http)[0] == "127.0.0.1"
    assert exporter["endpoint"] == cfg.otlp_grpc
    assert {p["name"] for p in container["ports"]} == {"http", "grpc"}
    assert {m["name"] for m in container["volumeMounts"]} == {v["name"] for v in volumes}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (svc,) = kinds["Service"]
    assert svc["spec"]["selector"] == values()["sidecar"]["podSelector"]
    assert {p["name"] for p in svc["spec"]["ports"]} == {"http", "grpc"}
    assert "shop-whyslow-sidecar" in notes


# --- rendered manifests against the Kubernetes API schemas ------------------------------------------------------
@pytest.mark.parametrize("overrides", [
    {},
    {"persistence": {"enabled": True}, "auth": {"existingSecret": "t", "grafanaTokenSecret": "g"},
     "config": {"grafana_url": "http://grafana:3000"}},
    {"sidecar": {"enabled": True}},
    {"replicaCount": 3, "clickhouse": {"store": "clickhouse://whyslow@clickhouse:8123/whyslow",
                                       "passwordSecret": "ch", "pull": True}},
])
def test_rendered_manifests_are_valid_kubernetes_objects(overrides):
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (Kubernetes schemas) is missing")
    version = kv.latest_version()
    kinds, _ = render(overrides)
    docs = [d for group in kinds.values() for d in group]
    assert docs
    for doc in docs:
        kv.validate(doc, version, strict=True)  # strict: unknown fields are errors too
    if overrides.get("sidecar"):
        # the snippet, pasted into a collector's pod as the README says, makes a valid pod
        snippet = {c["metadata"]["name"]: c["data"] for c in kinds["ConfigMap"]}["shop-whyslow-sidecar"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "otel-collector"},
               "spec": {"containers": [{"name": "otelcol", "image": "otel/opentelemetry-collector-contrib:0.115.1"},
                                       yaml.safe_load(snippet["container.yaml"])],
                        "volumes": yaml.safe_load(snippet["volumes.yaml"])}}
        kv.validate(pod, version, strict=True)


def test_clickhouse_store_renders_a_statefulset_of_replicas(monkeypatch):
    store = "clickhouse://whyslow@clickhouse:8123/whyslow"
    kinds, _ = render({"replicaCount": 3, "clickhouse": {"store": store, "passwordSecret": "ch"}})
    assert "Deployment" not in kinds
    (sts,) = kinds["StatefulSet"]
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["serviceName"] == "shop-whyslow-headless"
    # a stopping replica waits for its last traces to settle before scoring them (plugin.replicas.settle_delay)
    from plugin.replicas import settle_delay

    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > settle_delay(
        float(values()["config"]["trace_timeout_s"])) + 30
    headless = {s["metadata"]["name"]: s for s in kinds["Service"]}["shop-whyslow-headless"]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["selector"] == sts["spec"]["selector"][
        "matchLabels"]
    configmaps = {c["metadata"]["name"]: c["data"] for c in kinds["ConfigMap"]}
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    env = _container_env(container, configmaps)
    secret = {e["name"]: e for e in container["env"]}["CLICKHOUSE_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "ch", "key": "password"}
    # the server reads the settings as the pod ordinal gives them: pod shop-whyslow-2 is replica 2 of 3
    monkeypatch.setenv("HOSTNAME", "shop-whyslow-2")
    cfg = build_config(env=env)
    assert cfg.store == store and cfg.replica_share() == (2, 3) and cfg.source == "otlp"
    # push mode: the collector's loadbalancing exporter routes each trace to one replica through the headless DNS
    lb = yaml.safe_load(configmaps["shop-whyslow-loadbalancing"]["exporter.yaml"])["exporters"]["loadbalancing/whyslow"]
    assert lb["routing_key"] == "traceID"
    assert lb["resolver"]["dns"] == {"hostname": "shop-whyslow-headless.observability.svc.cluster.local", "port": 4317}
    # pull mode: the replicas read otel_traces themselves; no exporter to add
    kinds, _ = render({"replicaCount": 2, "clickhouse": {"store": store, "pull": True, "sourceLagS": 45}})
    configmaps = {c["metadata"]["name"]: c["data"] for c in kinds["ConfigMap"]}
    assert "shop-whyslow-loadbalancing" not in configmaps
    monkeypatch.setenv("HOSTNAME", "shop-whyslow-1")
    cfg = build_config(env=_container_env(kinds["StatefulSet"][0]["spec"]["template"]["spec"]["containers"][0],
                                          configmaps))
    assert (cfg.source, cfg.source_table, cfg.source_lag_s) == ("clickhouse", "otel_traces", 45.0)


def test_replicas_share_a_model_key_mounted_read_only(monkeypatch, tmp_path):
    """With a ClickHouse store every replica mounts one model key (generated by the chart, or the user's Secret)
    read-only outside the data dir and signs its models with it: a model one replica saved loads in another."""
    import base64

    from plugin import model_blobs

    store = "clickhouse://whyslow@clickhouse:8123/whyslow"
    kinds, _ = render({"replicaCount": 2, "clickhouse": {"store": store}})
    secrets = {s["metadata"]["name"]: s for s in kinds["Secret"]}
    generated = secrets["shop-whyslow-model-key"]
    assert generated["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    key = base64.b64decode(generated["data"]["model.key"])
    assert len(key) == 64 and key.isalnum()
    spec = kinds["StatefulSet"][0]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mount = {m["name"]: m for m in container["volumeMounts"]}["whyslow-model-key"]
    assert mount["readOnly"] is True and not mount["mountPath"].startswith("/data")
    volume = {v["name"]: v for v in spec["volumes"]}["whyslow-model-key"]
    assert volume["secret"]["secretName"] == "shop-whyslow-model-key" and volume["secret"]["defaultMode"] == 0o440
    configmaps = {c["metadata"]["name"]: c["data"] for c in kinds["ConfigMap"]}
    key_file = _container_env(container, configmaps)["WHYSLOW_MODEL_KEY_FILE"]
    assert key_file == f"{mount['mountPath']}/{volume['secret']['items'][0]['path']}"
    # what each replica reads there: the same key in both pods, so one's model blob loads in the other
    keys = []
    for pod in ("shop-whyslow-0", "shop-whyslow-1"):
        monkeypatch.setenv("HOSTNAME", pod)
        cfg = build_config(env=_container_env(container, configmaps))
        assert cfg.model_key_file == key_file
        mounted = tmp_path / pod / "model.key"
        mounted.parent.mkdir()
        mounted.write_bytes(key)
        mounted.chmod(0o440)
        keys.append(model_blobs.model_key(str(mounted), auth_token=None))
    assert keys[0] == keys[1] == key
    assert model_blobs.load(model_blobs.dump({"entry": "x"}, keys[0]), keys[1]) == {"entry": "x"}
    # the user's own Secret: nothing generated, theirs mounted under their key name
    kinds, _ = render({"replicaCount": 2, "clickhouse": {"store": store,
                                                         "modelKey": {"existingSecret": "mine", "secretKey": "k"}}})
    assert "shop-whyslow-model-key" not in {s["metadata"]["name"] for s in kinds.get("Secret", [])}
    spec = kinds["StatefulSet"][0]["spec"]["template"]["spec"]
    volume = {v["name"]: v for v in spec["volumes"]}["whyslow-model-key"]
    assert volume["secret"]["secretName"] == "mine" and volume["secret"]["items"] == [{"key": "k", "path": "k"}]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["WHYSLOW_MODEL_KEY_FILE"] == "/etc/whyslow/model-key/k"
    # the SQLite default: one process, no shared key
    kinds, _ = render()
    assert "Secret" not in kinds
    assert all(v["name"] != "whyslow-model-key" for v in kinds["Deployment"][0]["spec"]["template"]["spec"]["volumes"])


def test_schema_validation_catches_a_misspelt_field():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (Kubernetes schemas) is missing")
    kinds, _ = render()
    dep = kinds["Deployment"][0]
    dep["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, kv.latest_version(), strict=True)


# --- values.schema.json: Helm refuses mistaken values before rendering ------------------------------------------
def test_values_schema_matches_the_server_settings():
    import json

    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    config = schema["properties"]["config"]
    assert config["additionalProperties"] is False
    assert set(config["properties"]) <= set(FIELDS)
    assert set(values()["config"]) <= set(config["properties"])
    assert set(values()) == set(schema["properties"])


@pytest.mark.parametrize(("overrides", "message"), [
    ({"sidecar": {"enable": True}}, "additional properties 'enable' not allowed"),
    ({"config": {"min_trace": 50}}, "additional properties 'min_trace' not allowed"),
    ({"config": {"log_level": "verbose"}}, "/config/log_level"),
    ({"ports": {"http": 70000}}, "/ports/http"),
    ({"replicaCount": 3}, "/replicaCount"),  # several replicas need the ClickHouse store
    ({"clickhouse": {"store": "clickhouse://u:secret@h:8123/db"}}, "/clickhouse/store"),  # no password in values
    ({"securityContext": {"readOnlyRootFilesystem": False}}, "/securityContext/readOnlyRootFilesystem"),
])
def test_mistaken_values_are_refused(overrides, message):
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        render(overrides)
