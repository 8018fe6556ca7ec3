"""`WhySlowServer`: the whole backend in one object (what `whyslow serve` and `whyslow demo` run).

    server = WhySlowServer(config).start()
    server.ports   # {"otlp_grpc": ..., "otlp_http": ..., "http": ..., "grpc": ...} (bound ports)
    server.stop()  # flushes every acknowledged span: traces completed, scored, explained, annotated

Composition: collector Pipeline (+ OTLP receivers) -> Detector (listener) -> ModelManager / Explainer ->
REST (Flask under waitress) + JSON datasource + gRPC API + Grafana annotation pusher.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import collector_processor
from plugin.annotations import AnnotationPusher
from plugin.config import ServeConfig, parse_address
from plugin.detector import Detector, OutlierHub
from plugin.explain import Explainer
from plugin.metrics import ServerMetrics
from plugin.models import ModelManager
from plugin.payloads import HubPayload
from plugin.replicas import OutlierFollower, ReplicaModelManager, ReplicaShare, SettleGate, settle_delay
from plugin.results_store import ResultsStore, follow_retention
from plugin.service import WhySlowService
from plugin.sqlite_results import open_results_store
from plugin.watch import RegressionWatch

if TYPE_CHECKING:
    from plugin.grpc_api import GrpcApi

log = logging.getLogger("whyslow.server")


def pipeline_config(config: ServeConfig) -> collector_processor.PipelineConfig:
    """The collector's pipeline configuration from ours."""
    return collector_processor.PipelineConfig(trace_timeout_s=config.trace_timeout_s,
                                              max_entry_points=config.max_entry_points,
                                              max_span_types=config.max_span_types)


def tls_files(config: ServeConfig) -> collector_processor.TlsFiles | None:
    """The listeners' TLS certificate and key, when configured."""
    if config.tls_cert_file and config.tls_key_file:
        return collector_processor.TlsFiles(config.tls_cert_file, config.tls_key_file)
    return None


class _TlsHttpServer:
    """The Flask app over HTTPS: waitress has no TLS, so werkzeug's threaded WSGI server with the TLS
    handshake in each connection's thread (collector_processor.tls.TlsPerConnection)."""

    def __init__(self, app: Any, address: str, tls: collector_processor.TlsFiles):
        from werkzeug.serving import ThreadedWSGIServer

        from collector_processor.tls import TlsPerConnection

        class Server(TlsPerConnection, ThreadedWSGIServer):
            daemon_threads = True

        host, port = parse_address(address, "http")
        try:
            self.server = Server(host, port, app)
        except OSError as exc:
            raise OSError(f"cannot bind the REST API to {address} ({exc.strerror or exc})") from None
        self.server.tls_context = tls.server_context()
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="whyslow-https", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def open_configured_stores(cfg: ServeConfig) -> tuple[collector_processor.TraceStore, ResultsStore]:
    """The trace store and results store ``cfg.store`` names: SQLite in the data directory (default) or
    ClickHouse; the results follow the traces' retention."""
    if cfg.store == "sqlite":
        try:
            store = collector_processor.open_store(cfg.data_dir)
            results = open_results_store(cfg.data_dir)
        except (OSError, sqlite3.Error) as exc:  # sqlite: a read-only or corrupt store file
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise OSError(f"cannot open the data directory {cfg.data_dir} ({reason})") from None
        follow_retention(store, results)
        return store, results
    from collector_processor.sql_executor import SqlError
    from plugin.clickhouse_results import open_clickhouse_stores

    index, count = cfg.replica_share()
    settle_s = settle_delay(cfg.trace_timeout_s) if count > 1 else 0.0
    try:
        return open_clickhouse_stores(cfg.store, replica=str(index), ttl_s=cfg.retention_max_age_s, settle_s=settle_s)
    except SqlError as exc:
        raise OSError(f"cannot open the ClickHouse store: {exc}") from None


def open_configured_source(cfg: ServeConfig, pipeline: Any, store: Any) -> Any:
    """Pull mode (``source: clickhouse``): a reader of ``otel_traces`` feeding ``pipeline``; None for OTLP."""
    if cfg.source != "clickhouse":
        return None
    from pathlib import Path

    from collector_processor.clickhouse_source import ClickHouseSource, FileCursor, SourceConfig, TableCursor
    from collector_processor.sql_executor import SqlError, connect

    index, count = cfg.replica_share()
    try:
        executor = connect(cfg.source_url or cfg.store)
        if cfg.store == "sqlite":
            Path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
            cursor: Any = FileCursor(Path(cfg.data_dir) / f"source-cursor-{index}-of-{count}.json")
        else:
            cursor = TableCursor(store.ex, cfg.source_table, index, count)
    except SqlError as exc:
        raise OSError(f"cannot reach the span source: {exc}") from None
    return ClickHouseSource(pipeline, executor, cursor, SourceConfig(
        table=cfg.source_table, lag_s=cfg.source_lag_s, window_s=cfg.source_window_s,
        backfill_s=cfg.source_backfill_s, poll_s=min(1.0, cfg.source_window_s), replica=index, replicas=count))


class _HttpServer:
    """waitress serving the Flask app on its own thread."""

    def __init__(self, app: Any, address: str):
        from waitress.server import create_server

        host, port = parse_address(address, "http")
        try:
            self.server = create_server(app, host=host, port=port, threads=8, ident="whyslow",
                                        clear_untrusted_proxy_headers=True, channel_timeout=30)
        except OSError as exc:
            raise OSError(f"cannot bind the REST API to {address} ({exc.strerror or exc})") from None
        self.port = int(self.server.effective_port)
        self.thread = threading.Thread(target=self._run, name="whyslow-http", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except Exception:  # noqa: BLE001 - raised while closing sockets from another thread
            log.debug("http server loop ended", exc_info=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        from waitress import wasyncore

        self.server.task_dispatcher.shutdown(timeout=5)
        wasyncore.close_all(self.server._map)
        if self.thread.is_alive():
            self.thread.join(5)


class WhySlowServer:
    """All parts of `whyslow serve`, started and stopped in order."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.ports: dict[str, int] = {}
        self._ready = threading.Event()
        self._stopped = False
        self._lock = threading.Lock()
        self.store: collector_processor.TraceStore | None = None  # the collector's traces
        self.results: ResultsStore | None = None  # the backend's outlier marks, explanations, models
        self.pipeline: collector_processor.Pipeline | None = None
        self._receivers: list[collector_processor.OtlpGrpcReceiver | collector_processor.OtlpHttpReceiver] = []
        self.grpc_api: GrpcApi | None = None
        self.http: _HttpServer | _TlsHttpServer | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> WhySlowServer:
        cfg = self.config
        try:
            self._start(cfg)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, cfg: ServeConfig) -> None:
        from plugin.grpc_api import GrpcApi
        from plugin.rest import create_app

        self.metrics = ServerMetrics()
        store, results = self.store, self.results = open_configured_stores(cfg)
        self.share = ReplicaShare(*cfg.replica_share())
        self.follower: OutlierFollower | None = None
        if cfg.store == "sqlite":
            self.models = ModelManager(store, results, cfg, self.metrics)
        else:  # a shared store: the owner replica fits each entry point, the others adopt its model
            self.models = ReplicaModelManager(store, results, cfg, self.metrics, self.share)
        loaded = self.models.load()
        if loaded:
            log.info("loaded %d persisted model(s) from %s", loaded, cfg.data_dir)
        self.explainer = Explainer(store, results, self.models, cfg, self.metrics)
        self.hub = OutlierHub()
        self.annotations: AnnotationPusher | None = None
        callbacks: list[Callable[[HubPayload], object]] = []
        if cfg.grafana_url:
            self.annotations = AnnotationPusher(
                cfg.grafana_url, cfg.grafana_token, cfg.grafana_dashboard_uid, cfg.grafana_panel_id,
                queue_size=cfg.annotation_queue, retries=cfg.annotation_retries, metrics=self.metrics,
                min_interval_s=cfg.annotation_min_interval_s,
            )
            callbacks.append(self.annotations.submit)
        self.detector = Detector(self.models, self.explainer, store, results, cfg, self.metrics, self.hub, callbacks)
        self.pipeline = collector_processor.Pipeline(store, pipeline_config(cfg))
        self.gate: SettleGate | None = None
        if self.share.count > 1:  # a trace split across replicas is neither scored nor explained (replicas.py)
            self.gate = SettleGate(store, self.detector.on_trace, settle_delay(cfg.trace_timeout_s))  # type: ignore[arg-type]
            self.pipeline.add_listener(self.gate.on_trace)
        else:  # one process holds every trace: score whole stored batches (one matrix per entry point)
            self.pipeline.add_batch_listener(self.detector.on_batch)
        self.metrics.watch_pipeline(self.pipeline.stats)
        self.pipeline.add_batch_listener(self.metrics.watch_self_time(cfg.self_time_top_n).observe_batch)
        self.source = open_configured_source(cfg, self.pipeline, store)
        self.service = WhySlowService(store, results, self.models, self.explainer, cfg, self.pipeline,
                                      self.detector, self.annotations)
        self.watch = RegressionWatch(self.store, self.service.entries, self.detector.publish,
                                     self.service.incident_minutes, results=results)
        self.service.watch = self.watch
        self.service.gate = self.gate
        # workers first, then the doors
        if self.annotations is not None:
            self.annotations.start()
        self.detector.start()
        if self.gate is not None:
            self.gate.start()
        self.models.start()
        self.watch.start()
        if self.share.count > 1:  # WatchOutliers streams here also get the outliers other replicas explained
            self.follower = OutlierFollower(results, str(self.share.index), self.hub.publish).start()
        self.app = create_app(self.service, self.metrics, cfg, self._ready.is_set)
        tls = tls_files(cfg)
        self.http = _TlsHttpServer(self.app, cfg.http, tls) if tls else _HttpServer(self.app, cfg.http)
        self.grpc_api = GrpcApi(self.service, self.hub, cfg.grpc, cfg.auth_token,
                                credentials=tls.grpc_credentials() if tls else None)
        ingest = cfg.effective_ingest_token
        otlp_grpc = collector_processor.OtlpGrpcReceiver(self.pipeline, cfg.otlp_grpc, token=ingest, tls=tls)
        otlp_http = collector_processor.OtlpHttpReceiver(self.pipeline, cfg.otlp_http, token=ingest, tls=tls)
        for receiver, what, address in ((otlp_grpc, "OTLP gRPC receiver", cfg.otlp_grpc),
                                        (otlp_http, "OTLP HTTP receiver", cfg.otlp_http)):
            try:
                receiver.start()
            except (OSError, RuntimeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "address in use?"
                raise OSError(f"cannot bind the {what} to {address} ({reason})") from None
            self._receivers.append(receiver)
        self.http.start()
        self.grpc_api.start()
        if self.source is not None:
            self.source.start()
        self.ports = {
            "otlp_grpc": int(otlp_grpc.port),
            "otlp_http": int(otlp_http.port),
            "http": self.http.port,
            "grpc": self.grpc_api.port,
        }
        self._ready.set()
        log.info(
            "whyslow serving: OTLP gRPC %s, OTLP HTTP %s, REST %s, gRPC %s (data in %s, auth %s, ingest auth %s, "
            "TLS %s)",
            *(f"{parse_address(a)[0]}:{self.ports[k]}" for k, a in
              (("otlp_grpc", cfg.otlp_grpc), ("otlp_http", cfg.otlp_http), ("http", cfg.http), ("grpc", cfg.grpc))),
            cfg.data_dir, "on" if cfg.auth_token else "off", "on" if ingest else "off", "on" if tls else "off",
        )

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def url(self, name: str = "http") -> str:
        """Base URL / target of a bound listener (http: http://host:port, others host:port)."""
        address = getattr(self.config, name)
        host = parse_address(address)[0]
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        target = f"{host}:{self.ports[name]}"
        scheme = "https" if tls_files(self.config) else "http"
        return f"{scheme}://{target}" if name in ("http", "otlp_http") else target

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: stop accepting spans, complete and score every buffered trace, explain the queued
        outliers, send queued annotations, then close the APIs and the store."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        was_serving = self._ready.is_set()
        self._ready.clear()
        t0 = time.monotonic()
        for receiver in self._receivers:
            _quietly(receiver.stop, 2.0)
        if getattr(self, "source", None) is not None:
            _quietly(self.source.stop)
        if self.pipeline is not None:
            _quietly(self.pipeline.close)  # stops its worker and stores every buffered trace
        if getattr(self, "watch", None) is not None:
            _quietly(self.watch.stop, 5.0)
        gate = getattr(self, "gate", None)
        if gate is not None:
            _quietly(gate.stop, timeout)  # the last stored traces settle, then go to the detector
        if getattr(self, "detector", None) is not None:
            if not self.detector.drain(timeout):
                log.warning("shutdown: detector did not finish within %.0fs", timeout)
            _quietly(self.detector.stop, 5.0)
        if getattr(self, "models", None) is not None:
            _quietly(self.models.stop, timeout)
        follower = getattr(self, "follower", None)
        if follower is not None:
            _quietly(follower.stop)
        annotations = getattr(self, "annotations", None)
        if annotations is not None:
            _quietly(annotations.stop, 10.0)
        if getattr(self, "hub", None) is not None:
            self.hub.close()
        if self.grpc_api is not None:
            _quietly(self.grpc_api.stop, 2.0)
        if self.http is not None:
            _quietly(self.http.stop)
        if self.results is not None:
            _quietly(self.results.close)
        if self.store is not None:
            _quietly(self.store.close)
        if was_serving:
            log.info("whyslow stopped in %.1fs", time.monotonic() - t0)

    def __enter__(self) -> WhySlowServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - shutdown continues with the other parts
        log.warning("shutdown step %s failed: %s", getattr(fn, "__qualname__", fn), exc)
