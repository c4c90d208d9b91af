"""Test problems of the tail-risk tutorial: portfolio CVaR / mean-CVaR (Example 1,
Formulation 2) and the Birge-Louveaux farmer two-stage LP (Example 2)."""

from tailjax.stochopt.problems.farmer import (
    Farmer,
    farmer_problem,
    recourse_closed_form,
    recourse_cost,
    recourse_matrices,
)
from tailjax.stochopt.problems.portfolio import (
    Portfolio,
    portfolio_optimum,
    portfolio_problem,
    portfolio_var_cvar,
    standard_tail,
)

__all__ = [
    "Portfolio",
    "portfolio_problem",
    "portfolio_var_cvar",
    "portfolio_optimum",
    "standard_tail",
    "Farmer",
    "farmer_problem",
    "recourse_cost",
    "recourse_closed_form",
    "recourse_matrices",
]
