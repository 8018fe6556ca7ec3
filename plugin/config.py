"""`whyslow serve` configuration: one dataclass, merged from flags > WHYSLOW_* env > YAML file > defaults.

Every field is documented in plugin/README.md (the table is checked against this dataclass by a test).
Errors are `ConfigError` with a one-line message; the CLI prints it and exits 2.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ENV_PREFIX = "WHYSLOW_"
_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.\-]+):(?P<port>\d{1,5})$")


class ConfigError(ValueError):
    """Invalid configuration (one-line message meant for the user)."""


@dataclass
class ServeConfig:
    """Everything `whyslow serve` needs; validated by `validate()`."""

    data_dir: str = "./whyslow-data"
    otlp_grpc: str = "127.0.0.1:4317"
    otlp_http: str = "127.0.0.1:4318"
    http: str = "127.0.0.1:8080"
    grpc: str = "127.0.0.1:50051"
    # model lifecycle
    min_traces: int = 100
    window: int = 2000
    failure_window: int = 20000  # traces the failure model counts (failures are rare: rarity needs counts)
    refit_interval_s: float = 300.0
    early_refit: bool = True
    mechanisms: str = "structural"
    # detector
    threshold: float = 9.21  # ln(10000): rarer than 1 in 10,000 requests of the entry point
    explain_queue: int = 1000
    intervals: int = 0
    # /metrics: own-time and call-gap histograms for this many span types per entry point (the rest: "other")
    self_time_top_n: int = 20
    # collector
    trace_timeout_s: float = 2.0
    retention_max_age_s: float = 7 * 24 * 3600.0
    retention_max_rows: int = 1_000_000
    # security
    auth_token: str | None = field(default=None, repr=False)
    auth_token_file: str | None = None
    ingest_token: str | None = field(default=None, repr=False)  # OTLP receivers; unset: auth_token applies
    ingest_token_file: str | None = None
    model_key_file: str | None = None    # HMAC key of persisted models, outside the data dir (created if missing)
    tls_cert_file: str | None = None     # PEM certificate chain: every listener serves TLS when set
    tls_key_file: str | None = None
    max_entry_points: int = 1000         # distinct entry points; beyond: folded into "{other}:{other}"
    max_span_types: int = 100_000        # distinct (service, operation); beyond: "{other}" buckets
    cors_origins: list[str] = field(default_factory=list)
    # Grafana annotations
    grafana_url: str | None = None
    grafana_token: str | None = field(default=None, repr=False)
    grafana_token_file: str | None = None
    grafana_dashboard_uid: str | None = None
    grafana_panel_id: int | None = None
    annotation_queue: int = 1000
    annotation_retries: int = 5
    annotation_min_interval_s: float = 60.0
    # web UI
    ui_dir: str | None = None
    log_level: str = "info"
    # scale-out: shared ClickHouse store, pull mode, replicas (see docs/SCALING.md)
    store: str = field(default="sqlite", repr=False)
    source: str = "otlp"
    source_url: str | None = field(default=None, repr=False)
    source_table: str = "otel_traces"
    source_lag_s: float = 30.0
    source_window_s: float = 10.0
    source_backfill_s: float = 0.0
    replica: str = "0/1"

    def validate(self) -> ServeConfig:
        """Check every field; resolve token files; return self (raises ConfigError)."""
        for name in ("otlp_grpc", "otlp_http", "http", "grpc"):
            parse_address(getattr(self, name), name)
        _positive_int(self.min_traces, "min_traces", minimum=10)
        _positive_int(self.window, "window", minimum=10)
        _positive_int(self.failure_window, "failure_window", minimum=10)
        if self.window < self.min_traces:
            raise ConfigError(f"window ({self.window}) must be >= min_traces ({self.min_traces})")
        _positive_number(self.refit_interval_s, "refit_interval_s")
        if not isinstance(self.early_refit, bool):
            raise ConfigError(f"early_refit must be true or false, got {self.early_refit!r}")
        if self.mechanisms not in ("auto", "structural", "linear", "nonlinear"):
            raise ConfigError("mechanisms must be one of auto, structural, linear, nonlinear")
        _positive_number(self.threshold, "threshold")
        _positive_int(self.explain_queue, "explain_queue", minimum=1)
        _positive_int(self.intervals, "intervals", minimum=0, maximum=200)
        _positive_int(self.self_time_top_n, "self_time_top_n", minimum=1, maximum=1000)
        if self.intervals == 1:
            raise ConfigError("intervals must be 0 or between 2 and 200")
        _positive_number(self.trace_timeout_s, "trace_timeout_s")
        _positive_number(self.retention_max_age_s, "retention_max_age_s")
        _positive_int(self.retention_max_rows, "retention_max_rows", minimum=1000)
        _positive_int(self.annotation_queue, "annotation_queue", minimum=1)
        _positive_int(self.annotation_retries, "annotation_retries", minimum=0, maximum=20)
        if self.annotation_min_interval_s != 0:
            _positive_number(self.annotation_min_interval_s, "annotation_min_interval_s")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError("log_level must be one of debug, info, warning, error")
        self.log_level = self.log_level.lower()
        self.auth_token = _token(self.auth_token, self.auth_token_file, "auth_token")
        self.ingest_token = _token(self.ingest_token, self.ingest_token_file, "ingest_token")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("give both tls_cert_file and tls_key_file, or neither")
        for name in ("tls_cert_file", "tls_key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{name} {path!r} is not a readable file")
        if self.tls_cert_file is not None:
            import ssl

            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.tls_cert_file, self.tls_key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load the TLS certificate/key ({exc.strerror or exc})") from None
        _positive_int(self.max_entry_points, "max_entry_points", minimum=1)
        _positive_int(self.max_span_types, "max_span_types", minimum=100)
        self.grafana_token = _token(self.grafana_token, self.grafana_token_file, "grafana_token")
        if self.grafana_url is not None:
            parsed = urlparse(self.grafana_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ConfigError(f"grafana_url must be an http(s) URL, got {self.grafana_url!r}")
            self.grafana_url = self.grafana_url.rstrip("/")
        if self.grafana_panel_id is not None:
            _positive_int(self.grafana_panel_id, "grafana_panel_id", minimum=0)
        for origin in self.cors_origins:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ConfigError(f"cors_origins entries must be '*' or scheme://host[:port], got {origin!r}")
        if self.ui_dir is not None and not Path(self.ui_dir).is_dir():
            raise ConfigError(f"ui_dir {self.ui_dir!r} is not a directory")
        if not self.data_dir:
            raise ConfigError("data_dir must not be empty")
        self._validate_scale_out()
        return self

    def _validate_scale_out(self) -> None:
        from collector_processor.sql_executor import parse_target

        if self.store != "sqlite":
            try:
                parse_target(self.store)
            except ValueError as exc:
                raise ConfigError(f"store must be sqlite or a ClickHouse URL: {exc}") from None
        if self.source not in ("otlp", "clickhouse"):
            raise ConfigError(f"source must be otlp or clickhouse, got {self.source!r}")
        if self.source_url is not None:
            try:
                parse_target(self.source_url)
            except ValueError as exc:
                raise ConfigError(f"source_url: {exc}") from None
        if self.source == "clickhouse" and self.source_url is None and self.store == "sqlite":
            raise ConfigError("source clickhouse needs source_url (or a ClickHouse store to read otel_traces from)")
        if not re.match(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?$", self.source_table):
            raise ConfigError(f"source_table must be table or database.table, got {self.source_table!r}")
        _positive_number(self.source_lag_s, "source_lag_s")
        _positive_number(self.source_window_s, "source_window_s")
        if self.source_backfill_s != 0:
            _positive_number(self.source_backfill_s, "source_backfill_s")
        index, count = self.replica_share()
        if count > 1 and self.store == "sqlite":
            raise ConfigError("replicas share their work through the store: replica i/N with N > 1 needs a "
                              "ClickHouse store (--store clickhouse://...)")

    def store_passwords(self) -> list[str]:
        """Passwords inside the ClickHouse URLs (kept out of every log line)."""
        from collector_processor.sql_executor import parse_target

        return [parse_target(u).password for u in (self.store, self.source_url) if u and u != "sqlite"]

    def replica_share(self) -> tuple[int, int]:
        """(i, N) of ``replica``: ``i/N``, or ``pod/N`` for the ordinal at the end of the host name (a
        StatefulSet pod ``whyslow-2`` is replica 2)."""
        match = re.match(r"^(\d+|pod)/(\d+)$", str(self.replica).strip())
        if not match:
            raise ConfigError(f"replica must be i/N or pod/N, got {self.replica!r}")
        count = int(match.group(2))
        if match.group(1) == "pod":
            host = os.environ.get("HOSTNAME") or os.uname().nodename
            ordinal = re.search(r"-(\d+)$", host)
            if not ordinal:
                raise ConfigError(f"replica pod/N: the host name {host!r} does not end in a pod ordinal (-0, -1, ...)")
            index = int(ordinal.group(1))
        else:
            index = int(match.group(1))
        if not 0 <= index < count or count > 1024:
            raise ConfigError(f"replica must be i/N with 0 <= i < N <= 1024, got {self.replica!r}")
        return index, count


    @property
    def effective_ingest_token(self) -> str | None:
        """The token the OTLP receivers require: ``ingest_token``, else ``auth_token``, else none."""
        return self.ingest_token or self.auth_token


def parse_address(value: str, name: str = "address") -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too); port 0 picks a free port."""
    match = _ADDRESS.match(str(value))
    if not match:
        raise ConfigError(f"{name} must be host:port, got {value!r}")
    port = int(match.group("port"))
    if port > 65535:
        raise ConfigError(f"{name} port must be 0..65535, got {port}")
    return match.group("host").strip("[]"), port


def _positive_int(value: Any, name: str, minimum: int = 1, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be an integer <= {maximum}, got {value!r}")


def _positive_number(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")


def _token(value: str | None, path: str | None, name: str) -> str | None:
    if value is not None and path is not None:
        raise ConfigError(f"give either {name} or {name}_file, not both")
    if path is not None:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {name}_file {path!r}: {exc.strerror}") from None
    if value is not None:
        value = value.strip()
        if not value:
            raise ConfigError(f"{name} is empty")
        if any(ch.isspace() for ch in value):
            raise ConfigError(f"{name} must not contain whitespace")
    return value


FIELDS = {f.name: f for f in dataclasses.fields(ServeConfig)}


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Convert a raw value (string from env/flags or YAML scalar) to the field's type."""
    f = FIELDS[name]
    kind = str(f.type)
    if raw is None:
        return None
    try:
        if kind.startswith("list"):
            if isinstance(raw, str):
                return [part.strip() for part in raw.split(",") if part.strip()]
            if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
                return raw
            raise ValueError("expected a list of strings")
        if kind.startswith("bool"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if kind.startswith("int"):
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError("expected an integer")
            return int(raw)
        if kind.startswith("float"):
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        if isinstance(raw, (dict, list)):
            raise ValueError("expected a string")
        return str(raw)
    except (TypeError, ValueError) as exc:
        msg = str(exc) if "expected" in str(exc) else f"cannot parse {raw!r}"
        raise ConfigError(f"{name} ({source}): {msg}") from None


def load_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file: a mapping of field names (dashes or underscores)."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must be a mapping of settings")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> ServeConfig:
    """Merge the sources (flag > env > file > default) and validate."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if config_file is None:
        config_file = (flags or {}).get("config") or env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        for key, raw in load_file(config_file).items():
            if key not in FIELDS:
                raise ConfigError(f"unknown setting {key!r} in config file {config_file!r}")
            values[key] = _coerce(key, raw, "config file")
    for key in FIELDS:
        raw = env.get(ENV_PREFIX + key.upper())
        if raw is not None and raw != "":
            values[key] = _coerce(key, raw, f"env {ENV_PREFIX + key.upper()}")
    for key, raw in (flags or {}).items():
        if key in FIELDS and raw is not None:
            values[key] = _coerce(key, raw, "flag --" + key.replace("_", "-"))
    return ServeConfig(**values).validate()
