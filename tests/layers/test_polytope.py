"""Polytope construction and feasibility checks."""

import numpy as np
import pytest

from tailjax.layers import make_polytope, polytope_constraints


def test_constraints_layout():
    poly = make_polytope(np.zeros(3), np.ones(3), np.ones((1, 3)), [1.0], [[1.0, 2.0, 0.0]], [2.0])
    A, b, G, h = polytope_constraints(poly)
    assert A.shape == (1, 3) and G.shape == (7, 3) and h.shape == (7,)
    np.testing.assert_allclose(h, [1, 1, 1, 0, 0, 0, 2])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(upper=np.zeros(3) - 1), "upper"),
        (dict(upper=np.ones(2)), "upper"),
        (dict(eq_matrix=np.ones((1, 3)), eq_rhs=[5.0]), "infeasible"),
        (dict(ineq_matrix=np.ones((1, 3)), ineq_rhs=[-1.0]), "infeasible"),
        (dict(eq_matrix=np.ones((1, 4)), eq_rhs=[1.0]), "eq_matrix"),
        (dict(eq_matrix=np.ones((1, 3))), "eq_rhs"),
        (dict(lower=np.full(3, -np.inf)), "finite"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(lower=np.zeros(3), upper=np.ones(3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_polytope(**args)
