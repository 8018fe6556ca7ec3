"""`whyslow serve`: OTLP receivers, model lifecycle, detector, REST and gRPC APIs in one process."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
from typing import Any

from plugin.config import FIELDS, ConfigError, build_config
from plugin.signals import stop_on_signals

ADDRESSES = ("otlp_grpc", "otlp_http", "http", "grpc")
# young-generation GC threshold of the serving process: the collector allocates a few objects per span, nearly
# all freed when their trace is stored; Python's default (a collection every 700 net allocations) spent ~10 % of
# the server's CPU in the garbage collector at full ingest, this one ~2 % (benchmarks/server_throughput.py)
GC_YOUNG_THRESHOLD = 200_000
HELP = {
    "data_dir": "data directory (SQLite store, models) [./whyslow-data]",
    "otlp_grpc": "OTLP/gRPC receiver address [127.0.0.1:4317]",
    "otlp_http": "OTLP/HTTP receiver address [127.0.0.1:4318]",
    "http": "REST API, Grafana JSON data source and web UI address [127.0.0.1:8080]",
    "grpc": "gRPC query API address [127.0.0.1:50051]",
    "min_traces": "traces of an entry point needed before its first model [100]",
    "window": "recent normal traces each model is fitted on [2000]",
    "failure_window": "recent normal traces the failure model counts (failures are rare) [20000]",
    "refit_interval_s": "seconds between background refits [300]",
    "early_refit": "also refit sooner (at most once a minute) while a model is young or when a new dependency "
                   "appears: true or false [true]",
    "mechanisms": "causal mechanisms: structural (sum/max from the call graph), auto, linear, nonlinear",
    "threshold": "IT outlier score (nats) above which a trace is explained automatically [9.21 = rarer than 1 in 10,000]",
    "explain_queue": "outliers waiting for explanation before new ones are dropped (counted) [1000]",
    "intervals": "bootstrap resamples for contribution intervals of automatic explanations [0]",
    "self_time_top_n": "span types per entry point with their own self-time / call-gap histograms in /metrics; "
                       "the rest are counted as 'other' [20]",
    "trace_timeout_s": "seconds without new spans after which a trace is complete [2]",
    "retention_max_age_s": "drop stored traces older than this [604800]",
    "retention_max_rows": "keep at most this many stored traces [1000000]",
    "auth_token": "bearer token required by REST and gRPC (prefer --auth-token-file or the env var)",
    "auth_token_file": "file holding the bearer token",
    "ingest_token": "bearer token the OTLP receivers require instead of auth_token (unset: auth_token applies; "
                    "prefer --ingest-token-file or the env var)",
    "ingest_token_file": "file holding the ingest bearer token",
    "model_key_file": "key that signs persisted models (HMAC), kept outside the data dir; created if missing "
                      "[derived from the auth token, else ~/.config/whyslow/model.key]",
    "tls_cert_file": "PEM certificate chain: every listener (OTLP gRPC/HTTP, REST, gRPC) serves TLS (off when unset)",
    "tls_key_file": "PEM private key of tls_cert_file",
    "max_entry_points": "distinct entry points kept apart; new ones beyond are folded into {other}:{other} "
                        "(counted) [1000]",
    "max_span_types": "distinct (service, operation) span types; new ones beyond share {other} (counted) [100000]",
    "cors_origins": "comma-separated origins allowed by CORS (off by default)",
    "grafana_url": "Grafana base URL to push annotations to (off when unset)",
    "grafana_token": "Grafana service-account token (prefer --grafana-token-file or the env var)",
    "grafana_token_file": "file holding the Grafana service-account token",
    "grafana_dashboard_uid": "dashboard UID for pushed annotations (organisation-wide when unset)",
    "grafana_panel_id": "panel id for pushed annotations",
    "annotation_queue": "annotations waiting to be sent before new ones are dropped (counted) [1000]",
    "annotation_retries": "retries (exponential backoff) per annotation [5]",
    "annotation_min_interval_s": "at most one annotation per entry point and root-cause service in this many "
                                 "seconds; 0: one per outlier [60]",
    "ui_dir": "directory of the panel's standalone page [grafana_panel/harness-dist]",
    "log_level": "debug, info, warning or error [info]",
    "store": "where traces and results live: sqlite (in data_dir) or clickhouse://user[:password]@host:8123/db "
             "(prefer WHYSLOW_STORE for a password) [sqlite]",
    "source": "where spans come from: otlp (the receivers) or clickhouse (pull otel_traces written by an "
              "OpenTelemetry Collector's ClickHouse exporter; the receivers stay open) [otlp]",
    "source_url": "ClickHouse holding otel_traces in pull mode (default: the store's ClickHouse)",
    "source_table": "the exporter's trace table: table or database.table [otel_traces]",
    "source_lag_s": "pull mode reads spans that started at least this long ago (the exporter batches) [30]",
    "source_window_s": "pull mode reads at most this many seconds of spans per query [10]",
    "source_backfill_s": "on a first start without a cursor, pull mode also reads this far back [0]",
    "replica": "this replica's share i/N (pod/N: i from a StatefulSet pod's ordinal); N > 1 needs a "
               "ClickHouse store [0/1]",
}


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "serve",
        help="run the whyslow service (OTLP in, explanations out over REST, gRPC and Grafana)",
        description="Run the whyslow service. Settings: flag > WHYSLOW_<NAME> environment variable > "
                    "--config YAML file > default.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of settings (keys as the flag names)")
    for name in FIELDS:
        metavar = "HOST:PORT" if name in ADDRESSES else name.split("_")[-1].upper()
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None, metavar=metavar,
                            help=HELP.get(name))
    parser.set_defaults(func=run)


class _Redact(logging.Filter):
    """Belt and braces: no configured secret ever reaches a log line."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(s in message for s in self.secrets):
                for s in self.secrets:
                    message = message.replace(s, "***")
                record.msg, record.args = message, None
        return True


def setup_logging(level: str, secrets: list[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_Redact(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    for noisy in ("waitress", "werkzeug", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def run(args: argparse.Namespace) -> int:
    flags = {k: v for k, v in vars(args).items() if k in FIELDS or k == "config"}
    try:
        config = build_config(flags)
    except ConfigError as exc:
        print(f"whyslow serve: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, [config.auth_token or "", config.grafana_token or "",
                                     config.ingest_token or "", *config.store_passwords()])
    from plugin.server import WhySlowServer

    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    with stop_on_signals("whyslow serve") as stop:  # from before start: a SIGTERM while starting also stops it
        server = WhySlowServer(config)
        try:
            server.start()
            gc.freeze()  # what start-up built (modules, models) lives as long as the process: never scanned again
        except ConfigError as exc:
            print(f"whyslow serve: error: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # noqa: BLE001 - one line for the user, not a traceback
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0:1]
            print(f"whyslow serve: error: cannot start: {detail if isinstance(detail, str) else ''.join(detail)}",
                  file=sys.stderr)
            return 1
        try:
            while not stop.requested():
                time.sleep(0.2)
            logging.getLogger("whyslow").info("received %s, shutting down", stop.last)
        finally:
            server.stop()
    return 0
