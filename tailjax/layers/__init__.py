"""Differentiable decision layers: the only place in tailjax that imports jaxopt.

API (one instance per call; ``jax.vmap`` over instances; everything jit-able)

- ``Polytope`` / ``make_polytope(lower (d,), upper (d,), eq_matrix (m_eq, d), eq_rhs,
  ineq_matrix (m_ub, d), ineq_rhs)``: the feasible set W (finite box + linear rows).
- ``cvar_decision(costs (K, d), polytope, tail_prob, *, quadratic (d, d) = None, reg = 0.,
  weights (K,) = None, on_failure = "nan") -> w (d,)``: argmin_{w in W}
  CVaR_{tail_prob}[c^T w] + w^T P w + reg ||w||^2 over the empirical distribution of the K
  samples (Rockafellar-Uryasev SAA, one QP with slack variables). ``costs`` are in
  minimisation form.
- ``point_decision(cost (d,), polytope, *, quadratic, reg, on_failure) -> w (d,)``: the same
  for one cost.
- ``solve_qp(Q, q, A, b, G, h) -> QPSolution``: the dense QP solver underneath (fixed-budget
  Mehrotra interior point; implicit differentiation by ``jaxopt.implicit_diff.root_vjp``
  with a structured KKT solve).
- ``solve_lp(c, A, b, G, h) -> QPSolution``: the same engine for an LP (``Q = 0``), and
  ``lp_value(c, A, b, G, h, *, on_failure = "nan")``: its optimal value, differentiable by
  the envelope theorem (dV = dc'x* + z*'(dG x* - dh) + y*'(dA x* - db)); ``A, b`` may be
  ``None``.
- Exact oracles for surrogate losses: ``grid_shortest_path`` (DP under ``lax.scan``),
  ``fractional_knapsack`` (sort by value/weight), ``box_budget`` (energy: cheapest first).

Risk level: ``tail_prob`` is the tail mass, the worst ``tail_prob`` fraction of the cost
samples. Gen-DFL's alpha ("the worst alpha-fraction", 1/(alpha K) in the SAA) is the same
number: ``tail_prob = alpha``; ``tail_prob = 1`` gives the risk-neutral decision.

Regularisation: LP decisions are piecewise constant in the costs, so their gradient is
zero almost everywhere. ``reg = mu > 0`` adds QPTL's mu ||w||^2 (Wilder et al. 2019),
making w* unique and differentiable; the portfolio's w^T Sigma w is already strongly convex.
With ``reg = 0`` gradients are those of the interior-point iterate (a log-barrier smoothing
at the final barrier level, as in IntOpt), finite but small and noisy.

Scaling and failures (:mod:`tailjax.layers.scaling`): the costs are centred by the equality
rows and the objective scaled to order one inside the solver, so float32 gives the float64
decision for costs of any magnitude (energy prices of 2-4e4, costs of 1e-5). Where the solver
does not converge (infeasible data, too few iterations) the decision layers and ``lp_value``
return NaN by default (``on_failure="nan"``), or fail a ``checkify`` check
(``on_failure="raise"``: an error outside ``jit``), or return the last iterate
(``"ignore"``, with ``return_info=True`` to see ``converged``). ``box_budget`` refuses an
infeasible total (NaN when traced).

Gradients flow to ``costs``, ``weights``, ``quadratic`` and the polytope's arrays.
"""

from tailjax.layers.cvar import DecisionInfo, cvar_decision, point_decision
from tailjax.layers.lp import lp_value, solve_lp
from tailjax.layers.oracles import box_budget, fractional_knapsack, grid_arcs, grid_shortest_path
from tailjax.layers.polytope import Polytope, check_feasible, make_polytope, polytope_constraints
from tailjax.layers.qp import QPSolution, solve_qp

__all__ = [
    "Polytope",
    "make_polytope",
    "check_feasible",
    "polytope_constraints",
    "cvar_decision",
    "point_decision",
    "DecisionInfo",
    "solve_qp",
    "QPSolution",
    "solve_lp",
    "lp_value",
    "grid_arcs",
    "grid_shortest_path",
    "fractional_knapsack",
    "box_budget",
]
