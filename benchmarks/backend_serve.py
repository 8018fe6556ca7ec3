"""Backend latency and throughput: the in-process `WhySlowServer` fed by the real OTel SDK exporter.

Measures detection latency (span export -> explained outlier listed), the detector's vectorised scoring
throughput, the model fit time, the time to explain one trace, and REST /rca latency (cold and cached).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, command_line, machine

NAME = "backend_serve"


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run(quick: bool) -> dict[str, object]:
    from collector_processor import CompletedTrace
    from plugin.config import ServeConfig
    from plugin.demo.shop_traffic import ENTRY, SPANS_PER_TRACE, ShopTraffic
    from plugin.server import WhySlowServer

    n_train = 500 if quick else 2000
    n_slow = 5 if quick else 20
    out: dict[str, object] = {"n_train": n_train, "n_slow": n_slow}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ServeConfig(data_dir=str(Path(tmp) / "data"), otlp_grpc="127.0.0.1:0", otlp_http="127.0.0.1:0",
                          http="127.0.0.1:0", grpc="127.0.0.1:0", min_traces=n_train, window=n_train,
                          refit_interval_s=24 * 3600.0, early_refit=False, trace_timeout_s=0.2,
                          log_level="warning").validate()
        with WhySlowServer(cfg) as server:
            traffic = ShopTraffic(server.url("otlp_grpc"), seed=1)
            t0 = time.perf_counter()
            traffic.send(n_train, spacing_ms=2)
            deadline = time.monotonic() + 300
            while server.models.get(ENTRY) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no model after 300 s: {server.service.status()}")
                time.sleep(0.02)
            out["ingest_to_model_s"] = time.perf_counter() - t0
            status = server.models.status()[0]
            out["fit_rows"], out["fit_s"] = status.rows, status.fit_seconds

            # detection latency: export of a slow trace -> its explanation listed
            latencies = []
            for _ in range(n_slow):
                sent = traffic.send(1, slow="payments", slow_ms=400.0)[0]
                t1 = time.perf_counter()
                while sent.trace_id not in {o["trace_id"] for o in server.service.outliers(limit=1000)}:
                    if time.perf_counter() - t1 > 60:
                        raise RuntimeError(f"slow trace {sent.trace_id} not explained within 60 s")
                    time.sleep(0.005)
                latencies.append(time.perf_counter() - t1)
            out["detect_p50_s"], out["detect_p95_s"] = _pct(latencies, 50), _pct(latencies, 95)
            out["trace_timeout_s"] = cfg.trace_timeout_s

            # vectorised scoring (threshold out of reach: scoring only)
            frame = server.store.features(ENTRY, limit=n_train)
            rows = [{c: float(v) for c, v in r.items() if not str(c).startswith("__")}
                    for r in frame.to_dict("records")]
            batch = [CompletedTrace(trace_id=f"{i + 1:032x}", entry=ENTRY, start_unix_nano=0, duration_ms=1.0,
                                    complete=True, row=rows[i % len(rows)]) for i in range(10_000)]
            server.config.threshold = 1e12
            t2 = time.perf_counter()
            for start in range(0, len(batch), 512):
                server.detector.score_batch(batch[start:start + 512])
            out["score_traces_per_s"] = len(batch) / (time.perf_counter() - t2)

            # one explanation (engine attribution + payload), and REST /rca cold / cached
            fitted = server.models.get(ENTRY)
            ids = list(frame.index[-50:])
            explain = []
            for tid in ids:
                t3 = time.perf_counter()
                server.explainer.compute(server.store.trace_features(tid), tid, fitted)
                explain.append(time.perf_counter() - t3)
            out["explain_p50_ms"], out["explain_p95_ms"] = 1000 * _pct(explain, 50), 1000 * _pct(explain, 95)
            for label in ("cold", "cached"):
                rest = []
                for tid in ids:
                    t4 = time.perf_counter()
                    urllib.request.urlopen(f"{server.url('http')}/api/v1/traces/{tid}/rca", timeout=30).read()
                    rest.append(time.perf_counter() - t4)
                out[f"rest_{label}_p50_ms"] = 1000 * _pct(rest, 50)
                out[f"rest_{label}_p95_ms"] = 1000 * _pct(rest, 95)
            out["spans_per_trace"] = SPANS_PER_TRACE
            traffic.close()
    return out


def render(r: dict[str, object], argv: Sequence[str] | None) -> str:
    load = os.getloadavg()[0]
    return f"""## Backend: detection latency and throughput (`whyslow serve` in process)

Command: `{command_line("benchmarks." + NAME, argv)}`<br>
Machine: {machine()}; load average at the end: {load:.1f} (machine shared with other jobs)

Workload: the three-service shop of `plugin/demo/shop_traffic.py` ({r["spans_per_trace"]} spans per trace, real OTel SDK
OTLP/gRPC exporter), model fitted on {r["fit_rows"]} traces, then {r["n_slow"]} traces with `payments` slowed by
400 ms, one at a time.

| measure | value |
|---|---|
| ingest {r["n_train"]} traces -> first model ready | {r["ingest_to_model_s"]:.2f} s |
| model fit ({r["fit_rows"]} rows, 6 nodes, structural sum mechanisms) | {r["fit_s"]:.3f} s |
| detection latency, span export -> explained outlier listed (p50 / p95), includes the {r["trace_timeout_s"]} s trace completion timeout | {r["detect_p50_s"]:.2f} s / {r["detect_p95_s"]:.2f} s |
| detector scoring (vectorised, batches of 512) | {r["score_traces_per_s"]:,.0f} traces/s |
| one explanation (attribution + payload), p50 / p95 | {r["explain_p50_ms"]:.1f} ms / {r["explain_p95_ms"]:.1f} ms |
| REST `/api/v1/traces/{{id}}/rca` cold, p50 / p95 | {r["rest_cold_p50_ms"]:.1f} ms / {r["rest_cold_p95_ms"]:.1f} ms |
| REST `/api/v1/traces/{{id}}/rca` cached, p50 / p95 | {r["rest_cached_p50_ms"]:.1f} ms / {r["rest_cached_p95_ms"]:.1f} ms |
"""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer traces")
    args = ap.parse_args(argv)
    result = run(args.quick)
    text = render(result, argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{NAME}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
