"""Benchmark scripts for tailjax (not tests): `python -m benchmarks quick` is `make demo`."""

import os

# jaxlib 0.10.2's CPU runtime can hang when two batched LAPACK solves run at once (the
# README's known issue); without XLA:CPU's concurrency-optimised scheduler it has not.
_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}=false".strip()
