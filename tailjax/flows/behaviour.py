"""Off-policy adjoint matching: paths from a fixed mixture of fields, and their weights.

A behaviour mixture Q = sum_j p_j P_j of memoryless path measures (each P_j driven by a fixed
field f_j, ``None`` for the base) draws each step's paths: round(p_j n) of them from component
j. The weight of a path towards the target P* (proportional to P_base exp(r / alpha)) is

    dP*/dQ = exp(r(X_1) / alpha) dP_base/dQ,   dP_base/dQ = 1 / sum_j p_j dP_j/dP_base,

with each dP_base/dP_j the discrete Girsanov ratio of :func:`~tailjax.flows.girsanov.path_log_weight`
(the ratio of the two chains' transition densities along the path, valid for any path).
Used by :func:`~tailjax.flows.adjoint.adjoint_matching` (``behaviour_fields``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tailjax.flows.girsanov import path_log_weight
from tailjax.flows.sde import memoryless_solve

__all__ = ["behaviour_mixture", "mixture_paths", "mixture_log_ratio"]



def behaviour_mixture(fields, probs, batch_size, base):
    """``(fields, log_probs, counts)`` of a behaviour mixture (None: no mixture)."""
    if fields is None:
        if probs is not None:
            raise ValueError("behaviour_probs needs behaviour_fields")
        return None
    fields = [base if f is None else f for f in fields]
    probs = [1.0 / len(fields)] * len(fields) if probs is None else [float(p) for p in probs]
    if len(probs) != len(fields) or not fields or min(probs) <= 0 or abs(sum(probs) - 1.0) > 1e-6:
        raise ValueError(f"behaviour_probs must be {len(fields)} positive numbers summing to 1, got {probs}")
    exact = [p * batch_size for p in probs]
    counts = [int(e) for e in exact]
    for j in sorted(range(len(fields)), key=lambda j: exact[j] - counts[j], reverse=True)[: batch_size - sum(counts)]:
        counts[j] += 1
    if min(counts) < 1:
        raise ValueError(f"batch_size {batch_size} is too small for behaviour_probs {probs}: every component "
                         "needs a path")
    return fields, jnp.log(jnp.asarray(probs)), counts


def mixture_paths(mixture, x0, noise, ctx, schedule, coefs):
    """Paths of each component of the mixture on its slice of the batch, concatenated."""
    fields, _, counts = mixture
    parts, start = [], 0
    for f, n in zip(fields, counts):
        rows = lambda a: a[start:start + n]
        c = None if ctx is None else jax.tree_util.tree_map(rows, ctx)
        _, traj = memoryless_solve(lambda _, x, t, *cc: f(x, t, *cc), None, rows(x0), rows(noise), context=c,
                                   schedule=schedule, coefficients=coefs, return_trajectory=True)
        parts.append(traj)
        start += n
    return jnp.concatenate(parts)


def mixture_log_ratio(mixture, base, traj, ctx, coefs, schedule):
    """log dP_base/dQ of each path, Q = sum_j p_j P_j: -logsumexp_j(log p_j - log dP_base/dP_j)."""
    fields, log_probs, _ = mixture
    per = []
    for f in fields:
        if f is base:
            per.append(jnp.zeros(traj.shape[:1], traj.dtype))
            continue
        per.append(jax.vmap(lambda p, c: path_log_weight(lambda _, x, t, *cc: f(x, t, *cc), None, base, p, coefs,
                                                         schedule, c))(traj, ctx))
    stacked = jnp.stack(per, axis=-1)
    return -jax.scipy.special.logsumexp(log_probs.astype(traj.dtype) - stacked, axis=-1)
