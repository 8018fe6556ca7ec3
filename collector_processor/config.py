"""Tunable limits of the collector: receiver sizes, assembly timing, memory bounds, retention."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PipelineConfig:
    """Every knob of the pipeline and its receivers, with production defaults.

    Times are seconds; sizes are bytes or counts. The defaults keep memory bounded at any input rate:
    at most ``max_queue_spans`` decoded spans wait for assembly (beyond that the receivers answer with
    retryable codes), at most ``max_buffered_spans`` / ``max_buffered_traces`` sit in the assembler
    (beyond that the oldest trace is evicted: stored as incomplete, counted).
    """

    # trace assembly
    trace_timeout_s: float = 2.0          # a trace whose root arrived completes after this long without spans
    max_trace_wait_s: float = 30.0       # a trace without root is flushed as incomplete after this long
    max_buffered_spans: int = 1_000_000  # assembler bound (spans); oldest traces are evicted beyond it
    max_buffered_traces: int = 100_000   # assembler bound (traces)
    late_window_s: float = 30.0          # completed traces kept this long so late spans re-open them
    max_recent_spans: int = 200_000      # bound on spans kept for re-opening
    # ingest queue (backpressure)
    max_queue_spans: int = 500_000       # decoded spans waiting for the worker; beyond: retryable answer
    retry_after_s: float = 1.0           # back-off suggested to clients when the queue is full
    # memory limiter (in the spirit of the Collector's): request bytes being read/decoded plus the estimated
    # size of queued decoded spans; a request that would pass it is refused with a retryable answer
    max_inflight_bytes: int = 256 * 1024 * 1024
    # receivers
    max_recv_bytes: int = 64 * 1024 * 1024  # gRPC message / HTTP body limit (after decompression)
    grpc_workers: int = 8                # gRPC handler threads; x4 = concurrent HTTP requests
    # requests decoded and spooled at the same time (the others wait, asleep): decoding is Python under the
    # GIL, so more at once only adds GIL hand-offs and cache misses (8 at once cost ~20 % more CPU per span)
    max_concurrent_decodes: int = 2
    # decode requests with the compiled scan (otlp_scan.py, numba; built in the background at start, the Python
    # decoder meanwhile): same result, ~5x less CPU per span
    compiled_decoder: bool = True
    # grpcio's own hard limit on concurrent RPCs (answers RESOURCE_EXHAUSTED without RetryInfo, which senders
    # drop, and which we cannot count): a last-resort guard on connections' buffered streams, set far above
    # what admission control lets pile up (refusals are answered in microseconds)
    grpc_max_concurrent_rpcs: int = 1024
    # background worker
    background: bool = True              # run the completion thread; tests set False and call tick(now)
    tick_interval_s: float = 0.1
    # durability: spool every accepted request before acknowledging it
    spool: bool = True
    # a span ending more than this ahead of our clock is rejected (partial success, counted in spans_future):
    # it would never age out of retention and would sit at the top of every time range
    max_future_s: float = 3600.0
    # operation-name limits (huge attribute values are truncated, not rejected)
    max_name_len: int = 200
    max_span_types: int = 100_000        # distinct (service, operation) bound; beyond: "{other}" per service
    max_entry_points: int = 1_000        # distinct root span types; beyond: the shared "{other}:{other}" entry
    # structure inference: children overlapping more than this fraction of the shorter one run in parallel
    overlap_fraction: float = 0.1
    # a root with a catch-all route (an API gateway's "/*") is named after the first endpoint it reached, so
    # that every endpoint behind the gateway gets its own entry point and graph
    qualify_catch_all_root: bool = True
    # a childless INTERNAL "wrapper" span whose interval contains same-service siblings adopts them as children
    # (some instrumentations parent the wrapped outgoing call to the wrapper's parent); counted in spans_reparented
    reparent_wrappers: bool = True
    wrapper_slack: float = 0.05         # share of an adopted span's duration allowed outside the wrapper
