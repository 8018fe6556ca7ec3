"""Development helpers shared by the benchmarks and the tests, never shipped with the product (not in the wheel):
the HTTP front that lets several processes share one in-process ClickHouse engine (chdb), and the writer of
the OpenTelemetry Collector's ``otel_traces`` table. Tests import them from here; benchmarks import nothing
from ``tests``."""
