"""Stochastic optimisation of tail risks (Deo & Murthy's tutorial): decision sets with
projections, the level method, SAA for CVaR and mean-CVaR, retrospective approximation
(Algorithm 1) and the stochastic-approximation kernel with adaptive IS (Algorithm 3).
Test problems live in :mod:`tailjax.stochopt.problems`; LPs and QPs are solved by the
interior-point engine of :mod:`tailjax.layers`.

``tail_prob`` is the tail mass of the loss's upper tail (the tutorial's beta)."""

from tailjax.stochopt.approximation import (
    SAInfo,
    SAParams,
    SAState,
    run_stochastic_approximation,
    stochastic_approximation,
)
from tailjax.stochopt.level import LevelResult, level_method
from tailjax.stochopt.retrospective import (
    RAResult,
    RAStage,
    build_retrospective_approximation,
    retrospective_approximation,
    sample_sizes,
)
from tailjax.stochopt.saa import SAAResult, saa_value, solve_saa
from tailjax.stochopt.sets import Box, CappedSimplex, Simplex, TargetReturnSimplex, project_simplex

__all__ = [
    "Simplex",
    "CappedSimplex",
    "Box",
    "TargetReturnSimplex",
    "project_simplex",
    "LevelResult",
    "level_method",
    "SAAResult",
    "saa_value",
    "solve_saa",
    "RAStage",
    "RAResult",
    "retrospective_approximation",
    "build_retrospective_approximation",
    "sample_sizes",
    "SAParams",
    "SAState",
    "SAInfo",
    "stochastic_approximation",
    "run_stochastic_approximation",
]
