"""The four decision problems of Gen-DFL (Appendix B) with their true p(c|x), and the
PyEPO-compatible data generators.

API
- ``DecisionProblem(polytope, quadratic, sign, reg)``: f(c, w) = sign c^T w + w^T P w on W.
  ``objective(problem, c (..., d), w (d,))``; ``decision(problem, samples (K, d), tail_prob,
  *, reg=None, weights=None) -> w (d,)`` (the differentiable CVaR-SAA layer; tail_prob =
  Gen-DFL's alpha); ``point_decision_of(problem, c (d,))``.
- ``ProblemInstance(name, problem, model, oracle, features (n, p), costs (n, d))`` from
  ``portfolio_instance``, ``knapsack_instance``, ``shortest_path_instance``,
  ``energy_instance`` (synthetic) or ``icon_instance`` (real ICON prices), or
  ``make_instance(name, ...)``. ``model.sample(key, x (p,), K) -> (K, d)`` draws from the
  true p(c|x); ``model.mean(x) -> (d,)``; ``oracle(c (d,)) -> w (d,)`` is exact.
- PyEPO 2.2 ``genData`` twins (same formulas, seeds, draw order, dtypes):
  ``shortest_path_gen_data``, ``knapsack_gen_data``, ``portfolio_gen_data``; and PyEPO's
  twin problems: ``binary_knapsack(values (n,), weights (n,), capacity, *, weight_unit)``
  (the exact 0-1 knapsack under jit: DP or branch and bound; ``pyepo_knapsack_instance(...,
  binary=True)``) beside the relaxation, and ``risk_capped_portfolio(r (d,), Sigma (d, d),
  risk_level)`` (max r^T w, 1^T w = 1, w >= 0, w^T Sigma w <= ``pyepo_risk_level(Sigma)``;
  ``pyepo_portfolio_instance``).
"""

from tailjax.dfl.problems.base import (
    DecisionProblem,
    ProblemInstance,
    decision,
    exact_oracle,
    make_problem,
    objective,
    point_decision_of,
    qp_oracle,
)
from tailjax.dfl.problems.binary_knapsack import KnapsackInfo, binary_knapsack
from tailjax.dfl.problems.energy import SpikyPriceModel, energy_instance, energy_problem
from tailjax.dfl.problems.icon import IconEnergyData, ResidualBootstrapModel, icon_instance, load_icon_energy
from tailjax.dfl.problems.knapsack import (
    knapsack_gen_data,
    knapsack_instance,
    knapsack_problem,
    pyepo_knapsack_instance,
)
from tailjax.dfl.problems.portfolio import (
    FactorReturnModel,
    portfolio_gen_data,
    portfolio_instance,
    portfolio_problem,
)
from tailjax.dfl.problems.pyepo_portfolio import (
    pyepo_portfolio_instance,
    pyepo_risk_level,
    risk_capped_portfolio,
)
from tailjax.dfl.problems.shortest_path import (
    PolynomialCostModel,
    shortest_path_gen_data,
    shortest_path_instance,
    shortest_path_problem,
)

PROBLEMS = ("portfolio", "knapsack", "shortest_path", "energy")


def make_instance(name: str, **kwargs) -> ProblemInstance:
    """``portfolio``, ``knapsack``, ``shortest_path`` or ``energy`` (synthetic) instance with
    the paper's defaults; keyword arguments go to the constructor (``num_data``,
    ``num_features``, ``deg``, the noise, ``seed``, ...)."""
    makers = {
        "portfolio": portfolio_instance,
        "knapsack": knapsack_instance,
        "shortest_path": shortest_path_instance,
        "energy": energy_instance,
    }
    if name not in makers:
        raise ValueError(f"name must be one of {sorted(makers)}, got {name!r}")
    return makers[name](**kwargs)


__all__ = [
    "DecisionProblem",
    "ProblemInstance",
    "make_problem",
    "objective",
    "decision",
    "point_decision_of",
    "qp_oracle",
    "exact_oracle",
    "make_instance",
    "PROBLEMS",
    "portfolio_instance",
    "portfolio_problem",
    "portfolio_gen_data",
    "FactorReturnModel",
    "knapsack_instance",
    "knapsack_problem",
    "knapsack_gen_data",
    "pyepo_knapsack_instance",
    "binary_knapsack",
    "KnapsackInfo",
    "pyepo_portfolio_instance",
    "pyepo_risk_level",
    "risk_capped_portfolio",
    "shortest_path_instance",
    "shortest_path_problem",
    "shortest_path_gen_data",
    "PolynomialCostModel",
    "energy_instance",
    "energy_problem",
    "SpikyPriceModel",
    "icon_instance",
    "load_icon_energy",
    "IconEnergyData",
    "ResidualBootstrapModel",
]
