"""Tail-risk core: VaR/CVaR of empirical distributions, the Rockafellar-Uryasev dual, and
TFFT's threshold problems.

``tail_prob`` is the probability mass of the tail (0.01 = worst 1%); ``side="upper"`` for
losses, ``"lower"`` for rewards. TFFT's threshold functions take TFFT's own
``quantile_level`` (beta) and ``temperature`` (alpha); :func:`tail_prob_of_quantile_level`
converts.
"""

from tailjax.risk.empirical import cvar, mean_cvar, ru_objective, tail_count, var, var_cvar
from tailjax.risk.select import cvar_large, var_large
from tailjax.risk.threshold import (
    ThresholdInfo,
    pseudo_reward,
    solve_threshold,
    tail_prob_of_quantile_level,
    threshold_objective,
)

__all__ = [
    "var",
    "cvar",
    "var_cvar",
    "ru_objective",
    "mean_cvar",
    "tail_count",
    "cvar_large",
    "var_large",
    "pseudo_reward",
    "threshold_objective",
    "solve_threshold",
    "ThresholdInfo",
    "tail_prob_of_quantile_level",
]
