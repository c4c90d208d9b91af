"""Benchmark scripts for tailjax (not tests): `python -m benchmarks quick` is `make demo`."""
