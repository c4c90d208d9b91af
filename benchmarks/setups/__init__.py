"""Experiment set-ups of the benchmarks: paper tasks, method registries, recipes (one module or package per family)."""
