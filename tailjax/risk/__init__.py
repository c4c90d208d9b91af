"""Tail-risk core: VaR/CVaR of empirical distributions, the Rockafellar-Uryasev dual, and
TFFT's threshold problems.

``tail_prob`` is the probability mass of the tail (0.01 = worst 1%); ``side="upper"`` for
losses, ``"lower"`` for rewards. TFFT's threshold functions take TFFT's own
``quantile_level`` (beta) and ``temperature`` (alpha); :func:`tail_prob_of_quantile_level`
converts.

Example:

>>> import jax.numpy as jnp
>>> from tailjax import risk
>>> losses = jnp.arange(10.0)
>>> float(risk.cvar(losses, 0.2))              # mean of the worst 20%: (9 + 8) / 2
8.5
>>> float(risk.var(losses, 0.2))               # smallest v with P(X > v) <= 0.2
7.0
>>> float(risk.cvar(losses, 0.2, side="lower"))  # rewards: mean of the lowest 20%
0.5
>>> float(risk.cvar(losses, 0.15))             # the atom at the VaR is split exactly
8.666666984558105
"""

from tailjax.risk.empirical import cvar, mean_cvar, ru_objective, tail_count, var, var_cvar
from tailjax.risk.select import SelectConfig, cvar_large, var_large
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
    "SelectConfig",
    "pseudo_reward",
    "threshold_objective",
    "solve_threshold",
    "ThresholdInfo",
    "tail_prob_of_quantile_level",
]
