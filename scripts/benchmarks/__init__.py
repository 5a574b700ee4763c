"""Benchmark sections for scripts/bench.py: each module has `run(quick: bool = False) -> list[dict]`."""
