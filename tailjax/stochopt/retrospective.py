"""Retrospective approximation with importance sampling (tutorial Algorithm 1).

Stage k = 1, 2, ...: sample size n_k = ceil(c n_{k-1}), tolerance eps_k = K / sqrt(n_k);
an IS law is chosen by the scheme's oracle at the current decision (u_{k-1}, theta_{k-1});
the IS sample problem is solved to the certified gap eps_k by
:func:`tailjax.stochopt.saa.solve_saa` warm-started at theta_{k-1}. The iterate of every
stage is kept (``RAResult.stages``). Two variants of the sampling:

* ``reuse_samples=False`` (default): every stage draws n_k fresh samples of its IS law
  (sum_k n_k samples in all, about 2 n_K at growth 2);
* ``reuse_samples=True``, Algorithm 1 as the tutorial writes it: the samples of earlier
  stages are kept with their own likelihood ratios (each under the law it was drawn
  from) and stage k draws only the n_k - n_{k-1} new ones from its law, so the stage
  problem is the average of unbiased terms over n_k samples (n_K samples in all).

``initial_is_param`` is the tutorial's given alpha_0: the first stage samples from it
without an oracle call (default: the oracle at (u0, theta0)).

Stages change the sample size, so each stage is a separate jitted solve. To compile only a
few programs, a stage's n_k samples are padded to N samples with zero weight (log L = -inf)
and the real samples' log-ratios shifted by log(N / n_k): the padded IS objective is then
identical to the unpadded one. ``padding="pow2"`` pads to the next power of two (one
program per power of two); ``padding="max"`` pads every stage to the last stage's size (a
single program, at the price of computing the early stages at full size).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_int, check_open_unit, check_positive
from tailjax.importance.estimators import SampleLoss
from tailjax.importance.oracle import ISScheme
from tailjax.stochopt.saa import solve_saa

__all__ = [
    "RAStage",
    "RAResult",
    "retrospective_approximation",
    "build_retrospective_approximation",
    "sample_sizes",
]


class RAStage(NamedTuple):
    n: int  # samples in the stage problem
    tolerance: float
    theta: Array
    u: Array
    value: Array  # IS sample objective at theta (upper bound of the stage problem)
    lower: Array  # certified lower bound of the stage problem
    gap: Array
    iterations: Array
    converged: Array
    is_param: Any  # the IS parameter of this stage's new samples
    new_samples: int = 0  # samples drawn at this stage (n_k, or n_k - n_{k-1} with reuse)


class RAResult(NamedTuple):
    theta: Array
    u: Array
    value: Array
    stages: list[RAStage]

    @property
    def total_samples(self) -> int:
        """Samples drawn over all stages (the oracles' pilot samples not counted)."""
        return int(sum(s.new_samples for s in self.stages))


def sample_sizes(n0: int, growth: float, num_stages: int) -> list[int]:
    """n_1 = n0, n_k = ceil(growth * n_{k-1}); ``n0, num_stages >= 1``, finite ``growth > 1``."""
    n0 = check_int(n0, "n0", minimum=1)
    num_stages = check_int(num_stages, "num_stages", minimum=1)
    if not (1.0 < growth < math.inf):
        raise ValueError(f"growth must be finite and > 1, got {growth}")
    sizes = [n0]
    for _ in range(num_stages - 1):
        sizes.append(int(math.ceil(growth * sizes[-1])))
    return sizes


def _next_pow2(n):
    return 1 << max(int(n - 1).bit_length(), 0)


def _pad(z, log_lr, n, size):
    shift = jnp.log(jnp.asarray(size / n, log_lr.dtype))
    z_pad = jnp.concatenate([z, jnp.broadcast_to(z[:1], (size - n,) + z.shape[1:])])
    lr_pad = jnp.concatenate([log_lr + shift, jnp.full((size - n,), -jnp.inf, log_lr.dtype)])
    return z_pad, lr_pad


def build_retrospective_approximation(
    loss: SampleLoss,
    scheme: ISScheme,
    theta_set: Any,
    tail_prob: float,
    *,
    n0: int = 1000,
    growth: float = 2.0,
    num_stages: int = 5,
    tolerance_scale: float = 1.0,
    relative_tolerance: float = 0.0,
    risk_weight: float = 0.0,
    max_iter: int = 200,
    padding: str = "pow2",
    dtype=None,
    reuse_samples: bool = False,
) -> Callable[..., RAResult]:
    """Compile Algorithm 1 once: returns
    ``run(key, theta0=None, u0=0.0, initial_is_param=None) -> RAResult``.

    The oracle, the per-size samplers and the stage solver are jitted here and reused by
    every call of ``run`` (see :func:`retrospective_approximation` for the arguments).
    """
    check_open_unit(tail_prob, "tail_prob")
    check_positive(tolerance_scale, "tolerance_scale")
    check_positive(relative_tolerance, "relative_tolerance", allow_zero=True)
    if padding not in ("pow2", "max"):
        raise ValueError(f"padding must be 'pow2' or 'max', got {padding!r}")
    sizes = sample_sizes(n0, growth, num_stages)  # checks n0, growth, num_stages
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    draws = [sizes[0]] + [b - a for a, b in zip(sizes, sizes[1:])] if reuse_samples else sizes
    dtype = dtype or jnp.result_type(float)
    choose = jax.jit(scheme.choose)
    samplers = {m: jax.jit(lambda key, params, m=m: scheme.sample(key, params, m)) for m in set(draws)}
    padders = {
        n: jax.jit(lambda z, lr, n=n: _pad(z.astype(dtype), lr.astype(dtype), n,
                                            _next_pow2(sizes[-1] if padding == "max" else n)))
        for n in set(sizes)
    }

    @jax.jit
    def solve(z, log_lr, theta, atol):
        return solve_saa(
            loss, z, theta_set, tail_prob, log_lr=log_lr, risk_weight=risk_weight,
            theta0=theta, tol=relative_tolerance, atol=atol, max_iter=max_iter,
        )

    def run(
        key: Array,
        theta0: Float[ArrayLike, " d"] | None = None,
        u0: Float[ArrayLike, ""] = 0.0,
        initial_is_param: Any = None,
    ) -> RAResult:
        theta = theta_set.feasible_point(dtype) if theta0 is None else jnp.asarray(theta0, dtype)
        u = jnp.asarray(u0, dtype)
        stages, kept_z, kept_lr = [], [], []
        for k, (n, m) in enumerate(zip(sizes, draws)):
            k_oracle, k_sample = jax.random.split(jax.random.fold_in(key, k))
            if k == 0 and initial_is_param is not None:
                params = initial_is_param
            else:
                params = choose(k_oracle, u, theta)
            z, log_lr = samplers[m](k_sample, params)
            if reuse_samples:  # earlier stages' samples keep their own likelihood ratios
                kept_z.append(z)
                kept_lr.append(log_lr)
                z, log_lr = jnp.concatenate(kept_z), jnp.concatenate(kept_lr)
            z_pad, lr_pad = padders[n](z, log_lr)
            eps = tolerance_scale / math.sqrt(n)
            res = solve(z_pad, lr_pad, theta, jnp.asarray(eps, dtype))
            theta, u = res.theta, res.u
            stages.append(RAStage(n, eps, res.theta, res.u, res.value, res.lower, res.gap,
                                  res.iterations, res.converged, params, m))
        return RAResult(theta, u, stages[-1].value, stages)

    return run


def retrospective_approximation(
    key: Array,
    loss: SampleLoss,
    scheme: ISScheme,
    theta_set: Any,
    tail_prob: float,
    *,
    n0: int = 1000,
    growth: float = 2.0,
    num_stages: int = 5,
    tolerance_scale: float = 1.0,
    relative_tolerance: float = 0.0,
    theta0: Float[ArrayLike, " d"] | None = None,
    u0: Float[ArrayLike, ""] = 0.0,
    risk_weight: float = 0.0,
    max_iter: int = 200,
    padding: str = "pow2",
    dtype=None,
    reuse_samples: bool = False,
    initial_is_param: Any = None,
) -> RAResult:
    """Algorithm 1: solve a sequence of IS sample problems of growing size.

    Args:
      key: PRNG key (stage k uses ``fold_in(key, k)``).
      loss: ``loss(x, theta)``, convex in theta.
      scheme: IS scheme (:mod:`tailjax.importance.oracle`); ``plain_scheme`` gives plain RA.
      theta_set: decision set.
      tail_prob: tail mass in (0, 1) of the loss's upper tail (the tutorial's beta).
      n0, growth, num_stages: n_1 = n0, n_k = ceil(growth n_{k-1}), growth > 1.
      tolerance_scale: K in eps_k = K / sqrt(n_k) (absolute gap, in loss units).
      relative_tolerance: optional extra relative gap, the stage stops at
        ``eps_k + relative_tolerance * |value|``.
      theta0, u0: starting decision (theta0 defaults to the set's feasible point).
      risk_weight: mean-CVaR weight lam (0: CVaR).
      max_iter: cut budget per stage.
      padding: ``"pow2"`` or ``"max"`` (see the module docstring).
      reuse_samples: keep earlier stages' samples with their own likelihood ratios and
        draw only the new ones (Algorithm 1 as written); default: fresh samples per stage.
      initial_is_param: the given alpha_0 of Algorithm 1 (the first stage's IS parameter,
        e.g. an h); default: the scheme's oracle at (u0, theta0).

    To run it repeatedly without recompiling, use :func:`build_retrospective_approximation`.
    """
    run = build_retrospective_approximation(
        loss, scheme, theta_set, tail_prob, n0=n0, growth=growth, num_stages=num_stages,
        tolerance_scale=tolerance_scale, relative_tolerance=relative_tolerance,
        risk_weight=risk_weight, max_iter=max_iter, padding=padding, dtype=dtype,
        reuse_samples=reuse_samples,
    )
    return run(key, theta0, u0, initial_is_param)
