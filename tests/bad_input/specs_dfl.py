"""Bad-input specs (see spec.py) for the public API of the dfl area.

Skipped (nothing to probe):
- dfl.DecisionProblem, ProblemInstance, GenDFLConfig, GenDFLAux, RegretReference,
  GaussianReference, DFLBatch, BaselineState, Proxy: plain containers (GenDFLConfig's fields are
  probed through the functions that read it).
- dfl.nll_kernel: builds a kernel from a module and an optimiser (no data, no scalar).
- dfl.make_instance: its constructors' scalars belong to dfl.problems (not this area's list).
- parallel.sample_mesh: takes only a device list.
- parallel.sharded_var_cvar: covered in specs.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from tailjax import dfl, layers, parallel, training
from tailjax.dfl.problems import portfolio_instance
from tailjax.nn import ConditionalFlow
from tests.bad_input.spec import Kind, Spec, choice, count, level, positive, samples

NAN = float("nan")
KEY = jax.random.PRNGKey(0)
D, P, N = 3, 2, 8
INSTANCE = portfolio_instance(num_data=N, num_features=P, num_assets=D)
PROBLEM = INSTANCE.problem
POLY = PROBLEM.polytope
FLOW = ConditionalFlow(D, P, num_layers=2, hidden_sizes=(4,))
XS = jnp.asarray(INSTANCE.features)[:4]
CS = jnp.asarray(INSTANCE.costs)[:4]
PARAMS = dfl.init_flow(KEY, FLOW, XS, CS)
PROXY = dfl.Proxy(flow=FLOW, params=PARAMS)
W_Q = jnp.full((4, D), 1.0 / D)
SMALL = dfl.GenDFLConfig(num_samples=4, proxy_samples=4, pilot_samples=4, reference_samples=4,
                         iterations=20, tail_prob=0.5)
CONFIG_KINDS = {"tail_prob": level(closed_right=True), "num_samples": count(1), "proxy_samples": count(1),
                "regret_weight": positive(allow_zero=True), "nll_weight": positive(allow_zero=True)}
CONFIG_VALID = {"tail_prob": 0.5, "num_samples": 4, "proxy_samples": 4, "regret_weight": 10.0, "nll_weight": 1.0}


def concrete(kinds):
    """The kinds probed with concrete values only: a traced probe of a flow sampled into an
    interior-point solve compiles for ~10 s, too slow for the fast suite."""
    return {k: Kind(v.bad, traced=False) for k, v in kinds.items()}


def _config(a):
    return SMALL._replace(**{k: a[k] for k in CONFIG_VALID if k in a})


def _problem_specs():
    return [
        Spec("dfl.make_problem", lambda **a: dfl.make_problem(POLY, reg=a["reg"]).reg,
             {"reg": 0.1}, {"reg": positive(allow_zero=True)}, jittable=False),
        Spec("dfl.point_decision_of",
             lambda **a: dfl.point_decision_of(PROBLEM, a["c"], reg=a["reg"], iterations=a["iterations"]),
             {"c": CS[0], "reg": 0.1, "iterations": 30},
             {"c": samples(batched=False), "reg": positive(allow_zero=True), "iterations": count(1)}),
    ]


def _metric_specs():
    ref = dfl.regret_reference(KEY, PROBLEM, INSTANCE.model, XS[:2], 0.5, num_samples=8, iterations=20)
    gref = dfl.gaussian_regret_reference(PROBLEM, INSTANCE.model, XS[:2], 0.5, root_steps=4, iterations=20)
    decisions = jnp.full((2, D), 1.0 / D)
    forms = choice("cvar_of_difference", "difference_of_cvars", "abs_difference_of_cvars")
    return [
        Spec("dfl.regret_reference",
             lambda **a: dfl.regret_reference(KEY, PROBLEM, INSTANCE.model, a["features"], a["tail_prob"],
                                              num_samples=a["num_samples"], eval_samples=a["eval_samples"],
                                              chunk_size=a["chunk_size"], iterations=a["iterations"]).decisions,
             {"features": XS[:2], "tail_prob": 0.5, "num_samples": 8, "eval_samples": 8, "chunk_size": 2,
              "iterations": 20},
             {"features": samples(), "tail_prob": level(closed_right=True), "num_samples": count(1),
              "eval_samples": count(1), "chunk_size": count(1), "iterations": count(1)}, jittable=False),
        Spec("dfl.gaussian_regret_reference",
             lambda **a: dfl.gaussian_regret_reference(PROBLEM, INSTANCE.model, a["features"], a["tail_prob"],
                                                       root_steps=a["root_steps"],
                                                       iterations=a["iterations"]).decisions,
             {"features": XS[:2], "tail_prob": 0.5, "root_steps": 4, "iterations": 20},
             {"features": samples(), "tail_prob": level(closed_right=True), "root_steps": count(1),
              "iterations": count(1)}, jittable=False),
        Spec("dfl.cvar_regret",
             lambda **a: dfl.cvar_regret(a["decisions"], ref, PROBLEM, form=a["form"]),
             {"decisions": decisions, "form": "cvar_of_difference"}, {"decisions": samples(), "form": forms}),
        Spec("dfl.cvar_regret[gaussian]",
             lambda **a: dfl.cvar_regret(a["decisions"], gref, PROBLEM, form=a["form"]),
             {"decisions": decisions, "form": "cvar_of_difference"}, {"decisions": samples(), "form": forms},
             jittable=False),
        Spec("dfl.normalized_regret",
             lambda **a: dfl.normalized_regret(a["decisions"], a["costs"], PROBLEM, INSTANCE.oracle),
             {"decisions": jnp.full((2, D), 1.0 / D), "costs": CS[:2]},
             {"decisions": samples(), "costs": samples()}),
    ]


def _proxy_specs():
    fit_kinds = {"x": samples(), "c": samples(), "num_steps": count(0), "batch_size": count(1),
                 "learning_rate": positive(allow_zero=True)}
    fit_valid = {"x": XS, "c": CS, "num_steps": 2, "batch_size": 2, "learning_rate": 1e-3}
    return [
        Spec("dfl.nll_loss", lambda **a: dfl.nll_loss(PARAMS, (a["x"], a["c"]), flow=FLOW)[0],
             {"x": XS, "c": CS}, {"x": samples(), "c": samples()}),
        Spec("dfl.init_flow", lambda **a: dfl.init_flow(KEY, FLOW, a["x"], a["c"]),
             {"x": XS, "c": CS}, {"x": samples(), "c": samples()}, jittable=False),
        Spec("dfl.fit_nll",
             lambda **a: dfl.fit_nll(KEY, FLOW, a["x"], a["c"], num_steps=a["num_steps"],
                                     batch_size=a["batch_size"], learning_rate=a["learning_rate"],
                                     params=PARAMS).state.params,
             fit_valid, fit_kinds, jittable=False),
        Spec("dfl.fit_proxy",
             lambda **a: dfl.fit_proxy(KEY, a["x"], a["c"], num_steps=a["num_steps"], batch_size=a["batch_size"],
                                       learning_rate=a["learning_rate"], flow=FLOW).params,
             fit_valid, fit_kinds, jittable=False),
    ]


def _gen_dfl_specs():
    one = {"tail_prob": level(closed_right=True), "num_samples": count(1), "reg": positive(allow_zero=True)}
    one_valid = {"tail_prob": 0.5, "num_samples": 4, "reg": 0.1}
    regret = functools.partial(dfl.gen_dfl_regret, flow=FLOW, problem=PROBLEM, proxy=PROXY)
    mean_regret = functools.partial(dfl.gen_dfl_mean_regret, flow=FLOW, problem=PROBLEM, proxy=PROXY)
    loss = functools.partial(dfl.gen_dfl_loss, flow=FLOW, problem=PROBLEM, proxy=PROXY)
    return [
        Spec("dfl.sample_decision",
             lambda **a: dfl.sample_decision(KEY, FLOW, PARAMS, PROBLEM, a["x"], a["tail_prob"], a["num_samples"],
                                             importance=True, pilot_samples=a["pilot_samples"], reg=a["reg"],
                                             iterations=a["iterations"]),
             {"x": XS[0], **one_valid, "pilot_samples": 4, "iterations": 20},
             concrete({"x": samples(batched=False), **one, "pilot_samples": count(1), "iterations": count(1)})),
        Spec("dfl.is_samples",
             lambda **a: dfl.is_samples(KEY, FLOW, PARAMS, PROBLEM, a["x"], a["tail_prob"], a["num_samples"],
                                        pilot_samples=a["pilot_samples"], reg=a["reg"], iterations=20),
             {"x": XS[0], **one_valid, "pilot_samples": 4},
             concrete({"x": samples(batched=False), **one, "pilot_samples": count(1)})),
        Spec("dfl.is_decision",
             lambda **a: dfl.is_decision(KEY, FLOW, PARAMS, PROBLEM, a["x"], a["tail_prob"], a["num_samples"],
                                         pilot_samples=a["pilot_samples"], reg=a["reg"], iterations=20),
             {"x": XS[0], **one_valid, "pilot_samples": 4},
             concrete({"x": samples(batched=False), **one, "pilot_samples": count(1)})),
        Spec("dfl.tail_shift", lambda **a: dfl.tail_shift(a["tail_prob"]),
             {"tail_prob": 0.1}, {"tail_prob": level(closed_right=True)}),
        Spec("dfl.proxy_decisions",
             lambda **a: dfl.proxy_decisions(KEY, PROXY, PROBLEM, a["x"], a["tail_prob"], a["num_samples"],
                                             reg=a["reg"], batch_size=a["batch_size"]),
             {"x": XS[:3], **one_valid, "batch_size": 2},
             concrete({"x": samples(nan_ok=True), **one, "batch_size": count(1)})),  # rows are independent
        Spec("dfl.gen_dfl_decisions",
             lambda **a: dfl.gen_dfl_decisions(KEY, FLOW, PARAMS, PROBLEM, a["x"], a["tail_prob"], a["num_samples"],
                                               reg=a["reg"], batch_size=a["batch_size"]),
             {"x": XS[:3], **one_valid, "batch_size": 2},
             concrete({"x": samples(nan_ok=True), **one, "batch_size": count(1)})),  # rows are independent
        Spec("dfl.gen_dfl_regret",
             lambda **a: regret(PARAMS, KEY, a["x"], W_Q[0], config=_config(a)),
             {"x": XS[0], **CONFIG_VALID}, concrete({"x": samples(batched=False), **CONFIG_KINDS})),
        Spec("dfl.gen_dfl_mean_regret",
             lambda **a: mean_regret(PARAMS, KEY, a["x"], W_Q, config=_config(a)),
             {"x": XS, **CONFIG_VALID}, concrete({"x": samples(), **CONFIG_KINDS})),
        Spec("dfl.gen_dfl_loss",
             lambda **a: loss(PARAMS, (a["x"], a["c"], W_Q), KEY, config=_config(a)),
             {"x": XS, "c": CS, **CONFIG_VALID},
             {**concrete({"x": samples(), "c": samples(), **CONFIG_KINDS}),
              # the weights are documented as traceable
              "regret_weight": positive(allow_zero=True), "nll_weight": positive(allow_zero=True)}),
        Spec("dfl.gen_dfl",
             lambda **a: dfl.gen_dfl(FLOW, PROBLEM, PROXY, _config(a), optax.sgd(0.1)).init(PARAMS),
             CONFIG_VALID, CONFIG_KINDS, jittable=False),
        Spec("dfl.fit_gen_dfl",
             lambda **a: dfl.fit_gen_dfl(KEY, FLOW, PROBLEM, PROXY, a["x"], a["c"], num_steps=a["num_steps"],
                                         config=_config(a), batch_size=a["batch_size"],
                                         learning_rate=a["learning_rate"], params=PARAMS,
                                         w_q=W_Q).state.params,
             {"x": XS, "c": CS, "num_steps": 1, "batch_size": 2, "learning_rate": 1e-3, **CONFIG_VALID},
             {"x": samples(), "c": samples(), "num_steps": count(0), "batch_size": count(1),
              "learning_rate": positive(allow_zero=True), **CONFIG_KINDS}, jittable=False),
    ]


def _baseline_specs():
    predictor = lambda params, x: x @ params  # noqa: E731
    theta = jnp.ones((P, D))
    sols = jnp.full((4, D), 1.0 / D)
    batch = lambda a: dfl.DFLBatch(XS, a.get("costs", CS), sols, sols)  # noqa: E731
    common = {"apply_fn": predictor, "problem": PROBLEM, "oracle": INSTANCE.oracle}
    costs = {"costs": samples()}
    specs = [
        Spec(f"dfl.{fn.__name__}", lambda fn=fn, **a: fn(theta, batch(a), KEY, **common)[0], {"costs": CS}, costs)
        for fn in (dfl.mse_loss, dfl.spo_plus_loss, dfl.qptl_loss)
    ]
    exp_link = lambda params, x: jnp.exp(x @ params)  # noqa: E731
    specs.append(Spec("dfl.log_mse_loss",
                      lambda **a: dfl.log_mse_loss(theta, batch(a), KEY, **{**common, "apply_fn": exp_link})[0],
                      {"costs": jnp.abs(CS) + 0.1}, costs))  # the instance's costs are not all positive
    specs += [
        Spec(f"dfl.{fn.__name__}",
             lambda fn=fn, **a: fn(theta, batch(a), KEY, pool_size=a["pool_size"], **common)[0],
             {"costs": CS, "pool_size": 3}, {**costs, "pool_size": count(1)})
        for fn in (dfl.nce_loss, dfl.contrastive_map_loss)
    ]
    specs += [
        Spec("dfl.pairwise_ltr_loss",
             lambda **a: dfl.pairwise_ltr_loss(theta, batch(a), KEY, pool_size=a["pool_size"], margin=a["margin"],
                                               **common)[0],
             {"costs": CS, "pool_size": 3, "margin": 0.1},
             {**costs, "pool_size": count(1), "margin": positive(allow_zero=True)}),
        Spec("dfl.listwise_ltr_loss",
             lambda **a: dfl.listwise_ltr_loss(theta, batch(a), KEY, pool_size=a["pool_size"],
                                               temperature=a["temperature"], **common)[0],
             {"costs": CS, "pool_size": 3, "temperature": 1.0},
             {**costs, "pool_size": count(1), "temperature": positive()}),
        Spec("dfl.dfl_plus_loss",
             lambda **a: dfl.dfl_plus_loss(theta, batch(a), KEY, sigma=a["sigma"], tail_prob=a["tail_prob"],
                                           num_samples=a["num_samples"], **common)[0],
             {"costs": CS, "sigma": 0.1, "tail_prob": 0.5, "num_samples": 4},
             {**concrete({**costs, "tail_prob": level(closed_right=True), "num_samples": count(1)}),
              "sigma": positive(allow_zero=True)}),
        Spec("dfl.baseline_kernel",
             lambda **a: dfl.baseline_kernel(lambda p, b, k: (jnp.sum(p), None), optax.sgd(0.1),
                                             apply_fn=predictor, oracle=INSTANCE.oracle,
                                             solve_ratio=a["solve_ratio"]).init(theta, sols),
             {"solve_ratio": 0.5}, {"solve_ratio": level(closed_left=True, closed_right=True)}, jittable=False),
        Spec("dfl.dfl_plus_sigma", lambda **a: dfl.dfl_plus_sigma(a["costs"]),
             {"costs": CS}, {"costs": samples()}, jittable=False),
    ]
    linear = _linear_predictor()
    specs += [
        Spec("dfl.fit_baseline",
             lambda **a: dfl.fit_baseline(KEY, linear, INSTANCE, a["features"], a["costs"], loss=dfl.mse_loss,
                                          num_steps=a["num_steps"], batch_size=a["batch_size"],
                                          learning_rate=a["learning_rate"], solve_ratio=a["solve_ratio"],
                                          solutions=sols).state.params,
             {"features": XS, "costs": CS, "num_steps": 1, "batch_size": 2, "learning_rate": 1e-2,
              "solve_ratio": 0.0},
             {"features": samples(), "costs": samples(), "num_steps": count(0), "batch_size": count(1),
              "learning_rate": positive(allow_zero=True), "solve_ratio": level(closed_left=True, closed_right=True)},
             jittable=False),
        Spec("dfl.baseline_decisions",
             lambda **a: dfl.baseline_decisions(linear, LINEAR_PARAMS, a["features"], INSTANCE, sigma=a["sigma"],
                                                tail_prob=a["tail_prob"], num_samples=a["num_samples"]),
             {"features": XS[:2], "sigma": 0.1, "tail_prob": 0.5, "num_samples": 4},
             # a NaN feature row gives NaN for that row's decision only
             {"features": samples(nan_ok=True), "sigma": positive(allow_zero=True), "tail_prob": level(closed_right=True),
              "num_samples": count(1)}, jittable=False),
    ]
    return specs


def _dro_baseline_specs():
    predictor = lambda params, x: x @ params  # noqa: E731
    theta = jnp.ones((P, D))
    sols = jnp.full((4, D), 1.0 / D)
    cov = jnp.eye(D) * 0.1 + 0.01
    batch = lambda a: dfl.DFLBatch(XS, a.get("costs", CS), sols)  # noqa: E731
    fixed = lambda kinds: {k: Kind(v.bad, traced=False) for k, v in kinds.items()}  # noqa: E731
    dro_kinds = fixed({"tail_prob": level(closed_right=True), "radius": positive(allow_zero=True)})
    return [
        Spec("dfl.kappa_decision",
             lambda **a: dfl.kappa_decision(PROBLEM, a["mean"], cov, a["kappa"], root_steps=a["root_steps"],
                                            root_tol=a["root_tol"]),
             {"mean": CS[0], "kappa": 1.0, "root_steps": 20, "root_tol": 1e-10},
             {"mean": samples(batched=False),
              **fixed({"kappa": positive(allow_zero=True), "root_steps": count(1), "root_tol": positive()})}),
        Spec("dfl.worst_case_cvar_multiplier",
             lambda **a: dfl.worst_case_cvar_multiplier(a["tail_prob"], a["radius"]),
             {"tail_prob": 0.2, "radius": 0.5}, dro_kinds, jittable=False),
        Spec("dfl.moment_dro_decision",
             lambda **a: dfl.moment_dro_decision(PROBLEM, a["c_hat"], cov, a["tail_prob"], radius=a["radius"],
                                                 root_steps=20),
             {"c_hat": CS[0], "tail_prob": 0.2, "radius": 0.5}, {"c_hat": samples(batched=False), **dro_kinds}),
        Spec("dfl.diff_dro_loss",
             lambda **a: dfl.diff_dro_loss(theta, batch(a), KEY, apply_fn=predictor, problem=PROBLEM, cov=cov,
                                           tail_prob=a["tail_prob"], radius=a["radius"], root_steps=20)[0],
             {"costs": CS, "tail_prob": 0.2, "radius": 0.5}, {"costs": samples(), **dro_kinds}),
        Spec("dfl.residual_covariance",
             lambda **a: dfl.residual_covariance(a["features"], a["costs"], shrinkage=a["shrinkage"]),
             {"features": jnp.asarray(INSTANCE.features), "costs": jnp.asarray(INSTANCE.costs), "shrinkage": 0.1},
             {"features": samples(), "costs": samples(), "shrinkage": level(closed_left=True, closed_right=True)},
             jittable=False),
    ]


def _linear_predictor():
    from tailjax.nn import LinearPredictor
    return LinearPredictor(D)


LINEAR_PARAMS = _linear_predictor().init(KEY, XS)


def _parallel_specs():
    return [
        Spec("parallel.shard_samples", lambda **a: parallel.shard_samples(a["x"]),
             {"x": jnp.arange(4.0)}, {"x": samples(nan_ok=True)}),  # extra axes are admissible: axis 0 is split
        Spec("parallel.global_statistic",
             lambda **a: parallel.global_statistic(jnp.sum, a["arrays"], reduce=a["reduce"]),
             {"arrays": jnp.arange(4.0), "reduce": "sum"},
             {"arrays": samples(), "reduce": choice("sum", "mean", "max", "min")}),
        Spec("parallel.sharded_cvar", lambda **a: parallel.sharded_cvar(a["samples"], a["tail_prob"]),
             {"samples": jnp.arange(8.0), "tail_prob": 0.25},
             {"samples": samples(batched=False), "tail_prob": level(closed_right=True)}),
    ]


def _layers_specs():
    A, b, G, h = layers.polytope_constraints(POLY)
    Q = 0.1 * jnp.eye(D)
    lin = jnp.asarray([-1.0, 0.5, 0.2])
    # x <= -1 and -x <= -1: no feasible point, the solver cannot converge
    rhs = Kind({**samples(batched=False).bad, "infeasible": lambda h: jnp.full_like(h, -1.0)})
    solver = {"iterations": count(1), "tol": Kind(positive().bad, traced=False),  # tol is static
              "on_failure": choice("nan", "raise", "ignore")}
    return [
        Spec("layers.check_feasible",
             lambda **a: layers.check_feasible(POLY._replace(lower=a["lower"]), tol=a["tol"]),
             {"lower": POLY.lower, "tol": 1e-7}, {"lower": samples(batched=False), "tol": positive()},
             jittable=False),
        Spec("layers.polytope_constraints", lambda **a: layers.polytope_constraints(POLY._replace(upper=a["upper"])),
             {"upper": POLY.upper}, {"upper": samples(batched=False, nan_ok=True)}),
        Spec("layers.solve_qp",
             lambda **a: layers.solve_qp(a["quad"], a["lin"], A, b, G, a["ineq_rhs"], iterations=a["iterations"],
                                         tol=a["tol"], on_failure=a["on_failure"]),
             {"quad": Q, "lin": lin, "ineq_rhs": h, "iterations": 30, "tol": 1e-5, "on_failure": "nan"},
             {"quad": samples(), "lin": samples(batched=False), "ineq_rhs": rhs, **solver}),
        Spec("layers.solve_lp",
             lambda **a: layers.solve_lp(a["lin"], None, None, G, a["ineq_rhs"], iterations=a["iterations"],
                                         tol=a["tol"], on_failure=a["on_failure"]),
             {"lin": lin, "ineq_rhs": h, "iterations": 30, "tol": 1e-5, "on_failure": "nan"},
             {"lin": samples(batched=False), "ineq_rhs": rhs, **solver}),
        Spec("layers.grid_shortest_path", lambda **a: layers.grid_shortest_path(a["cost"], a["grid"]),
             {"cost": jnp.linspace(0.1, 1.0, 12), "grid": (3, 3)},
             {"cost": samples(batched=False),
              "grid": Kind({"zero rows": (0, 3), "negative": (-1, 3), "one node": (1, 1)}, traced=False)}),
    ]


def _training_specs():
    loss = lambda p, batch, key: (jnp.mean((batch - p) ** 2), {})  # noqa: E731

    def step(**a):
        kernel = training.gradient_kernel(a["loss"], a["optimizer"])
        return kernel.step(kernel.init(jnp.zeros(())), KEY, a["batch"])[0].params

    nan_batch = Kind({"nan entry": lambda v: v.at[1].set(NAN)})
    not_callable = Kind({"not callable": 1.0}, traced=False)
    return [Spec("training.gradient_kernel", step,
                 {"loss": loss, "optimizer": optax.sgd(0.1), "batch": jnp.arange(4.0)},
                 {"batch": nan_batch, "loss": not_callable, "optimizer": not_callable})]


SPECS: list = (_problem_specs() + _metric_specs() + _proxy_specs() + _gen_dfl_specs() + _baseline_specs()
               + _dro_baseline_specs()
               + _parallel_specs() + _layers_specs() + _training_specs())
