"""The OpenTelemetry Collector configuration keys of the components deploy/ uses, as documented by the collector
(otlp receiver, batch processor, otlp exporter and their shared gRPC/HTTP/TLS/queue/retry settings).

No collector binary can run here, so the deploy tests check our configs against this encoding of the documented
schema: unknown keys (typos) and wrong value types fail, as the collector would refuse to start.
"""

from __future__ import annotations

import re
from typing import Any

DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")

TLS_SERVER = {"ca_file", "ca_pem", "cert_file", "cert_pem", "key_file", "key_pem", "client_ca_file",
              "min_version", "max_version", "reload_interval", "cipher_suites", "include_system_ca_certs_pool"}
TLS_CLIENT = {"insecure", "insecure_skip_verify", "ca_file", "ca_pem", "cert_file", "cert_pem", "key_file",
              "key_pem", "server_name_override", "min_version", "max_version", "reload_interval", "cipher_suites",
              "include_system_ca_certs_pool"}
GRPC_SERVER = {"endpoint", "transport", "tls", "max_recv_msg_size_mib", "max_concurrent_streams",
               "read_buffer_size", "write_buffer_size", "keepalive", "auth", "include_metadata"}
HTTP_SERVER = {"endpoint", "tls", "cors", "auth", "include_metadata", "max_request_body_size", "response_headers",
               "compression_algorithms", "traces_url_path", "metrics_url_path", "logs_url_path"}
BATCH = {"timeout": "duration", "send_batch_size": int, "send_batch_max_size": int, "metadata_keys": list,
         "metadata_cardinality_limit": int}
OTLP_EXPORTER = {"endpoint", "tls", "compression", "headers", "timeout", "sending_queue", "retry_on_failure",
                 "balancer_name", "auth", "keepalive", "authority", "read_buffer_size", "write_buffer_size",
                 "wait_for_ready"}
SENDING_QUEUE = {"enabled": bool, "num_consumers": int, "queue_size": int, "storage": str, "blocking": bool,
                 "sizer": str, "wait_for_result": bool, "block_on_overflow": bool, "batch": dict}
RETRY = {"enabled": bool, "initial_interval": "duration", "randomization_factor": float, "multiplier": float,
         "max_interval": "duration", "max_elapsed_time": "duration"}
COMPRESSION = {"gzip", "zlib", "deflate", "snappy", "zstd", "lz4", "none", ""}


def _typed(section: str, value: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    errors = []
    for key, v in (value or {}).items():
        if key not in spec:
            errors.append(f"{section}: unknown key {key!r}")
            continue
        kind = spec[key]
        if kind == "duration":
            if not (isinstance(v, str) and DURATION.match(v)):
                errors.append(f"{section}.{key}: {v!r} is not a duration like 5s or 200ms")
        elif kind is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                errors.append(f"{section}.{key}: {v!r} is not a number")
        elif kind is int:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                errors.append(f"{section}.{key}: {v!r} is not a non-negative integer")
        elif not isinstance(v, kind):
            errors.append(f"{section}.{key}: {v!r} is not a {kind.__name__}")
    return errors


def _keys(section: str, value: Any, allowed: set[str]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [f"{section}: must be a mapping"]
    return [f"{section}: unknown key {k!r}" for k in value if k not in allowed]


def _endpoint(section: str, value: Any) -> list[str]:
    if not isinstance(value, str) or not re.match(r"^(https?://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$", value):
        return [f"{section}.endpoint: {value!r} is not host:port"]
    return []


def check_otlp_receiver(name: str, cfg: Any) -> list[str]:
    errors = _keys(f"receivers.{name}", cfg, {"protocols"})
    protocols = (cfg or {}).get("protocols") or {}
    errors += _keys(f"receivers.{name}.protocols", protocols, {"grpc", "http"})
    if not protocols:
        errors.append(f"receivers.{name}: no protocol enabled")
    for proto, allowed, tls in (("grpc", GRPC_SERVER, TLS_SERVER), ("http", HTTP_SERVER, TLS_SERVER)):
        if proto in protocols:
            section = f"receivers.{name}.protocols.{proto}"
            settings = protocols[proto] or {}
            errors += _keys(section, settings, allowed)
            errors += _keys(section + ".tls", settings.get("tls"), tls)
            if "endpoint" in settings:
                errors += _endpoint(section, settings["endpoint"])
    return errors


def check_batch_processor(name: str, cfg: Any) -> list[str]:
    errors = _typed(f"processors.{name}", cfg or {}, BATCH)
    cfg = cfg or {}
    if "send_batch_max_size" in cfg and cfg["send_batch_max_size"] not in (0, None):
        if cfg["send_batch_max_size"] < cfg.get("send_batch_size", 8192):
            errors.append(f"processors.{name}: send_batch_max_size must be >= send_batch_size")
    return errors


def check_otlp_exporter(name: str, cfg: Any) -> list[str]:
    section = f"exporters.{name}"
    if not isinstance(cfg, dict) or "endpoint" not in cfg:
        return [f"{section}: endpoint is required"]
    errors = _keys(section, cfg, OTLP_EXPORTER) + _endpoint(section, cfg["endpoint"])
    errors += _keys(section + ".tls", cfg.get("tls"), TLS_CLIENT)
    if "compression" in cfg and cfg["compression"] not in COMPRESSION:
        errors.append(f"{section}.compression: {cfg['compression']!r} is not a known compression")
    if "timeout" in cfg:
        errors += _typed(section, {"timeout": cfg["timeout"]}, {"timeout": "duration"})
    errors += _typed(section + ".sending_queue", cfg.get("sending_queue") or {}, SENDING_QUEUE)
    errors += _typed(section + ".retry_on_failure", cfg.get("retry_on_failure") or {}, RETRY)
    return errors


CHECKERS = {
    ("receivers", "otlp"): check_otlp_receiver,
    ("processors", "batch"): check_batch_processor,
    ("exporters", "otlp"): check_otlp_exporter,
}


def check_collector_config(cfg: dict[str, Any]) -> list[str]:
    """Every error the collector would report for our subset of components (empty list: valid)."""
    errors: list[str] = []
    allowed_top = {"receivers", "processors", "exporters", "extensions", "connectors", "service"}
    errors += [f"unknown top-level key {k!r}" for k in cfg if k not in allowed_top]
    defined: dict[str, set[str]] = {}
    for kind in ("receivers", "processors", "exporters"):
        defined[kind] = set()
        for name, settings in (cfg.get(kind) or {}).items():
            ctype = name.split("/", 1)[0]
            checker = CHECKERS.get((kind, ctype))
            if checker is None:
                errors.append(f"{kind}.{name}: component type {ctype!r} is not one this project uses/checks")
                continue
            defined[kind].add(name)
            errors += checker(name, settings)
    service = cfg.get("service") or {}
    errors += _keys("service", service, {"pipelines", "extensions", "telemetry"})
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        errors.append("service.pipelines: none defined")
    used: dict[str, set[str]] = {k: set() for k in defined}
    for pname, pipeline in pipelines.items():
        if pname.split("/", 1)[0] not in ("traces", "metrics", "logs"):
            errors.append(f"service.pipelines.{pname}: unknown signal")
        errors += _keys(f"service.pipelines.{pname}", pipeline, {"receivers", "processors", "exporters"})
        for kind in ("receivers", "processors", "exporters"):
            for comp in pipeline.get(kind) or []:
                if comp not in defined[kind]:
                    errors.append(f"service.pipelines.{pname}.{kind}: {comp!r} is not defined")
                used[kind].add(comp)
        if not pipeline.get("receivers") or not pipeline.get("exporters"):
            errors.append(f"service.pipelines.{pname}: needs receivers and exporters")
    for kind in defined:
        for comp in defined[kind] - used[kind]:
            errors.append(f"{kind}.{comp}: defined but used by no pipeline")
    return errors
