"""TFFT end to end (Algorithm 1), safe by default: Stage 1 with diagnostics, a tail proposal
and an off-policy importance-weighted Stage 2 when the offline sample cannot resolve the
target, and a check of the fine-tuned model against Theorems 4.1-4.2.

Defaults (each option can be forced):

* Stage 1 solves t* on ``num_offline`` pre-trained samples and measures how well they
  represent the target p* (:func:`~tailjax.flows.stage1.tilt_diagnostics`): the effective
  number of samples in p*'s tail beyond t* (``min_tail_ess``, default 100) and the largest
  normalised tilt weight (``max_weight``, default 0.02). Weak diagnostics mean the target's
  tail lies where the pre-trained samples never land (TFFT's Table 4 R-TFFT).
* ``proposal_steps=None`` (auto): when Stage 1 is weak, fine-tune an EXP-FT proposal at the
  pseudo-reward's tail slope (temperature alpha * tail_prob) for ``num_steps`` steps and
  re-solve t* on the stratified importance sample of
  :func:`~tailjax.flows.stage1.tfft_stratified_threshold`; otherwise none.
* ``behaviour_mixture=None`` (auto): with a proposal, Stage 2 is off-policy adjoint matching
  (:mod:`tailjax.flows.behaviour`): its paths come from the fixed mixture
  (1 - m) P_pre + m P_proposal with m = 0.5, each weighted by dP*/dQ, so the mass split
  between distant modes converges to the target's (plain adjoint matching cannot hold it: its
  fixed point is unstable there, and from the pre-trained model it never reaches a mode that
  the pre-trained samples miss). Without a proposal Stage 2 is plain adjoint matching.
* ``anneal_quantile_level=None``: no annealing (True anneals beta from the EXP-FT end over
  the first ``anneal_fraction`` of Stage 2, thresholds solved on the Stage-1 sample that set
  t*, importance weights included).
* ``refine_steps=None``: none (n > 0 adds n on-policy importance-weighted steps at t*).
* After fine-tuning, ``num_check`` samples of the model give the mass beyond t* (above it
  upper, below it lower), reported against 1 - beta or beta (at the optimum t* is the
  beta-quantile of p*).

Weak diagnostics and a tail mass off by more than ``tail_tolerance`` (relative) and three
standard errors raise :class:`TFFTWarning`, or :class:`TFFTDiagnosticError` with
``strict=True`` (a weak Stage 1 raises before any fine-tuning).

Contexts: ``contexts`` is an array (pytree) of m contexts or a sampler ``(key, n) -> (n, ...)``;
the fields take the context last and the reward is ``reward_fn(x, c)``. ``stage1="pooled"``
(default) solves one t* on samples of contexts drawn uniformly: the CVaR of the pooled reward
distribution. ``stage1="per_context"`` (contexts an array) solves one t* per context, each on
``num_offline`` samples of that context: the CVaR of each context's reward distribution.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

from tailjax._checks import check_int, check_open_unit, check_positive
from tailjax.flows._fields import cast_field, draw_contexts, event_shape
from tailjax.flows.finetune import exp_ft, fit_adjoint_matching
from tailjax.flows.girsanov import memoryless_sample_and_log_weight
from tailjax.flows.sde import memoryless_sample
from tailjax.flows.stage1 import TFFTThreshold, check_tfft, tfft_stratified_threshold, tfft_threshold
from tailjax.flows.tfft import quantile_level_annealing, tfft
from tailjax.risk.threshold import tail_prob_of_quantile_level
from tailjax.training import FitResult

__all__ = ["TFFTWarning", "TFFTDiagnosticError", "TFFTDiagnostics", "TFFTResult", "tfft_fine_tune"]


class TFFTWarning(UserWarning):
    """A TFFT diagnostic is poor (see :class:`TFFTDiagnostics`)."""


class TFFTDiagnosticError(RuntimeError):
    """A TFFT diagnostic is poor and ``strict=True``."""


class TFFTDiagnostics(NamedTuple):
    tail_ess: Array  # effective samples in p*'s tail on the Stage-1 sample that set t* ((m,) per context)
    max_weight: Array  # largest normalised tilt weight on that sample
    t_star_se: Array  # bootstrap standard error of t*
    tail_mass: Array  # fraction of fine-tuned samples beyond t* (above upper, below lower)
    tail_mass_se: Array  # its Monte Carlo standard error
    target_tail_mass: float  # 1 - beta (upper) or beta (lower): Theorems 4.1-4.2
    warnings: tuple  # the diagnostics that failed, as messages


class TFFTResult(NamedTuple):
    params: Any  # the fine-tuned parameters (after the refinement, if any)
    t_star: Array  # the threshold of the fixed pseudo-reward ((m,) per context)
    threshold: TFFTThreshold | list  # Stage 1 on pre-trained samples (one per context)
    fit: FitResult  # Stage 2 (its state.params are the parameters before any refinement)
    proposal: FitResult | None = None  # the EXP-FT tail proposal, if one ran
    importance_threshold: TFFTThreshold | list | None = None  # the stratified Stage 1, with a proposal
    refinement: FitResult | None = None  # importance-weighted steps, if any
    diagnostics: TFFTDiagnostics | None = None


def _phase_path(checkpoint_dir, name):
    return None if checkpoint_dir is None else pathlib.Path(checkpoint_dir) / f"{name}.ckpt"


def _flag(messages, strict, message):
    messages.append(message)
    if strict:
        raise TFFTDiagnosticError(message)
    warnings.warn(message, TFFTWarning, stacklevel=3)


def _weak(thresholds, min_tail_ess, max_weight):
    ess = np.array([float(t.tail_ess) for t in thresholds])
    top = np.array([float(t.max_weight) for t in thresholds])
    return bool(np.any(ess < min_tail_ess) or np.any(top > max_weight)), ess, top


def tfft_fine_tune(
    key: Array,
    velocity_fn: Callable[..., Array],
    base_params: Any,
    reward_fn: Callable[..., Array],
    dim: int | tuple[int, ...],
    *,
    quantile_level: float,
    temperature: float = 1.0,
    side: str = "upper",
    num_steps: int = 1000,
    num_offline: int = 10_000,
    optimizer: optax.GradientTransformation | None = None,
    proposal_steps: int | None = None,
    behaviour_mixture: float | None = None,
    anneal_quantile_level: bool | None = None,
    anneal_fraction: float = 0.5,
    refine_steps: int | None = None,
    stratify_level: float = 0.99,
    min_tail_ess: float = 100.0,
    max_weight: float = 0.02,
    tail_tolerance: float = 0.1,
    num_check: int | None = None,
    strict: bool = False,
    contexts: Any = None,
    stage1: str = "pooled",
    base_velocity_fn: Callable[..., Array] | None = None,
    grid_steps: int = 40,
    sample_chunk: int = 8192,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    **adjoint_kwargs: Any,
) -> TFFTResult:
    """TFFT Algorithm 1 end to end for a field ``velocity_fn(params, x, t[, c])`` at ``base_params``.

    Stage 1 samples ``num_offline`` points of the pre-trained model with the memoryless SDE
    on the fine-tune's grid (``grid_steps`` uniform steps) and solves for t*; Stage 2
    fine-tunes a copy of ``base_params`` for ``num_steps`` optimizer steps (Adam 1e-4 by
    default). The options, their automatic defaults (``None``), the diagnostics and the
    contexts are described in the module docstring; ``result.diagnostics`` holds the numbers.

    Args:
      key: PRNG key.
      velocity_fn, base_params: the pre-trained field and its parameters.
      reward_fn: per-sample ``reward_fn(x) -> ()`` (``reward_fn(x, c)`` with contexts).
      dim: data dimension d, or an event shape such as ``(H, W, C)``.
      quantile_level: TFFT's beta in (0, 1); temperature: its alpha > 0; side: "upper"/"lower".
      proposal_steps, behaviour_mixture, anneal_quantile_level, refine_steps: None for the
        defaults above.
      stratify_level: quantile of the pre-trained rewards above which the stratified Stage 1
        takes proposal samples.
      min_tail_ess, max_weight: thresholds of a weak Stage 1.
      tail_tolerance: relative tolerance of the final tail mass around 1 - beta (or beta).
      num_check: samples for the tail-mass check (default ``num_offline``; 0 skips it).
      strict: raise :class:`TFFTDiagnosticError` instead of warning.
      contexts, stage1: see the module docstring.
      base_velocity_fn: the frozen base field (default ``velocity_fn(base_params, ...)``; pass
        it when the fine-tuned field is a residual on a known base).
      sample_chunk: offline samples drawn per compiled call.
      checkpoint_dir: one checkpoint per phase (``proposal.ckpt``, ``stage2.ckpt``,
        ``refine.ckpt``); a rerun with the same arguments resumes where it stopped.
      adjoint_kwargs: go to :func:`~tailjax.flows.adjoint.adjoint_matching` in every phase
        (``batch_size``, ``mesh``, ``remat``, ``compute_dtype``, ...).
    """
    check_tfft(quantile_level, temperature, side)
    check_open_unit(stratify_level, "stratify_level")
    check_positive(tail_tolerance, "tail_tolerance")
    if stage1 not in ("pooled", "per_context"):
        raise ValueError(f"stage1 must be 'pooled' or 'per_context', got {stage1!r}")
    if stage1 == "per_context" and (contexts is None or callable(contexts)):
        raise ValueError("stage1='per_context' needs contexts given as an array of the m contexts")
    num_steps = check_int(num_steps, "num_steps", minimum=1)
    if proposal_steps is not None:
        proposal_steps = check_int(proposal_steps, "proposal_steps", minimum=0)
    if refine_steps is not None:
        refine_steps = check_int(refine_steps, "refine_steps", minimum=0)
    num_offline = check_int(num_offline, "num_offline", minimum=2)
    if num_check is not None:
        num_check = check_int(num_check, "num_check", minimum=0)
    grid_steps = check_int(grid_steps, "grid_steps")  # its range is checked by the sampler
    sample_chunk = check_int(sample_chunk, "sample_chunk", minimum=1)
    shape = event_shape(dim)
    optimizer = optimizer or optax.adam(1e-4)
    num_check = num_offline if num_check is None else num_check
    levels = dict(quantile_level=quantile_level, temperature=temperature, side=side)
    tail_prob = tail_prob_of_quantile_level(quantile_level, side)
    conditional = contexts is not None
    low = cast_field(velocity_fn, adjoint_kwargs.get("compute_dtype"))  # the base in the compute dtype
    if conditional:
        base = base_velocity_fn or (lambda x, t, c: low(base_params, x, t, c))
    else:
        base = base_velocity_fn or (lambda x, t: low(base_params, x, t))
    sde = {"num_steps": grid_steps, **{k: adjoint_kwargs[k] for k in ("ts", "schedule") if k in adjoint_kwargs}}
    groups = [None] if stage1 == "pooled" else list(range(jax.tree_util.tree_leaves(contexts)[0].shape[0]))

    def group_contexts(j, k, n):
        """Contexts of n samples: drawn uniformly (pooled), or all context j."""
        if not conditional:
            return None
        if j is None:
            return draw_contexts(contexts, k, n)
        return jax.tree_util.tree_map(lambda a: jnp.repeat(jnp.asarray(a)[j : j + 1], n, axis=0), contexts)

    def chunked(draw, k, n):
        parts = [draw(jax.random.fold_in(k, i), min(sample_chunk, n - s)) for i, s in enumerate(range(0, n, sample_chunk))]
        return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *parts)

    base_sampler = jax.jit(lambda k, c, n: memoryless_sample(
        k, lambda _, x, t, *cc: base(x, t, *cc), None, n, shape, context=c, **sde), static_argnums=2)

    def base_draw(j):
        def draw(k, n):
            k_c, k_x = jax.random.split(k)
            c = group_contexts(j, k_c, n)
            x = base_sampler(k_x, c, n)
            return x if c is None else (x, c)
        return lambda k, n: chunked(draw, k, n)

    key_offline, key_tune = jax.random.split(key)
    key_prop, key_is, key_refine, key_check = jax.random.split(jax.random.fold_in(key, 1), 4)
    plain = [tfft_threshold(jax.random.fold_in(key_offline, 0 if j is None else j), base_draw(j), reward_fn,
                            num_samples=num_offline, **levels) for j in groups]
    weak, _, _ = _weak(plain, min_tail_ess, max_weight)
    messages: list[str] = []
    n_proposal = (num_steps if weak else 0) if proposal_steps is None else proposal_steps
    if weak and not n_proposal:
        _flag(messages, strict, _stage1_message(plain, "pre-trained", min_tail_ess, max_weight))
    kw = dict(adjoint_kwargs, contexts=contexts) if conditional else dict(adjoint_kwargs)
    config = {"method": "tfft", **levels, "num_offline": num_offline, "grid_steps": grid_steps, "stage1": stage1,
              "event_shape": list(shape),
              "adjoint": {k: (str(v) if k in ("compute_dtype", "dtype") else v)
                          for k, v in adjoint_kwargs.items() if k != "mesh"}}

    proposal = importance = refinement = None
    final = plain
    if n_proposal:
        prop_kernel = exp_ft(velocity_fn, base, reward_fn, optimizer, shape, temperature=temperature * tail_prob,
                             num_steps=grid_steps, **kw)
        proposal = fit_adjoint_matching(
            key_prop, prop_kernel, base_params, num_steps=n_proposal,
            checkpoint_path=_phase_path(checkpoint_dir, "proposal"), config={**config, "phase": "proposal"},
            progress=progress, description="TFFT proposal",
        )
        prop_sampler = jax.jit(lambda k, c, n: memoryless_sample_and_log_weight(
            k, velocity_fn, proposal.state.params, base, n, shape, context=c, **sde), static_argnums=2)

        def proposal_draw(j):
            def draw(k, n):
                k_c, k_x = jax.random.split(k)
                c = group_contexts(j, k_c, n)
                x, logw = prop_sampler(k_x, c, n)
                return (x if c is None else (x, c)), logw
            return lambda k, n: chunked(draw, k, n)

        importance = [tfft_stratified_threshold(
            jax.random.fold_in(key_is, 0 if j is None else j), base_draw(j), proposal_draw(j), reward_fn,
            num_samples=num_offline, stratify_level=stratify_level, **levels) for j in groups]
        final = importance
        if _weak(importance, min_tail_ess, max_weight)[0]:
            _flag(messages, strict, _stage1_message(importance, "stratified importance", min_tail_ess, max_weight))

    t_star = jnp.stack([th.t_star for th in final]) if stage1 == "per_context" else final[0].t_star
    mix = (0.5 if n_proposal else 0.0) if behaviour_mixture is None else float(behaviour_mixture)
    if not 0.0 <= mix < 1.0 or (mix and not n_proposal):
        raise ValueError(f"behaviour_mixture must lie in [0, 1) and needs a proposal, got {behaviour_mixture}")
    anneal = False if anneal_quantile_level is None else bool(anneal_quantile_level)
    n_refine = 0 if refine_steps is None else refine_steps
    if mix:
        prop_params = proposal.state.params
        if conditional:
            prop_field = lambda x, t, c: velocity_fn(prop_params, x, t, c)
        else:
            prop_field = lambda x, t: velocity_fn(prop_params, x, t)
        kw = {**kw, "behaviour_fields": [None, prop_field], "behaviour_probs": [1.0 - mix, mix]}
        config = {**config, "behaviour_mixture": mix}
    if anneal:
        schedules = [quantile_level_annealing(th.rewards, quantile_level, temperature, side, num_steps,
                                              anneal_fraction=anneal_fraction, weights=th.weights) for th in final]
        betas = schedules[0][0]
        t_path = np.stack([s[1] for s in schedules], axis=1) if stage1 == "per_context" else schedules[0][1]
        kernel = tfft(velocity_fn, base, reward_fn, optimizer, shape, num_steps=grid_steps, **levels, **kw,
                      example_reward_params=(jnp.asarray(quantile_level), jnp.asarray(t_path[0])))
        reward_params = lambda i: (betas[i], t_path[i])
        stage_config = {**config, "phase": "stage2", "annealed": True, "anneal_fraction": anneal_fraction,
                        "t_star": np.asarray(t_path[-1]).tolist()}
    else:
        kernel = tfft(velocity_fn, base, reward_fn, optimizer, shape, t_star=t_star, num_steps=grid_steps,
                      **levels, **kw)
        reward_params = None
        stage_config = {**config, "phase": "stage2", "t_star": np.asarray(t_star).tolist()}
    result = fit_adjoint_matching(
        key_tune, kernel, base_params, num_steps=num_steps, reward_params=reward_params,
        checkpoint_path=_phase_path(checkpoint_dir, "stage2"), config=stage_config, progress=progress,
        description=f"TFFT ({side}, beta={quantile_level})",
    )
    params = result.state.params
    if n_refine:
        on_policy = {k: v for k, v in kw.items() if k not in ("behaviour_fields", "behaviour_probs")}
        weighted = tfft(velocity_fn, base, reward_fn, optimizer, shape, t_star=t_star, num_steps=grid_steps,
                        **levels, **{**on_policy, "importance_weighting": True})
        refinement = fit_adjoint_matching(
            key_refine, weighted, params, num_steps=n_refine,
            checkpoint_path=_phase_path(checkpoint_dir, "refine"), progress=progress,
            config={**config, "phase": "refine", "t_star": np.asarray(t_star).tolist()},
            description="TFFT refinement",
        )
        params = refinement.state.params

    mass, mass_se = _tail_mass(key_check, velocity_fn, params, reward_fn, shape, t_star, side, num_check, sde,
                               contexts if conditional else None, stage1, sample_chunk, chunked)
    if num_check:
        off = np.abs(mass - tail_prob)
        if np.any((off > tail_tolerance * tail_prob) & (off > 3.0 * mass_se)):
            where = "above" if side == "upper" else "below"
            _flag(messages, strict, f"the fine-tuned model has {np.round(mass, 4).tolist()} of its mass {where} t* "
                  f"(+- {np.round(mass_se, 4).tolist()}), where Theorems 4.1-4.2 require {tail_prob:.4g}: it has not "
                  "reached the target (more steps, a proposal, or refine_steps)")
    pick = lambda f: jnp.stack([f(th) for th in final]) if stage1 == "per_context" else f(final[0])
    diagnostics = TFFTDiagnostics(pick(lambda th: th.tail_ess), pick(lambda th: th.max_weight),
                                  pick(lambda th: th.t_star_se), jnp.asarray(mass), jnp.asarray(mass_se),
                                  float(tail_prob), tuple(messages))
    unwrap = (lambda ths: ths) if stage1 == "per_context" else (lambda ths: None if ths is None else ths[0])
    return TFFTResult(params, t_star, unwrap(plain), result, proposal, unwrap(importance), refinement, diagnostics)


def _stage1_message(thresholds, what, min_tail_ess, max_weight):
    _, ess, top = _weak(thresholds, min_tail_ess, max_weight)
    return (f"TFFT Stage 1 on the {what} sample is weak: {np.round(ess, 1).tolist()} effective samples in the "
            f"target's tail (want >= {min_tail_ess}) and a largest tilt weight of {np.round(top, 4).tolist()} "
            f"(want <= {max_weight}); t* is not resolved (more offline samples, or proposal_steps)")


def _tail_mass(key, velocity_fn, params, reward_fn, shape, t_star, side, n, sde, contexts, stage1, sample_chunk,
               chunked):
    """Fraction of n model samples beyond t* ((m,) per context) and its standard error."""
    if not n:
        return np.full(np.shape(t_star), np.nan), np.full(np.shape(t_star), np.nan)
    sampler = jax.jit(lambda k, c, m: memoryless_sample(k, velocity_fn, params, m, shape, context=c, **sde),
                      static_argnums=2)
    if contexts is None:
        x = chunked(lambda k, m: sampler(k, None, m), key, n)
        r = np.asarray(jax.jit(jax.vmap(reward_fn))(x))
        groups, t = np.zeros(n, int), np.atleast_1d(np.asarray(t_star))
    else:
        m_ctx = jax.tree_util.tree_leaves(contexts)[0].shape[0] if not callable(contexts) else 1
        if stage1 == "per_context":
            idx = np.arange(n) % m_ctx
            ctx = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[idx], contexts)
        else:
            idx, ctx = np.zeros(n, int), draw_contexts(contexts, jax.random.fold_in(key, 1), n)

        starts = range(0, n, sample_chunk)
        xs = [sampler(jax.random.fold_in(key, i), jax.tree_util.tree_map(lambda a: a[s:s + sample_chunk], ctx),
                      min(sample_chunk, n - s)) for i, s in enumerate(starts)]
        x, c = jnp.concatenate(xs), ctx
        r = np.asarray(jax.jit(jax.vmap(reward_fn))(x, c))
        groups, t = idx, np.atleast_1d(np.asarray(t_star))
    beyond = r > t[groups] if side == "upper" else r < t[groups]
    counts = np.bincount(groups, minlength=t.size).astype(float)
    mass = np.bincount(groups, weights=beyond.astype(float), minlength=t.size) / counts
    se = np.sqrt(mass * (1.0 - mass) / counts)
    if np.ndim(t_star) == 0:
        return mass[0], se[0]
    return mass, se
