"""Benchmarks of whyslow: accuracy against published datasets and methods, and performance.

Each module with a ``main(argv=None)`` writes ``benchmarks/results/<name>.md``; ``python -m benchmarks.run_all``
runs them all and assembles ``benchmarks/README.md``.
"""
