"""Benchmarks of the pipeline, each run from the repository root as a module: ``python -m bench.bench_x``."""
