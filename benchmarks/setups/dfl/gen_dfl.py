"""The Gen-DFL paper's set-ups: data, sizes, flows, and the pipeline that trains every method on
one data set and scores it (``evaluate``).

Every number is a normalised CVaR regret in % of |E f(c, w*)| over the true p(c|x) (M samples;
w* the SAA decision on the same M samples), in two forms (``tailjax.dfl.cvar_regret``):
``cvar_of_difference`` = eq. (9), and ``difference_of_cvars`` = the CVaR gap (the quantity the
paper authors' public code reports). ``tail_prob`` is the paper's alpha, ``regret_weight`` its
beta.

Methods: ``gen_dfl`` (flow initialised from the NLL-trained proxy, then trained on
regret_weight * Regret / mean |E_q f| + NLL, i.e. ``normalize=True``), ``nll_flow`` (that
NLL-only flow: generate-then-optimize without the decision loss), the Pred-DFL baselines
(:mod:`benchmarks.setups.dfl.baselines`, linear predictors) on the same data, and two
calibration rows where the truth is known: ``oracle_saa`` (SAA decision on K_eval samples of
the true p(c|x): a perfect generative model) and ``true_mean`` (the decision at the true mean:
a perfect point predictor). ``gen_dfl_true_q`` (an oracle study, not a method) trains Gen-DFL
with the regret under the true p(c|x) instead of q.

Model selection: ``val_frac`` of the training rows are held out; the NLL flow keeps its
parameters of lowest validation NLL, Gen-DFL those of lowest validation regret under q
(checked every ``eval_every`` steps, the warm start included). Flow size: 2 affine couplings
with log-scales bounded by 0.5 and one hidden layer (with 4-6 couplings and the bound 3,
validation NLL rises from the first check on and selection returns the untrained flow).
Shortest-path costs and synthetic energy prices are modelled with ``support="positive"``.

Deviation, stated: the portfolio is built *fully invested* (1^T w = 1); with 1^T w <= 1 at
sigma = 20 the CVaR-optimal decision is to invest nothing and eq. (9) divides by ~0. The LPs
(knapsack, shortest path, energy) train with a QPTL term ``LP_REG * ||w||^2`` in the decision
layer (Gen-DFL's and the ``dfl``/``dfl+`` baselines'); every evaluation decision is
unregularised.
"""

from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.setups.dfl.baselines import decide_baseline, train_baseline
from tailjax.dfl import (
    GenDFLConfig,
    cvar_regret,
    decision,
    fit_gen_dfl,
    fit_proxy,
    gen_dfl_decisions,
    make_instance,
    make_problem,
    regret_reference,
)
from tailjax.dfl.problems import qp_oracle
from tailjax.layers import make_polytope
from tailjax.nn import ConditionalFlow

__all__ = ["TAIL_PROB", "LP_REG", "PAPER_TABLE1", "SIZES", "make_data", "make_flow", "decide_gen_dfl",
           "saa_decisions", "evaluate"]

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
                  is_Ks=(8, 16, 32, 64), is_dims=(2, 10), is_repeats=3, icon_train=200, icon_test=24),
    "paper": dict(problems=("portfolio", "knapsack", "shortest_path", "energy"), degs=(2, 4, 6, 8),
                  seeds=10, n_train=320, n_test=100, dim=50, K=100, K_eval=100, Kq=100, steps=500,
                  proxy_steps=1000, ref_samples=1000, hidden=(32,), layers=2, max_log_scale=0.5,
                  methods=("gen_dfl", "nll_flow", "mse", "spo+", "nce", "map", "pairwise", "listwise",
                           "dfl", "dfl+"),
                  sigmas=(40, 60, 80, 100), dims=(10, 25, 50, 100), train_sizes=(160, 320, 640, 1280),
                  regret_weights=(0.1, 1.0, 10.0, 100.0), tail_probs=(0.05, 0.1, 0.25, 0.5, 1.0),
                  eval_tail_probs=(0.05, 0.1, 0.25, 0.5, 1.0), Ks=(8, 16, 32, 64, 100, 200),
                  is_Ks=(8, 16, 32, 64, 128), is_dims=(2, 10, 50), is_repeats=3, icon_train=None, icon_test=None),
}
_COMMON = dict(  # model selection and evaluation settings shared by both sizes (see evaluate)
    val_frac=0.2, eval_every=10, normalize=True, support={"shortest_path": "positive", "energy": "positive"},
    forms=("cvar_of_difference", "difference_of_cvars"), calibration=True,
    Kref=256, lr=1e-3, proxy_lr=2e-3, baseline_epochs=10,
)
for _size in SIZES.values():
    _size.update(_COMMON)
SIZES["paper"]["eval_every"] = 25

FLOW_METHODS = ("gen_dfl", "nll_flow", "gen_dfl_true_q")

decide_gen_dfl = jax.jit(gen_dfl_decisions, static_argnames=("flow", "tail_prob", "num_samples", "importance"))


def make_data(problem, deg, seed, n, dim, sigma=None):
    """(instance, x, c) with n rows; the portfolio made fully invested (module docstring)."""
    if problem == "shortest_path":
        inst = make_instance(problem, num_data=n, deg=deg, noise_width=0.5, seed=seed, reg=LP_REG)
    elif problem == "energy":
        inst = make_instance(problem, num_data=n, deg=deg, seed=seed, reg=LP_REG)
    else:
        size = {"portfolio": "num_assets", "knapsack": "num_items"}[problem]
        reg = LP_REG if problem == "knapsack" else 0.0
        inst = make_instance(problem, num_data=n, deg=deg, noise=float(sigma or 20.0), seed=seed, reg=reg,
                             **{size: dim})
    if problem == "portfolio":
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


def _split(cfg, n_train):
    """(fit rows, validation rows) of the first n_train rows; no validation if val_frac = 0."""
    n_val = int(round(cfg.get("val_frac", 0.0) * n_train))
    return n_train - n_val, n_val


def evaluate(cfg, inst, x, c, n_train, seed, *, methods, eval_tail_probs=(TAIL_PROB,), model=None,
             model_is_truth=True, tail_prob_train=TAIL_PROB, regret_weight=10.0, K=None, log=print,
             problem_name=None):
    """Train the methods on the first ``n_train`` rows; eq. (9) on the rest at each level.

    Returns ``({method: {(tail_prob, form): regret %}}, flow, proxy, refs)`` with ``form`` each
    of ``cfg["forms"]``. A ``val_frac`` share of the training rows is held out for model
    selection; the baselines train on the same fit rows. With the true model known, the
    calibration rows ``oracle_saa`` and ``true_mean`` are added. ``model_is_truth=False``:
    ``model`` is an evaluation proxy (the ICON task), so neither the calibration rows nor
    ``gen_dfl_true_q`` are computed; ``model=None`` scores under the training proxy itself.
    """
    K = K or cfg["K"]
    forms = cfg.get("forms", ("cvar_of_difference",))
    n_fit, n_val = _split(cfg, n_train)
    xtr, ctr, xte = x[:n_fit], c[:n_fit], x[n_train:]
    xva, cva = x[n_fit:n_train], c[n_fit:n_train]
    k_ref, k_proxy, k_gen, k_dec, k_base = jax.random.split(jax.random.key(seed), 5)
    flow = make_flow(cfg, problem_name, c, x)
    t0 = time.perf_counter()
    proxy = fit_proxy(k_proxy, xtr, ctr, num_steps=cfg["proxy_steps"], batch_size=64, flow=flow,
                      learning_rate=cfg.get("proxy_lr", 2e-3), validation=(xva, cva) if n_val else None)
    truth_known = model is not None and model_is_truth
    model = proxy if model is None else model
    refs = {a: regret_reference(k_ref, inst.problem, model, xte, a, num_samples=cfg["ref_samples"])
            for a in eval_tail_probs}
    out = {}

    def score(name, decide):
        out[name] = {(a, f): float(cvar_regret(decide(a), refs[a], inst.problem, form=f))
                     for a in eval_tail_probs for f in forms}

    if any(m in methods for m in FLOW_METHODS):
        trained = {"nll_flow": proxy.params}
        config = GenDFLConfig(num_samples=K, proxy_samples=cfg["Kq"], tail_prob=tail_prob_train,
                              regret_weight=regret_weight, reference_samples=cfg.get("Kref", 256),
                              normalize=cfg.get("normalize", False))
        # gen_dfl: regret under the proxy q (the NLL flow); gen_dfl_true_q (an oracle study, only
        # where the truth is known): regret under the true p(c|x), the distribution it is scored on
        qs = {"gen_dfl": proxy, "gen_dfl_true_q": model if truth_known else None}
        for name, q in qs.items():
            if name in methods and q is not None:
                res = fit_gen_dfl(k_gen, flow, inst.problem, q, xtr, ctr, num_steps=cfg["steps"], config=config,
                                  batch_size=32, learning_rate=cfg.get("lr", 1e-3), params=proxy.params,
                                  validation=xva if n_val else None, eval_every=cfg.get("eval_every"))
                trained[name] = res.state.params
                if res.evaluations:
                    steps, scores = zip(*res.evaluations)
                    log(f"    {name}: validation regret {scores[0]:.4g} at the warm start, best "
                        f"{scores[steps.index(res.best_step)]:.4g} at step {res.best_step}")
        for name, params in trained.items():
            if name in methods:
                score(name, lambda a, params=params: decide_gen_dfl(
                    k_dec, flow, params, inst.problem, xte, tail_prob=a, num_samples=cfg["K_eval"]))
    if truth_known and cfg.get("calibration", True):
        xj = jnp.asarray(xte)
        keys = jax.random.split(jax.random.fold_in(k_dec, 1), xj.shape[0])
        samples = jax.vmap(lambda k, xi: model.sample(k, xi, cfg["K_eval"]))(keys, xj)
        score("oracle_saa", lambda a: saa_decisions(inst.problem, samples, a))
        mean = jax.vmap(model.mean)(xj)
        score("true_mean", lambda a: jax.jit(jax.vmap(inst.oracle))(mean))
    for m in methods:
        if m in FLOW_METHODS:
            continue
        b = train_baseline(m, k_base, inst, xtr, ctr, epochs=cfg.get("baseline_epochs", 10),
                           tail_prob=tail_prob_train)
        score(m, lambda a, b=b: decide_baseline(b, xte, inst, tail_prob=a, key=k_dec))
    a0, f0 = eval_tail_probs[0], forms[0]
    log(f"    {time.perf_counter() - t0:6.1f} s  " + "  ".join(
        f"{m}={v[(a0, f0)]:.1f}" + (f"/{v[(a0, forms[1])]:.1f}" if len(forms) > 1 else "") for m, v in out.items()))
    return out, flow, proxy, refs
