"""scipy/HiGHS references for the stochopt tests (extensive-form LPs)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog


def set_constraints(theta_set):
    G, h, A, b = (np.asarray(a, np.float64) for a in theta_set.constraints())
    return G, h, A, b


def cvar_lp(slopes, offsets, theta_set, tail_prob, weights=None, risk_weight=0.0):
    """min over theta in Theta of the SAA/IS (mean-)CVaR of the affine losses
    l_i(theta) = slopes_i^T theta + offsets_i, by HiGHS. Returns (value, theta)."""
    a = np.asarray(slopes, np.float64)
    off = np.asarray(offsets, np.float64)
    n, d = a.shape
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    lam = risk_weight
    # variables: theta (d), u, z (n)
    c = np.concatenate([lam * (w @ a) / n, [1.0 - lam], (1.0 - lam) * w / (n * tail_prob)])
    const = lam * (w @ off) / n
    rows = sp.hstack([sp.csr_matrix(a), -np.ones((n, 1)), -sp.eye(n)])  # a theta - u - z <= -off
    G, h, A, b = set_constraints(theta_set)
    A_ub = sp.vstack([rows, sp.hstack([sp.csr_matrix(G), sp.csr_matrix((G.shape[0], 1 + n))])])
    b_ub = np.concatenate([-off, h])
    A_eq = sp.hstack([sp.csr_matrix(A), sp.csr_matrix((A.shape[0], 1 + n))]) if A.shape[0] else None
    b_eq = b if A.shape[0] else None
    bounds = [(None, None)] * (d + 1) + [(0, None)] * n
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
    assert res.status == 0, res.message
    return res.fun + const, res.x[:d]


def farmer_extensive_form(yields, tail_prob, risk_weight=0.0, weights=None):
    """The farmer's risk-averse extensive form over the scenarios ``yields: (n, 3)``."""
    from tailjax.stochopt.problems.farmer import LAND, PLANTING_COST, recourse_matrices

    t = np.asarray(yields, np.float64)
    n = t.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    q, W, h0, T = recourse_matrices()
    lam = risk_weight
    cpl = np.asarray(PLANTING_COST)
    # variables: x (3), u, z (n), y (n, 6)
    nv = 3 + 1 + n + 6 * n
    c = np.zeros(nv)
    c[:3] = lam * cpl * w.sum() / n  # the planting cost also sits inside every z_i
    c[3] = 1.0 - lam
    c[4 : 4 + n] = (1.0 - lam) * w / (n * tail_prob)
    ycol = 4 + n
    for i in range(n):
        c[ycol + 6 * i : ycol + 6 * i + 6] = lam * w[i] * q / n
    rows, rhs = [], []
    # z_i >= c^T x + q^T y_i - u   ->  c^T x + q^T y_i - u - z_i <= 0
    A1 = sp.lil_matrix((n, nv))
    for i in range(n):
        A1[i, :3] = cpl
        A1[i, 3] = -1.0
        A1[i, 4 + i] = -1.0
        A1[i, ycol + 6 * i : ycol + 6 * i + 6] = q
    rows.append(A1.tocsr())
    rhs.append(np.zeros(n))
    # W y_i + T(t_i) x <= h0
    A2 = sp.lil_matrix((4 * n, nv))
    for i in range(n):
        A2[4 * i : 4 * i + 4, :3] = T(t[i])
        A2[4 * i : 4 * i + 4, ycol + 6 * i : ycol + 6 * i + 6] = W
    rows.append(A2.tocsr())
    rhs.append(np.tile(h0, n))
    land = sp.lil_matrix((1, nv))
    land[0, :3] = 1.0
    rows.append(land.tocsr())
    rhs.append(np.array([LAND]))
    bounds = [(0, None)] * 3 + [(None, None)] + [(0, None)] * n + [(0, None)] * (6 * n)
    res = linprog(c, A_ub=sp.vstack(rows), b_ub=np.concatenate(rhs), bounds=bounds, method="highs")
    assert res.status == 0, res.message
    return res.fun, res.x[:3]
