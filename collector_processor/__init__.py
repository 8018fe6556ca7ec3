"""collector_processor."""
