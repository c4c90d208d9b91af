"""Tail-aware fine-tuning of flow models: flow matching, memoryless sampling, adjoint
matching, TFFT (two-stage CVaR fine-tuning), EXP-FT and FDC."""
