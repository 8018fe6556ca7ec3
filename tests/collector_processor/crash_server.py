"""A collector-only server for the crash test: real store, pipeline and OTLP gRPC receiver in a process that
the test kills with SIGKILL (or stops with SIGTERM: receivers stop, every buffered trace is stored).

    python -m tests.collector_processor.crash_server DATA_DIR PORT_FILE
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from collector_processor import OtlpGrpcReceiver, Pipeline, PipelineConfig, open_store


def main(data_dir: str, port_file: str) -> None:
    store = open_store(data_dir)
    pipeline = Pipeline(store, PipelineConfig(trace_timeout_s=0.15, max_trace_wait_s=120.0, tick_interval_s=0.02))
    receiver = OtlpGrpcReceiver(pipeline, "127.0.0.1:0").start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    tmp = Path(port_file + ".tmp")
    tmp.write_text(str(receiver.port))
    tmp.rename(port_file)  # atomically: the test never reads a half-written port
    stop.wait()
    receiver.stop(1.0)
    pipeline.close()
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
