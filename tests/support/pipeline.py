"""Drive a pipeline built with ``background=False`` the way its worker thread would."""

from __future__ import annotations

import time

from collector_processor import Pipeline


def complete_all(pipeline: Pipeline) -> int:
    """Complete every trace that is idle by now + a margin (as the background thread would later)."""
    return pipeline.tick(time.monotonic() + pipeline.config.max_trace_wait_s + 1)
