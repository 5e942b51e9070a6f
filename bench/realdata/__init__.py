"""The real-data benchmark's manifest and its tools, each run as ``python -m bench.realdata.<tool>``."""
