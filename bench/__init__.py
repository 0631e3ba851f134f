"""Benchmarks against the reference method (run from the project root: bench/run, python -m bench.rollups)."""
