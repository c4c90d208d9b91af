"""Stochastic optimisation of tail risks (Deo & Murthy's tutorial): decision sets with
projections, a small JAX LP/QP solver, the level method, SAA for CVaR and mean-CVaR,
retrospective approximation (Algorithm 1) and stochastic approximation with adaptive IS
(Algorithm 3). Test problems live in :mod:`tailjax.stochopt.problems`."""

from tailjax.stochopt.approximation import (
    SAInfo,
    SAState,
    run_stochastic_approximation,
    stochastic_approximation,
)
from tailjax.stochopt.level import LevelResult, level_method
from tailjax.stochopt.lp import QPSolution, lp_value, solve_lp, solve_qp
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
    "QPSolution",
    "solve_qp",
    "solve_lp",
    "lp_value",
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
    "SAState",
    "SAInfo",
    "stochastic_approximation",
    "run_stochastic_approximation",
]
