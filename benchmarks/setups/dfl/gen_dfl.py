"""The Gen-DFL paper's set-ups: data, sizes, flows, and the pipeline that trains every method on
one data set and scores it (``evaluate``), under one of two labelled protocols.

Protocols (``cfg["protocol"]``):

- ``paper-text``: eq. (9) as the paper writes it, on the Appendix B data (the portfolio with
  1^T w <= 1 as printed, PyEPO's intercept). Evaluation is exact where p(c|x) is Gaussian
  (portfolio, knapsack: closed-form CVaR, w* the exact SOCP solution,
  ``tailjax.dfl.gaussian_regret_reference``) and otherwise on ``eval_samples`` fresh draws of
  the true p(c|x), independent of the ``ref_samples`` draws that chose w* (shortest path,
  energy). Both forms are recorded: ``cvar_of_difference`` (eq. (9)) and
  ``difference_of_cvars``.
- ``paper-code``: the evaluation of the authors' public code: the absolute difference of the
  two CVaRs over |E f(c, w*)| (``abs_difference_of_cvars``), with the evaluation samples drawn
  from a flow fitted on every row (its own key), w* the SAA decision on the same
  ``ref_samples`` draws, PyEPO's knapsack generator (integer values). Deviation, stated: the
  authors' portfolio is PyEPO's variance-capped one (max return s.t. 1^T w = 1,
  w^T Sigma w <= 2.25 mean(Sigma)), which the decision layer cannot express (a quadratic
  constraint); here it is the fully invested CVaR portfolio (1^T w = 1).

``tail_prob`` is the paper's alpha, ``regret_weight`` its beta.

Methods: ``gen_dfl`` (flow initialised from the NLL-trained proxy, then trained on
regret_weight * Regret / mean |E_q f| + NLL, i.e. ``normalize=True``), ``nll_flow`` (that
NLL-only flow: generate-then-optimize without the decision loss), the Pred-DFL baselines
(:mod:`benchmarks.setups.dfl.baselines`) converged and tuned (``tune_baseline``: early stopping
on validation regret, learning rate and linear/MLP predictor chosen on validation; ``diff-dro``
decides by the worst-case CVaR over a moment ambiguity set around its prediction, with the
residual covariance of the training rows, :mod:`tailjax.dfl.baselines.dro`), and the
reference rows that need no learning: ``equal_weights`` (portfolio, 1/d), ``uniform_fraction``
(knapsack, every item at capacity / sum of weights), ``mean_cost`` (the exact decision under
the unconditional mean training cost; the shortest path's data-free row), ``uniform_schedule``
(energy, total / T per period); and where the truth is known the oracles: ``oracle_saa`` (SAA
decision on K_eval samples of the true p(c|x)), ``oracle_exact`` (the reference w* itself: 0
under exact evaluation) and ``true_mean`` (the decision at the true mean). ``gen_dfl_true_q``
(an oracle study, not a method) trains Gen-DFL with the regret under the true p(c|x).

Model selection: ``val_frac`` of the training rows are held out; the NLL flow keeps its
parameters of lowest validation NLL, Gen-DFL those of lowest validation regret under q
(checked every ``eval_every`` steps, the warm start included), the baselines those of lowest
validation regret of their point decisions (Diff-DRO: of its robust decisions). Flow size: 2
affine couplings with log-scales bounded by 0.5 and one hidden layer. Shortest-path costs and
synthetic energy prices are modelled with ``support="positive"``.

The portfolio's budget (measured with the exact w*, 60 rows, seed 1, sigma = 20, 50 assets):
with PyEPO's intercept a = 0.1^(1/deg) (the default) the exact CVaR-optimal w* under
1^T w <= 1 is fully invested on every row at deg 2, 4, 6 and 8 (E f(c, w*) about -0.11,
|E f| >= 0.066), and the knapsack's w* fills its capacity on every row; so paper-text keeps the
printed 1^T w <= 1. Only with the printed a = 0.1 (``paper_intercept=True``) does w* invest
nothing (every row; |E f(c, w*)| ~ 1e-11) and eq. (9) divide by ~0. With 10 assets some rows
invest nothing even with PyEPO's intercept, so paper-text runs at 50 assets. The LPs
(knapsack, shortest path, energy) train with a QPTL term ``LP_REG * ||w||^2`` in the decision
layer (Gen-DFL's and the ``dfl``/``dfl+`` baselines'); every evaluation decision is
unregularised.
"""

from __future__ import annotations

import pathlib
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.setups.dfl.baselines import decide_baseline, train_baseline, tune_baseline
from tailjax.dfl import (
    GenDFLConfig,
    cvar_regret,
    decision,
    fit_gen_dfl,
    fit_proxy,
    gaussian_regret_reference,
    gen_dfl_decisions,
    make_instance,
    make_problem,
    regret_reference,
)
from tailjax.dfl.problems import pyepo_knapsack_instance, qp_oracle
from tailjax.layers import make_polytope
from tailjax.nn import ConditionalFlow

__all__ = ["TAIL_PROB", "LP_REG", "PAPER_TABLE1", "SIZES", "PROTOCOLS", "make_data", "make_flow",
           "decide_gen_dfl", "saa_decisions", "data_free_decisions", "evaluate"]

PROTOCOLS = ("paper-text", "paper-code")
TAIL_PROB = 0.1  # the paper's alpha for training and evaluation unless an experiment varies it
LP_REG = 0.1  # QPTL term of the *training* decision layer for the LPs (evaluation uses reg = 0)
PAPER_TABLE1 = {  # Gen-DFL paper, Table 1 (%): deg 2 / 4 / 6 / 8
    ("portfolio", "gen_dfl"): (3.71, 3.81, 4.31, 3.59),
    ("portfolio", "spo+"): (6.92, 7.23, 7.01, 6.98),
    ("portfolio", "mse"): (16.90, 14.89, 16.02, 16.17),
    ("shortest_path", "gen_dfl"): (None, None, None, 13.36),
    ("shortest_path", "spo+"): (None, None, None, 81.78),
    ("shortest_path", "mse"): (None, None, None, 45.75),
}
SIZES = {
    "small": dict(problems=("portfolio", "knapsack", "shortest_path"), degs=(2, 8), seeds=1,
                  n_train=200, n_test=24, dim=10, K=32, K_eval=64, Kq=64, steps=300, proxy_steps=400,
                  ref_samples=1000, hidden=(16,), layers=2, max_log_scale=0.5,
                  methods=("gen_dfl", "nll_flow", "mse", "spo+"),
                  sigmas=(40, 100), dims=(5, 20), train_sizes=(100, 400), regret_weights=(1.0, 100.0),
                  tail_probs=(0.05, 0.5), eval_tail_probs=(0.05, 0.1, 0.5, 1.0), Ks=(8, 32),
                  is_Ks=(8, 16, 32, 64), is_dims=(2, 10), is_repeats=3, icon_train=200, icon_test=24,
                  eval_samples=2000, baseline_lrs=(1e-2, 1e-1), baseline_predictors=("linear",),
                  baseline_max_epochs=40, baseline_patience=5, budget="equality"),
    "paper": dict(problems=("portfolio", "knapsack", "shortest_path", "energy"), degs=(2, 4, 6, 8),
                  seeds=10, n_train=320, n_test=100, dim=50, K=100, K_eval=100, Kq=100, steps=500,
                  proxy_steps=1000, ref_samples=1000, hidden=(32,), layers=2, max_log_scale=0.5,
                  methods=("gen_dfl", "nll_flow", "mse", "spo+", "nce", "map", "pairwise", "listwise",
                           "dfl", "dfl+", "diff-dro"),
                  sigmas=(40, 60, 80, 100), dims=(10, 25, 50, 100), train_sizes=(160, 320, 640, 1280),
                  regret_weights=(0.1, 1.0, 10.0, 100.0), tail_probs=(0.05, 0.1, 0.25, 0.5, 1.0),
                  eval_tail_probs=(0.05, 0.1, 0.25, 0.5, 1.0), Ks=(100, 200, 500, 1000),
                  is_Ks=(8, 16, 32, 64, 128), is_dims=(2, 10, 50), is_repeats=3, icon_train=None, icon_test=None),
}
_COMMON = dict(  # model selection and evaluation settings shared by both sizes (see evaluate)
    val_frac=0.2, eval_every=10, normalize=True, support={"shortest_path": "positive", "energy": "positive"},
    calibration=True, Kref=256, budget=None, lr=1e-3, proxy_lr=2e-3, protocol="paper-text", eval_samples=10_000,
    baseline_lrs=(1e-3, 1e-2, 1e-1), baseline_predictors=("linear", "mlp"), baseline_max_epochs=200,
    baseline_patience=20,
)
FORMS = {"paper-text": ("cvar_of_difference", "difference_of_cvars"), "paper-code": ("abs_difference_of_cvars",)}
for _size in SIZES.values():
    _size.update({k: v for k, v in _COMMON.items() if k not in _size})
SIZES["paper"]["eval_every"] = 25

FLOW_METHODS = ("gen_dfl", "nll_flow", "gen_dfl_true_q")

decide_gen_dfl = jax.jit(gen_dfl_decisions, static_argnames=("flow", "tail_prob", "num_samples", "importance"))


def make_data(problem, deg, seed, n, dim, sigma=None, protocol="paper-text", budget=None):
    """(instance, x, c) with n rows under ``protocol`` (module docstring): ``paper-code`` makes
    the portfolio fully invested and uses PyEPO's knapsack generator. ``budget``:
    ``"equality"`` (1^T w = 1) or ``"inequality"`` (1^T w <= 1) overrides the protocol's
    portfolio budget."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if problem == "knapsack" and protocol == "paper-code":
        inst = pyepo_knapsack_instance(num_data=n, num_items=dim, deg=deg, seed=seed, reg=LP_REG)
    elif problem == "shortest_path":
        inst = make_instance(problem, num_data=n, deg=deg, noise_width=0.5, seed=seed, reg=LP_REG)
    elif problem == "energy":
        inst = make_instance(problem, num_data=n, deg=deg, seed=seed, reg=LP_REG)
    else:
        size = {"portfolio": "num_assets", "knapsack": "num_items"}[problem]
        reg = LP_REG if problem == "knapsack" else 0.0
        inst = make_instance(problem, num_data=n, deg=deg, noise=float(sigma or 20.0), seed=seed, reg=reg,
                             **{size: dim})
    budget = budget or ("equality" if protocol == "paper-code" else "inequality")
    if budget not in ("equality", "inequality"):
        raise ValueError(f"budget must be 'equality' or 'inequality', got {budget!r}")
    if problem == "portfolio" and budget == "equality":
        d = inst.problem.dim
        poly = make_polytope(jnp.zeros(d), jnp.ones(d), eq_matrix=jnp.ones((1, d)), eq_rhs=jnp.ones(1))
        prob = make_problem(poly, sign=-1.0, quadratic=inst.problem.quadratic)
        inst = inst._replace(problem=prob, oracle=qp_oracle(prob))
    return inst, np.asarray(inst.features, np.float32), np.asarray(inst.costs, np.float32)


def make_flow(cfg, problem, c, x):
    """The conditional flow of a size ``cfg`` for ``problem``'s costs ``c`` and features ``x``."""
    support = cfg.get("support", {}).get(problem, "real")
    return ConditionalFlow(c.shape[1], x.shape[1], num_layers=cfg["layers"], hidden_sizes=cfg["hidden"],
                           support=support, max_log_scale=cfg.get("max_log_scale", 3.0))


@partial(jax.jit, static_argnums=2)
def saa_decisions(problem, samples, tail_prob):
    """SAA decisions (``reg = 0``) on ``samples: (N, K, d)``."""
    return jax.vmap(lambda s: decision(problem, s, tail_prob, reg=0.0))(samples)


def data_free_decisions(name, inst, c_train, n):
    """{row name: (n, d) decisions} of the reference rows that need no learning."""
    prob = inst.problem
    d = prob.dim
    mean_cost = jnp.asarray(np.mean(c_train, axis=0), jnp.result_type(float))
    rows = {"mean_cost": jnp.broadcast_to(inst.oracle(mean_cost), (n, d))}
    if name == "portfolio":
        rows["equal_weights"] = jnp.full((n, d), 1.0 / d)
    elif name == "knapsack":
        weights, capacity = prob.polytope.ineq_matrix[0], prob.polytope.ineq_rhs[0]
        rows["uniform_fraction"] = jnp.full((n, d), jnp.minimum(1.0, capacity / jnp.sum(weights)))
    elif name in ("energy", "icon_energy"):
        rows["uniform_schedule"] = jnp.full((n, d), prob.polytope.eq_rhs[0] / d)
    return rows


def _split(cfg, n_train):
    """(fit rows, validation rows) of the first n_train rows; no validation if val_frac = 0."""
    n_val = int(round(cfg.get("val_frac", 0.0) * n_train))
    return n_train - n_val, n_val


def _references(cfg, inst, model, xte, levels, key, truth_known):
    """{tail_prob: reference} of the protocol: exact where the truth is Gaussian, else sampled
    (fresh evaluation draws under paper-text, in-sample draws of the evaluation flow under
    paper-code)."""
    exact = truth_known and cfg["protocol"] == "paper-text" and hasattr(model, "covariance")
    fresh = cfg.get("eval_samples") if cfg["protocol"] == "paper-text" else None
    if exact:
        return {a: gaussian_regret_reference(inst.problem, model, xte, a) for a in levels}, "exact"
    refs = {a: regret_reference(key, inst.problem, model, xte, a, num_samples=cfg["ref_samples"], eval_samples=fresh)
            for a in levels}
    return refs, f"sampled (w* on {cfg['ref_samples']}, scored on {fresh or 'the same'} draws)"


def evaluate(cfg, inst, x, c, n_train, seed, *, methods, eval_tail_probs=(TAIL_PROB,), model=None,
             model_is_truth=True, tail_prob_train=TAIL_PROB, regret_weight=10.0, K=None, K_eval=None, log=print,
             problem_name=None, info=None, checkpoint_dir=None, run=None):
    """Train the methods on the first ``n_train`` rows; score them on the rest at each level.

    Returns ``({method: {(tail_prob, form): regret %}}, flow, proxy, refs)`` with the forms of
    ``cfg["protocol"]``. A ``val_frac`` share of the training rows is held out for model
    selection; the baselines train on the same fit rows. The data-free rows are always added;
    with the true model known, the oracle rows too. ``model_is_truth=False``: ``model`` is an
    evaluation proxy (the ICON task). Under ``paper-code`` a flow fitted on every row (its own
    key) is the evaluation model. ``info`` (a dict) receives the evaluation kind and the
    baselines' tuning choices and validation curves. ``checkpoint_dir`` and ``run``: the
    training checkpoints of Gen-DFL and the tuned baselines and the description they are
    checked against (:func:`~benchmarks.setups.dfl.baselines.tune_baseline`), so that a cell
    cut short goes on.
    """
    K = K or cfg["K"]
    K_eval = K_eval or cfg["K_eval"]
    protocol = cfg.get("protocol", "paper-text")
    forms = FORMS[protocol]
    n_fit, n_val = _split(cfg, n_train)
    xtr, ctr, xte = x[:n_fit], c[:n_fit], x[n_train:]
    xva, cva = x[n_fit:n_train], c[n_fit:n_train]
    k_ref, k_proxy, k_gen, k_dec, k_base = jax.random.split(jax.random.key(seed), 5)
    flow = make_flow(cfg, problem_name, c, x)
    t0 = time.perf_counter()
    proxy = fit_proxy(k_proxy, xtr, ctr, num_steps=cfg["proxy_steps"], batch_size=64, flow=flow,
                      learning_rate=cfg.get("proxy_lr", 2e-3), validation=(xva, cva) if n_val else None)
    truth_known = model is not None and model_is_truth
    truth = model if truth_known else None
    if protocol == "paper-code":
        model = fit_proxy(jax.random.fold_in(k_proxy, 7), x, c, num_steps=cfg["proxy_steps"], batch_size=64,
                          flow=flow, learning_rate=cfg.get("proxy_lr", 2e-3))
    model = proxy if model is None else model
    refs, kind = _references(cfg, inst, model, xte, eval_tail_probs, k_ref, truth_known and protocol == "paper-text")
    info = {} if info is None else info
    info.update(evaluation=kind, protocol=protocol, K=K, K_eval=K_eval, baselines={})
    out = {}

    def score(name, decide):
        out[name] = {}
        for a in eval_tail_probs:
            w = decide(a)
            for f in forms:
                out[name][(a, f)] = float(cvar_regret(w, refs[a], inst.problem, form=f))

    if any(m in methods for m in FLOW_METHODS):
        trained = {"nll_flow": proxy.params}
        config = GenDFLConfig(num_samples=K, proxy_samples=cfg["Kq"], tail_prob=tail_prob_train,
                              regret_weight=regret_weight, reference_samples=cfg.get("Kref", 256),
                              normalize=cfg.get("normalize", False))
        qs = {"gen_dfl": proxy, "gen_dfl_true_q": truth}
        for name, q in qs.items():
            if name in methods and q is not None:
                path = None if checkpoint_dir is None else pathlib.Path(checkpoint_dir) / f"{name}.ckpt"
                res = fit_gen_dfl(k_gen, flow, inst.problem, q, xtr, ctr, num_steps=cfg["steps"], config=config,
                                  batch_size=32, learning_rate=cfg.get("lr", 1e-3), params=proxy.params,
                                  validation=xva if n_val else None, eval_every=cfg.get("eval_every"),
                                  checkpoint_path=path, run=run)
                trained[name] = res.state.params
                if res.evaluations:
                    steps, scores = zip(*res.evaluations)
                    log(f"    {name}: validation regret {scores[0]:.4g} at the warm start, best "
                        f"{scores[steps.index(res.best_step)]:.4g} at step {res.best_step}")
        for name, params in trained.items():
            if name in methods:
                score(name, lambda a, params=params: decide_gen_dfl(
                    k_dec, flow, params, inst.problem, xte, tail_prob=a, num_samples=K_eval))
    n_te = xte.shape[0]
    for name, w in data_free_decisions(problem_name or inst.name, inst, ctr, n_te).items():
        score(name, lambda a, w=w: w)
    if truth is not None and cfg.get("calibration", True):
        xj = jnp.asarray(xte)
        keys = jax.random.split(jax.random.fold_in(k_dec, 1), xj.shape[0])
        samples = jax.vmap(lambda k, xi: truth.sample(k, xi, K_eval))(keys, xj)
        score("oracle_saa", lambda a: saa_decisions(inst.problem, samples, a))
        if protocol == "paper-text":
            score("oracle_exact", lambda a: jnp.asarray(refs[a].decisions))
        mean = jax.vmap(truth.mean)(xj)
        score("true_mean", lambda a: jax.jit(jax.vmap(inst.oracle))(mean))
    for m in methods:
        if m in FLOW_METHODS:
            continue
        t_m = time.perf_counter()
        if cfg.get("baseline_epochs"):  # the fixed-epoch recipe of the earlier tables
            b = train_baseline(m, k_base, inst, xtr, ctr, epochs=cfg["baseline_epochs"], tail_prob=tail_prob_train)
        else:
            b = tune_baseline(m, k_base, inst, xtr, ctr, (xva, cva), learning_rates=cfg["baseline_lrs"],
                              predictors=cfg["baseline_predictors"], max_epochs=cfg["baseline_max_epochs"],
                              patience=cfg["baseline_patience"], tail_prob=tail_prob_train,
                              checkpoint_dir=checkpoint_dir, run=run)
            info["baselines"][m] = dict(b.choice, seconds=time.perf_counter() - t_m)
        score(m, lambda a, b=b: decide_baseline(b, xte, inst, tail_prob=a, key=k_dec, num_samples=K_eval))
    a0, f0 = eval_tail_probs[0], forms[0]
    log(f"    {time.perf_counter() - t0:6.1f} s  " + "  ".join(
        f"{m}={v[(a0, f0)]:.1f}" + (f"/{v[(a0, forms[1])]:.1f}" if len(forms) > 1 else "") for m, v in out.items()))
    return out, flow, proxy, refs
