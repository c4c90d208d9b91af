"""Adjoint matching (Domingo-Enrich et al. 2024): reward fine-tuning of a flow model.

Target: p*(x) proportional to p_base(x) exp(r(x) / temperature), with ``temperature`` the
paper's alpha (the KL temperature; lambda = 1 / alpha below).
With the memoryless noise schedule the fine-tuned field v_theta is learned by regression:

1. Trajectories X_0..X_K of the memoryless SDE under the current v_theta, held fixed
   (``stop_gradient``): :mod:`tailjax.flows.sde`.
2. The lean adjoint backwards in time along each path, a(1) = -lambda grad r(X_1) and
   da/dt = -(grad_x b_base)^T a with b_base = 2 v_base - kappa x. The linear kappa part is
   integrated exactly (a factor alpha(t_k) / alpha(t_{k+1})), the rest by an Euler step:

       a_k = alpha(t_k) / alpha(t_{k+1}) * (a_{k+1} + 2 h_k (grad_x v_base)^T a_{k+1}),

   with the vector-Jacobian product at (X_{k+1}, t_{k+1}) by ``jax.vjp``. (Plain Euler,
   a_k = a_{k+1} + h_k (2 (grad v)^T a_{k+1} - kappa a_{k+1}), is kept as an option.)
3. The loss sum_k |(2 / sigma_k)(v_theta - v_base)(X_k, t_k) + sigma_k a_k|^2 over interior
   times 0 < t_k < 1 (sigma is infinite at 0 and zero at 1), averaged over the batch
   (:func:`adjoint_matching_loss`, a loss in the convention of :mod:`tailjax.base` whose
   batch carries the paths, adjoints and base velocities), minimised by one step of
   :func:`tailjax.training.gradient_kernel` per batch of fresh paths.

Option ``importance_weighting``: weight each path by dP*/dP_theta (the reward tilt times the
discrete Girsanov ratio of :mod:`tailjax.flows.girsanov`), so that the regression target is
the optimal one whatever field drew the paths. Plain adjoint matching cannot correct the mass
split between two distant modes (its fixed point is unstable there; seen on TFFT's R-CVaR
example, where the upper mode keeps growing past its optimal mass); the weighted loss can.

``velocity_fn(params, x, t)`` is the fine-tuned field, ``base_velocity_fn(x, t)`` the frozen base
(both per sample, on one event ``x`` of any shape: ``(d,)`` or an image ``(H, W, C)``);
``reward_fn(x, reward_params) -> ()`` per sample, where ``reward_params`` is the third argument of
``step`` (``None`` unless a schedule feeds it, e.g. TFFT's quantile-level annealing). With
``contexts`` (a class label, an embedding per sample) every function takes the sample's context
last: ``velocity_fn(params, x, t, c)``, ``base_velocity_fn(x, t, c)``, ``reward_fn(x, rp, c)``.
The grid of a kernel is ``memoryless_coefficients(schedule, num_steps, ts, dtype)``
(:mod:`tailjax.flows.sde`) for the arguments it was built with.

Scale options of the kernel: ``mesh`` shards every per-sample array of a step over the first
axis of a device mesh (``NamedSharding``; parameters replicated, the loss a global mean, so
the step equals the one-device step up to the order of float sums); ``remat`` evaluates the
loss time by time under ``jax.checkpoint`` (activation memory of one time instead of K - 1);
``compute_dtype=jnp.bfloat16`` evaluates the fine-tuned field in bf16 (parameters, states and
losses stay in their own dtype).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.experimental import checkify
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import (
    check_positive, check_weights, nan_where, run_checked, traced_bad_weights, traced_out_of_range,
)
from tailjax.base import Kernel
from tailjax.flows._fields import (
    batch_sharding, call_base, call_field, cast_field, check_fields, draw_contexts, event_shape, first_context,
    shard, sum_event,
)
from tailjax.flows.behaviour import behaviour_mixture, mixture_log_ratio, mixture_paths
from tailjax.flows.girsanov import path_log_weight
from tailjax.flows.schedule import Schedule, rectified_flow
from tailjax.flows.sde import MemorylessCoefficients, memoryless_coefficients, memoryless_solve
from tailjax.training import gradient_kernel

__all__ = [
    "lean_adjoint",
    "AdjointMatchingBatch",
    "adjoint_matching_loss",
    "AdjointMatchingInfo",
    "adjoint_matching",
    "check_fields",
]

VelocityFn = Callable[..., Array]
BaseFn = Callable[..., Array]
RewardFn = Callable[..., Array]


def lean_adjoint(
    base_velocity_fn: BaseFn,
    trajectory: Float[ArrayLike, "k1 *event"],
    terminal: Float[ArrayLike, "*event"],
    coefficients: MemorylessCoefficients,
    *,
    exact_kappa: bool = True,
    context: Any = None,
) -> tuple[Float[Array, "k1 *event"], Float[Array, "k1 *event"]]:
    """Lean adjoint along one path, backwards from ``terminal`` = a(1) = -lambda grad r(X_1).

    Args:
      base_velocity_fn: per-sample ``v_base(x, t)`` (``v_base(x, t, c)`` with a context).
      trajectory: ``(K + 1, *event)`` states X_0..X_K on ``coefficients.ts``.
      terminal: ``(*event)`` the adjoint at t = 1.
      coefficients: the memoryless grid (:func:`~tailjax.flows.sde.memoryless_coefficients`).
      exact_kappa: integrate the kappa part exactly (default) or by plain Euler.
      context: the path's context (no sample axis), or None.

    Returns:
      ``(adjoint, v_base)``, both ``(K + 1, *event)``: a(t_k) for k = 1..K and v_base(X_k, t_k) for
      k = 1..K. Entry 0 (t = 0, where the kappa part makes a(0) = 0 and sigma is infinite) is
      set to zero in both: the loss never uses it. A NaN in ``trajectory`` or ``terminal``
      makes both all NaN.
    """
    traj = jnp.asarray(trajectory)
    a_end = jnp.asarray(terminal, traj.dtype)
    ts, h, alpha = coefficients.ts, coefficients.h, coefficients.alpha
    num = h.shape[0]
    if traj.ndim < 2 or traj.shape[0] != num + 1 or 0 in traj.shape:
        raise ValueError(f"trajectory must have shape ({num + 1}, *event) for the grid of coefficients, "
                         f"got {traj.shape}")
    if a_end.shape != traj.shape[1:]:
        raise ValueError(f"terminal must have the event shape {traj.shape[1:]} of trajectory, got {a_end.shape}")
    base = lambda x, t: call_base(base_velocity_fn, x, t, context)

    def body(a, k):
        # k runs K-1, ..., 1: from t_{k+1} to t_k.
        v, vjp = jax.vjp(lambda x: base(x, ts[k + 1]), traj[k + 1])
        (jt_a,) = vjp(a)
        if exact_kappa:
            a_new = (alpha[k] / alpha[k + 1]) * (a + 2.0 * h[k] * jt_a)
        else:
            a_new = a + h[k] * (2.0 * jt_a - coefficients.kappa[k + 1] * a)
        return a_new, (a_new, v)

    ks = jnp.arange(num - 1, 0, -1)
    _, (adj, vb) = jax.lax.scan(body, a_end, ks)
    # adj[i] = a_{K-1-i} and vb[i] = v_base at k + 1 = K - i.
    v1 = base(traj[1], ts[1])
    zeros = jnp.zeros_like(a_end)
    adjoint = jnp.concatenate([zeros[None], adj[::-1], a_end[None]], axis=0)
    v_base = jnp.concatenate([zeros[None], v1[None], vb[::-1]], axis=0)
    return nan_where(jnp.any(jnp.isnan(traj)) | jnp.any(jnp.isnan(a_end)), (adjoint, v_base))


class AdjointMatchingBatch(NamedTuple):
    """What :func:`adjoint_matching_loss` regresses on (all held fixed, no gradient)."""

    trajectories: Array  # (n, K + 1, *event) memoryless paths X_0..X_K
    adjoints: Array  # (n, K + 1, *event) lean adjoints a(t_k)
    base_velocities: Array  # (n, K + 1, *event) v_base(X_k, t_k)
    time_indices: Array  # (m,) interior grid indices in 1..K-1 used by the loss
    sample_weights: Array | None = None  # (n,) summing to 1, or None for the plain average
    contexts: Any = None  # (n, ...) per-path contexts, or None


def adjoint_matching_loss(
    params: Any,
    batch: AdjointMatchingBatch,
    key: Array | None = None,
    *,
    velocity_fn: VelocityFn,
    coefficients: MemorylessCoefficients,
    clip: float | None = None,
    remat: bool = False,
) -> tuple[Float[Array, ""], dict]:
    """sum over ``batch.time_indices`` of |(2/sigma)(v_theta - v_base) + sigma a|^2, batch-averaged.

    ``batch.time_indices: (m,)`` must pick interior times (1..K-1) of ``coefficients.ts``;
    the sum over them is rescaled by (K - 1) / m so that m random times stand for all K - 1
    (the factor is 1 when every interior time is used). The squared norm runs over every
    event axis. Each (sample, time) term is clipped at ``clip`` if given (its gradient is
    zero beyond the clip). ``batch.sample_weights`` ``(n,)`` (summing to 1) replace the plain
    batch average by a weighted one. With ``batch.contexts`` the field is called as
    ``velocity_fn(params, x, t, c)``. ``remat=True`` evaluates the times one by one under
    ``jax.checkpoint`` (same value and gradient, activation memory of one time). ``key`` is
    unused (the loss convention of :mod:`tailjax.base`). Returns ``(loss, {})``. A ``clip``
    <= 0 or ``sample_weights`` that are negative, not finite, all zero or not ``(n,)`` raise
    (NaN when traced).
    """
    idx = jnp.asarray(batch.time_indices)
    traj = jnp.asarray(batch.trajectories)
    if clip is not None:
        check_positive(clip, "clip")
    if batch.sample_weights is not None:
        if jnp.shape(batch.sample_weights) != traj.shape[:1]:
            raise ValueError(f"sample_weights must have shape {traj.shape[:1]}, got {jnp.shape(batch.sample_weights)}")
        check_weights(batch.sample_weights, batch.sample_weights, "sample_weights")
    bad = (False if clip is None else traced_out_of_range(clip, high=float("inf"))) | traced_bad_weights(
        batch.sample_weights)
    sigma = jnp.asarray(coefficients.sigma, traj.dtype)
    ts = jnp.asarray(coefficients.ts, traj.dtype)
    time_weight = (coefficients.h.shape[0] - 1) / idx.shape[0]
    field = lambda x, t, c: call_field(velocity_fn, params, x, t, c)

    def at_time(i):
        """(n,) loss terms at grid index i."""
        x, a = traj[:, i], jnp.asarray(batch.adjoints)[:, i]
        vb = jnp.asarray(batch.base_velocities)[:, i]
        s = sigma[i]
        v = jax.vmap(field, in_axes=(0, None, 0))(x, ts[i], batch.contexts)
        terms = sum_event(((2.0 / s) * (v - vb) + s * a) ** 2, 1)
        return terms if clip is None else jnp.minimum(terms, clip)

    if remat:
        step = jax.checkpoint(lambda acc, i: (acc + at_time(i), None))
        per_sample, _ = jax.lax.scan(step, jnp.zeros(traj.shape[:1], traj.dtype), idx)
    else:
        per_sample = jnp.sum(jax.vmap(at_time, out_axes=1)(idx), axis=1)
    if batch.sample_weights is None:
        return nan_where(bad, time_weight * jnp.mean(per_sample)), {}
    weights = jnp.asarray(batch.sample_weights, per_sample.dtype)
    return nan_where(bad, time_weight * jnp.sum(weights * per_sample)), {}


class AdjointMatchingInfo(NamedTuple):
    loss: Array
    reward: Array  # mean reward of the step's samples
    grad_norm: Array
    adjoint_norm: Array  # mean |a(1)|
    nonfinite: Array  # number of samples whose reward or gradient is not finite
    ess: Array  # effective sample size fraction of the importance weights (1 when unweighted)


def adjoint_matching(
    velocity_fn: VelocityFn,
    base_velocity_fn: BaseFn,
    reward_fn: RewardFn,
    optimizer: optax.GradientTransformation,
    dim: int | tuple[int, ...],
    *,
    temperature: float = 1.0,
    batch_size: int = 512,
    num_steps: int = 40,
    ts: Float[ArrayLike, " k1"] | None = None,
    schedule: Schedule | None = None,
    loss_timesteps: int | None = None,
    loss_clip: float | None = None,
    exact_kappa: bool = True,
    checked: bool = False,
    importance_weighting: bool = False,
    behaviour_fields: Any = None,
    behaviour_probs: Any = None,
    contexts: Any = None,
    mesh: Any = None,
    remat: bool = False,
    compute_dtype: Any = None,
    example_reward_params: Any = None,
    dtype: Any = None,
) -> Kernel:
    """The adjoint-matching kernel (jit ``step`` yourself or drive it with ``training.fit``).

    ``init(params) -> TrainState`` (checks the fields' shapes) and
    ``step(state, key, reward_params=None) -> (TrainState, AdjointMatchingInfo)``: each step
    samples ``batch_size`` memoryless paths under the current field, integrates their lean
    adjoints, and takes one :func:`~tailjax.training.gradient_kernel` step on
    :func:`adjoint_matching_loss`. The batch of ``step`` is the ``reward_params`` handed to
    ``reward_fn`` (an annealing schedule's current value, or ``None``). The kernel's grid is
    ``memoryless_coefficients(schedule, num_steps, ts, dtype)``.

    Args:
      velocity_fn: fine-tuned per-sample field ``velocity_fn(params, x, t[, c])``.
      base_velocity_fn: frozen base field ``v_base(x, t[, c])`` (closes over the base parameters).
      reward_fn: per-sample ``reward_fn(x, reward_params[, c]) -> ()``.
      optimizer: optax transformation.
      dim: data dimension d, or the event shape of one sample (e.g. ``(H, W, C)``).
      temperature: the KL temperature (the paper's alpha > 0); the target is
        p_base exp(r / temperature), i.e. lambda = 1 / temperature.
      batch_size: trajectories per step.
      num_steps: K of the uniform memoryless grid (ignored when ``ts`` is given).
      ts: optional grid from 0 to 1.
      schedule: interpolant schedule (rectified flow by default).
      loss_timesteps: use a random subset of this many interior times per step (None: all).
      loss_clip: clip each (sample, time) loss term at this value.
      exact_kappa: exact integration of the kappa part of the adjoint (default True).
      checked: the step raises (checkify) on non-finite rewards or reward gradients; it then
        runs eagerly (compiled inside), so drive it with ``fit(..., jit=False)``.
      importance_weighting: weight each path by dP*/dP_theta, i.e. exp(r(X_1) / temperature)
        times the discrete Girsanov ratio dP_base/dP_theta (:mod:`tailjax.flows.girsanov`),
        self-normalised over the batch. The regression target is then E_{P*}[a | X_t]
        whatever field drew the paths, which removes the feedback that can make the plain
        iteration drift away from a multimodal optimum (a mass split between distant modes);
        it costs about K more evaluations of each field per step, and the weights degenerate
        when the current field is far from the target (see ``info.ess``).
      behaviour_fields: off-policy adjoint matching: draw the paths from a fixed mixture of
        fields ``f_j(x, t[, c])`` (``None`` stands for the base field) with probabilities
        ``behaviour_probs`` (default uniform; each step takes round(p_j * batch_size) paths
        from component j) and weight each path by dP*/dQ = exp(r(X_1) / temperature)
        dP_base/dQ, Q the mixture path measure (discrete Girsanov ratios). The regression
        target is E_{P*}[a | X_t] for any current field, with no feedback at all: a defensive
        mixture of the base and a tail proposal covers a target with distant modes.
      contexts: per-path contexts: an array (or pytree of arrays) of m contexts from which each
        step draws ``batch_size`` uniformly, or a function ``(key, n) -> (n, ...)`` contexts.
        None: unconditional fields.
      mesh: a ``jax.sharding.Mesh``; the step's samples are sharded over its first axis
        (``batch_size`` must divide evenly). Results equal the one-device step up to the order
        of float sums.
      remat: rematerialise the loss over the time grid (see :func:`adjoint_matching_loss`).
      compute_dtype: evaluate the fine-tuned field in this dtype (e.g. ``jnp.bfloat16``). Give
        the base in the same dtype (``cast_field(velocity_fn, dtype)`` at the base parameters):
        the loss regresses v_theta - v_base, which a mixed-precision pair gets wrong where the
        two fields agree.
      example_reward_params: what ``step`` will pass as ``reward_params`` (for the shape check
        that ``init`` runs).
      dtype: float dtype of the samples (default: JAX's default float).
    """
    check_positive(temperature, "temperature")
    shape = event_shape(dim)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if loss_clip is not None:
        check_positive(loss_clip, "loss_clip")
    schedule = schedule or rectified_flow()
    dtype = dtype or jnp.result_type(float)
    coefs = memoryless_coefficients(schedule, num_steps, ts, dtype)
    k = coefs.h.shape[0]
    interior = jnp.arange(1, k)
    if loss_timesteps is not None and not 1 <= loss_timesteps <= k - 1:
        raise ValueError(f"loss_timesteps must lie in [1, {k - 1}], got {loss_timesteps}")
    sharding = batch_sharding(mesh, batch_size)
    mixture = behaviour_mixture(behaviour_fields, behaviour_probs, batch_size, base_velocity_fn)
    lam = 1.0 / temperature
    field = cast_field(velocity_fn, compute_dtype)
    loss = functools.partial(adjoint_matching_loss, velocity_fn=field, coefficients=coefs, clip=loss_clip,
                             remat=remat)
    inner = gradient_kernel(loss, optimizer)

    def reward(x, rp, c):
        return reward_fn(x, rp) if c is None else reward_fn(x, rp, c)

    def init(params):
        check_fields(velocity_fn, base_velocity_fn, reward_fn, params, shape, dtype, example_reward_params,
                     first_context(contexts))
        return inner.init(params)

    def raw_step(state, key, reward_params=None):
        key_x0, key_noise, key_t, key_c = jax.random.split(key, 4)
        frozen = jax.lax.stop_gradient(state.params)
        ctx = shard(draw_contexts(contexts, key_c, batch_size), sharding)
        x0 = shard(jax.random.normal(key_x0, (batch_size,) + shape, dtype), sharding)
        noise = shard(jax.random.normal(key_noise, (batch_size, k) + shape, dtype), sharding)
        if mixture is None:
            _, traj = memoryless_solve(
                field, frozen, x0, noise, context=ctx, schedule=schedule, coefficients=coefs,
                return_trajectory=True,
            )
        else:
            traj = mixture_paths(mixture, x0, noise, ctx, schedule, coefs)
        traj = shard(jax.lax.stop_gradient(traj), sharding)
        rewards, grads_r = jax.vmap(jax.value_and_grad(reward), in_axes=(0, None, 0))(
            traj[:, -1], reward_params, ctx
        )
        bad = ~jnp.isfinite(rewards) | ~jnp.all(jnp.isfinite(grads_r), axis=tuple(range(1, grads_r.ndim)))
        if checked:
            checkify.check(~jnp.any(bad), "reward_fn returned a non-finite reward or gradient")
        terminal = -lam * grads_r
        adjoints, v_base = jax.vmap(
            lambda p, a, c: lean_adjoint(base_velocity_fn, p, a, coefs, exact_kappa=exact_kappa, context=c)
        )(traj, terminal, ctx)
        if mixture is not None:
            log_ratio = mixture_log_ratio(mixture, base_velocity_fn, traj, ctx, coefs, schedule)
            sample_weights = jax.lax.stop_gradient(jax.nn.softmax(lam * rewards + log_ratio))
            ess = 1.0 / (batch_size * jnp.sum(sample_weights**2))
        elif importance_weighting:
            log_ratio = jax.vmap(
                lambda p, c: path_log_weight(field, frozen, base_velocity_fn, p, coefs, schedule, c)
            )(traj, ctx)
            sample_weights = jax.lax.stop_gradient(jax.nn.softmax(lam * rewards + log_ratio))
            ess = 1.0 / (batch_size * jnp.sum(sample_weights**2))
        else:
            sample_weights, ess = None, jnp.ones((), dtype)
        if loss_timesteps is None:
            idx = interior
        else:
            idx = jax.random.permutation(key_t, interior)[:loss_timesteps]
        batch = AdjointMatchingBatch(traj, shard(adjoints, sharding), shard(v_base, sharding), idx,
                                     sample_weights, ctx)
        state, grad_info = inner.step(state, key_t, batch)
        info = AdjointMatchingInfo(
            grad_info.loss,
            jnp.mean(rewards),
            grad_info.grad_norm,
            jnp.mean(jnp.sqrt(sum_event(terminal**2, 1))),
            jnp.sum(bad),
            ess,
        )
        return state, info

    if checked:
        def step(state, key, reward_params=None):
            return run_checked(raw_step, state, key, reward_params)
    else:
        step = raw_step
    return Kernel(init, step)

