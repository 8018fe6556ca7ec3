"""collector_processor: the OTLP sidecar — receivers, trace assembly, call graph, features, store.

See README.md in this folder and docs/ARCHITECTURE.md for the contract with the rest of whyslow.
"""

from collector_processor.config import PipelineConfig
from collector_processor.grpc_receiver import OtlpGrpcReceiver
from collector_processor.http_receiver import OtlpHttpReceiver
from collector_processor.otlp_decode import DecodeFailure
from collector_processor.pipeline import Pipeline, PipelineFull
from collector_processor.records import CallGraph, CompletedTrace, NodeFeatures, NodeInfo, TraceFeatures
from collector_processor.sqlite_store import SqliteStore, open_store
from collector_processor.store import TraceStore
from collector_processor.tls import TlsFiles

__all__ = [
    "CallGraph", "CompletedTrace", "DecodeFailure", "NodeFeatures", "NodeInfo", "OtlpGrpcReceiver",
    "OtlpHttpReceiver", "Pipeline", "PipelineConfig", "PipelineFull", "SqliteStore", "TlsFiles", "TraceFeatures",
    "TraceStore", "open_store",
]
