"""Bad-input specs (see spec.py) for the public API of the importance area: tailjax.importance
and tailjax.stochopt (is_var_cvar, is_objective_from_losses, structuring_scale,
self_structuring_transform, is_tail_expectation, is_tail_probability, log_second_moment,
stochastic_approximation and project_simplex are in specs.py).

Skipped (nothing to probe):
- importance.Distribution, TiltingParams, ISScheme, OracleInfo: NamedTuples;
- importance.plain_scheme: no scalar argument (the law's own arguments are probed through
  gaussian, multivariate_t, ...);
- importance.gaussian_log_mgf: a closed-form quadratic of any vectors, nothing out of range;
- stochopt.LevelResult, SAAResult, RAStage, RAResult, SAParams, SAState, SAInfo: NamedTuples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tailjax import importance, stochopt
from tests.bad_input.spec import NAN, INF, Kind, Spec, choice, count, level, positive, samples

KEY = jax.random.PRNGKey(0)
Z = jax.random.normal(jax.random.PRNGKey(3), (16, 3))
LOG_LR = 0.1 * jax.random.normal(jax.random.PRNGKey(2), (16,))
THETA = jnp.full(3, 1.0 / 3)
LOSS = lambda z, theta: z @ theta  # noqa: E731
DIST = importance.gaussian(jnp.zeros(3))
GRID = jnp.asarray([0.5, 1.0, 2.0, 4.0])
LOG_MGF = lambda b: 0.5 * jnp.dot(b, b)  # noqa: E731  (N(0, I))
TILTED = lambda key, b, n: b + jax.random.normal(key, (n, b.shape[0]))  # noqa: E731
PIECES = lambda theta: (-jnp.eye(3) * theta, jnp.zeros(3))  # noqa: E731
# a tilt mixture of N(0, I) with two components
POINTS, TILTS, _ = importance.gaussian_dominating_points(jnp.eye(3)[:2], jnp.ones(2), jnp.zeros(3), jnp.eye(3))
PARAMS = importance.mixture_params(LOG_MGF, POINTS, TILTS)

GROWTH = Kind({"one": 1.0, "below one": 0.5, "negative": -2.0, "nan": NAN, "inf": INF}, traced=False)
H_GRID = Kind({
    "scalar": lambda a: a[0],
    "one point": lambda a: a[:1],
    "zero entry": lambda a: a.at[0].set(0.0),
    "negative entry": lambda a: a.at[0].set(-1.0),
    "nan entry": lambda a: a.at[1].set(jnp.nan),
})
COV = Kind({
    "not positive definite": lambda a: -a,
    "nan entry": lambda a: a.at[0, 0].set(jnp.nan),
    "wrong shape": lambda a: a[:2, :2],
}, traced=False)
LEVEL_VALUE = Kind({"nan": NAN, "inf": INF})


def _draw(dist):
    z = dist.sample(KEY, 4)
    return z, jax.vmap(dist.log_prob)(z)


def _distribution_specs():
    ss = {"h": positive(), "tail_prob": level(), "rho": positive()}
    ss_args = {"h": 1.0, "tail_prob": 0.01, "rho": 1.0}
    return [
        Spec("importance.gaussian", lambda **a: _draw(importance.gaussian(a["mean"], a["cov"])),
             {"mean": jnp.zeros(3), "cov": jnp.eye(3)}, {"mean": samples(batched=False), "cov": COV},
             jittable=False),
        Spec("importance.multivariate_t",
             lambda **a: _draw(importance.multivariate_t(a["nu"], a["loc"])),
             {"nu": 4.0, "loc": jnp.zeros(3)}, {"nu": positive(), "loc": samples(batched=False)},
             jittable=False),
        Spec("importance.iid_student_t", lambda **a: _draw(importance.iid_student_t(a["nu"], a["dim"])),
             {"nu": 4.0, "dim": 3}, {"nu": positive(), "dim": count(1)}, jittable=False),
        Spec("importance.iid_weibull",
             lambda **a: _draw(importance.iid_weibull(a["shape"], a["dim"], a["scale"])),
             {"shape": 0.7, "dim": 3, "scale": 1.0},
             {"shape": positive(), "dim": count(1), "scale": positive()}, jittable=False),
        Spec("importance.iid_pareto",
             lambda **a: _draw(importance.iid_pareto(a["tail_index"], a["dim"], a["scale"])),
             {"tail_index": 2.5, "dim": 3, "scale": 1.0},
             {"tail_index": positive(), "dim": count(1), "scale": positive()}, jittable=False),
        # per-row functions: a NaN row gives NaN for that row only
        Spec("importance.self_structuring_log_jacobian",
             lambda **a: importance.self_structuring_log_jacobian(a["x"], a["h"], a["tail_prob"], a["rho"]),
             {"x": Z[:4], **ss_args}, {"x": samples(nan_ok=True), **ss}),
        Spec("importance.self_structuring_inverse",
             lambda **a: importance.self_structuring_inverse(a["z"], a["h"], a["tail_prob"], a["rho"],
                                                             steps=a["steps"]),
             {"z": Z[:4], "steps": 8, **ss_args}, {"z": samples(nan_ok=True), "steps": count(1), **ss}),
        Spec("importance.self_structuring_log_lr",
             lambda **a: importance.self_structuring_log_lr(a["x"], a["h"], a["tail_prob"], DIST.log_prob, a["rho"]),
             {"x": Z[0], **ss_args}, {"x": samples(batched=False), **ss}),
        Spec("importance.self_structuring_log_density",
             lambda **a: importance.self_structuring_log_density(a["z"], a["h"], a["tail_prob"], DIST.log_prob,
                                                                 a["rho"]),
             {"z": Z[0], **ss_args}, {"z": samples(batched=False), **ss}),
        Spec("importance.self_structuring_sample",
             lambda **a: importance.self_structuring_sample(KEY, DIST, a["n"], a["h"], a["tail_prob"], a["rho"]),
             {"n": 8, **ss_args}, {"n": count(1), **ss}),
    ]


def _estimator_specs():
    return [
        # per-sample: a NaN sample gives NaN for that sample only
        Spec("importance.sample_losses", lambda **a: importance.sample_losses(LOSS, a["samples"], THETA),
             {"samples": Z}, {"samples": samples(nan_ok=True)}),
        Spec("importance.saa_objective",
             lambda **a: importance.saa_objective(0.5, THETA, LOSS, a["samples"], a["tail_prob"]),
             {"samples": Z, "tail_prob": 0.1}, {"samples": samples(), "tail_prob": level()}),
        Spec("importance.is_objective",
             lambda **a: importance.is_objective(0.5, THETA, LOSS, a["samples"], a["log_lr"], a["tail_prob"]),
             {"samples": Z, "log_lr": LOG_LR, "tail_prob": 0.1},
             {"samples": samples(), "log_lr": samples(), "tail_prob": level()}),
    ]


def _tilting_specs():
    return [
        # per-row: a NaN direction or level gives NaN for that half-space only
        Spec("importance.gaussian_dominating_points",
             lambda **a: importance.gaussian_dominating_points(a["directions"], a["levels"], jnp.zeros(3),
                                                               jnp.eye(3)),
             {"directions": jnp.eye(3)[:2] + 0.1, "levels": jnp.ones(2)},
             {"directions": samples(nan_ok=True), "levels": samples(batched=False, nan_ok=True)}),
        Spec("importance.tilt_parameter",
             lambda **a: importance.tilt_parameter(LOG_MGF, a["a"], max_iter=a["max_iter"], tol=a["tol"]),
             {"a": jnp.ones(3), "max_iter": 10, "tol": 1e-6},
             {"a": samples(batched=False), "max_iter": count(1), "tol": positive(allow_zero=True)}),
        Spec("importance.rate_function", lambda **a: importance.rate_function(LOG_MGF, a["a"]),
             {"a": jnp.ones(3)}, {"a": samples(batched=False)}),
        Spec("importance.dominating_point",
             lambda **a: importance.dominating_point(LOG_MGF, a["direction"], a["level"], max_iter=a["max_iter"]),
             {"direction": jnp.ones(3), "level": 2.0, "max_iter": 20},
             {"direction": samples(batched=False), "level": LEVEL_VALUE, "max_iter": count(1)}),
        Spec("importance.dominating_points",
             lambda **a: importance.dominating_points(LOG_MGF, a["directions"], a["levels"]),
             {"directions": jnp.eye(3)[:2] + 0.1, "levels": jnp.ones(2)},
             {"directions": samples(nan_ok=True), "levels": samples(batched=False, nan_ok=True)}),
        Spec("importance.mixture_params",
             lambda **a: importance.mixture_params(LOG_MGF, a["points"], TILTS, a["weighting"]),
             {"points": POINTS, "weighting": "rate"},
             {"points": samples(), "weighting": choice("uniform", "rate")}),
        Spec("importance.mixture_log_lr", lambda **a: importance.mixture_log_lr(a["x"], PARAMS),
             {"x": Z[0]}, {"x": samples(batched=False)}),
        Spec("importance.sample_gaussian_mixture",
             lambda **a: importance.sample_gaussian_mixture(KEY, PARAMS, a["n"], jnp.eye(3)),
             {"n": 8}, {"n": count(1)}),
        Spec("importance.sample_tilted_mixture",
             lambda **a: importance.sample_tilted_mixture(KEY, PARAMS, a["n"], TILTED),
             {"n": 8}, {"n": count(1)}),
    ]


def _oracle_specs():
    oracle_kinds = {"tail_prob": level(), "rho": positive(), "pilot_size": count(4), "refine_steps": count(0),
                    "min_hits": count(0)}
    oracle_args = {"tail_prob": 0.05, "rho": 1.0, "pilot_size": 32, "refine_steps": 2, "min_hits": 2}

    def oracle(**a):
        h, info = importance.self_structuring_oracle(
            KEY, 0.5, THETA, DIST, LOSS, a["tail_prob"], rho=a["rho"], h_grid=a["h_grid"],
            pilot_size=a["pilot_size"], refine_steps=a["refine_steps"], min_hits=a["min_hits"])
        return h, info.log_m2

    def scheme(**a):
        s = importance.self_structuring_scheme(
            DIST, LOSS, a["tail_prob"], rho=a["rho"], h_grid=a["h_grid"], pilot_size=a["pilot_size"],
            refine_steps=a["refine_steps"], min_hits=a["min_hits"])
        return s.choose(KEY, 0.5, THETA)

    return [
        Spec("importance.default_h_grid",
             lambda **a: importance.default_h_grid(a["tail_prob"], a["num"], a["max_scale"]),
             {"tail_prob": 0.01, "num": 4, "max_scale": 16.0},
             {"tail_prob": level(), "num": count(2), "max_scale": positive()}, jittable=False),
        Spec("importance.self_structuring_oracle", oracle, {**oracle_args, "h_grid": GRID},
             {**oracle_kinds, "h_grid": H_GRID}),
        Spec("importance.self_structuring_scheme", scheme, {**oracle_args, "h_grid": GRID},
             {**oracle_kinds, "h_grid": H_GRID}, jittable=False),
        Spec("importance.gaussian_tilting_scheme",
             lambda **a: importance.gaussian_tilting_scheme(a["mean"], jnp.eye(3), PIECES,
                                                            weighting=a["weighting"]).choose(KEY, 1.0, THETA),
             {"mean": jnp.zeros(3), "weighting": "rate"},
             {"mean": samples(batched=False), "weighting": choice("uniform", "rate")}, jittable=False),
        Spec("importance.tilting_scheme",
             lambda **a: importance.tilting_scheme(LOG_MGF, TILTED, PIECES,
                                                   weighting=a["weighting"]).choose(KEY, 1.0, THETA),
             {"weighting": "rate"}, {"weighting": choice("uniform", "rate")}, jittable=False),
    ]


def _stochopt_specs():
    y = jnp.asarray([0.5, 0.9, -0.2])
    mu = jnp.asarray([0.1, 0.3, 0.2])
    simplex = stochopt.Simplex(3)
    saa_kinds = {"samples": samples(), "log_lr": samples(), "tail_prob": level(),
                 "risk_weight": level(closed_right=True, closed_left=True)}
    saa_args = {"samples": Z, "log_lr": LOG_LR, "tail_prob": 0.1, "risk_weight": 0.3}
    ra_kinds = {"tail_prob": level(), "n0": count(1), "growth": GROWTH, "num_stages": count(1),
                "tolerance_scale": positive(), "relative_tolerance": positive(allow_zero=True),
                "risk_weight": level(closed_right=True, closed_left=True), "max_iter": count(1),
                "padding": choice("pow2", "max")}
    ra_args = {"tail_prob": 0.1, "n0": 8, "growth": 2.0, "num_stages": 2, "tolerance_scale": 1.0,
               "relative_tolerance": 0.0, "risk_weight": 0.0, "max_iter": 3, "padding": "pow2"}
    scheme = importance.plain_scheme(DIST)

    def ra_call(fn):
        def call(**a):
            kw = {k: v for k, v in a.items() if k != "tail_prob"}
            if fn is stochopt.build_retrospective_approximation:
                return fn(LOSS, scheme, simplex, a["tail_prob"], **kw)(KEY).theta
            return fn(KEY, LOSS, scheme, simplex, a["tail_prob"], **kw).theta
        return call

    kernel = stochopt.stochastic_approximation(LOSS, scheme, simplex, 0.1, batch_size=8)
    state = kernel.init(THETA, KEY)
    return [
        Spec("stochopt.Simplex", lambda **a: stochopt.Simplex(a["dim"], a["radius"]).project(y),
             {"dim": 3, "radius": 1.0}, {"dim": count(1), "radius": positive()}),
        Spec("stochopt.CappedSimplex", lambda **a: stochopt.CappedSimplex(a["dim"], a["radius"]).project(y),
             {"dim": 3, "radius": 0.5}, {"dim": count(1), "radius": positive()}),
        Spec("stochopt.Box", lambda **a: stochopt.Box(a["lower"], a["upper"]).project(y),
             {"lower": jnp.zeros(3), "upper": jnp.ones(3)},
             {"lower": samples(batched=False), "upper": samples(batched=False)}),
        Spec("stochopt.TargetReturnSimplex",
             lambda **a: stochopt.TargetReturnSimplex(a["mu"], 0.25, a["radius"]).project(y),
             {"mu": mu, "radius": 1.0}, {"mu": samples(batched=False), "radius": positive()}),
        Spec("stochopt.level_method",
             lambda **a: stochopt.level_method(lambda t: (jnp.sum((t - 0.2) ** 2), ()), simplex, a["theta0"],
                                               tol=a["tol"], atol=a["atol"], max_iter=a["max_iter"],
                                               level=a["level"])[:4],
             {"theta0": THETA, "tol": 1e-4, "atol": 0.0, "max_iter": 4, "level": 0.3},
             {"theta0": samples(batched=False), "tol": positive(allow_zero=True),
              "atol": positive(allow_zero=True), "max_iter": count(1), "level": level()}),
        Spec("stochopt.saa_value",
             lambda **a: stochopt.saa_value(THETA, LOSS, a["samples"], a["tail_prob"], log_lr=a["log_lr"],
                                            risk_weight=a["risk_weight"]),
             saa_args, saa_kinds),
        Spec("stochopt.solve_saa",
             lambda **a: stochopt.solve_saa(LOSS, a["samples"], simplex, a["tail_prob"], log_lr=a["log_lr"],
                                            risk_weight=a["risk_weight"], max_iter=a["max_iter"])[:5],
             {**saa_args, "max_iter": 4}, {**saa_kinds, "max_iter": count(1)}),
        Spec("stochopt.retrospective_approximation", ra_call(stochopt.retrospective_approximation),
             ra_args, ra_kinds, jittable=False),
        Spec("stochopt.build_retrospective_approximation", ra_call(stochopt.build_retrospective_approximation),
             ra_args, ra_kinds, jittable=False),
        Spec("stochopt.sample_sizes",
             lambda **a: stochopt.sample_sizes(a["n0"], a["growth"], a["num_stages"]),
             {"n0": 8, "growth": 2.0, "num_stages": 3},
             {"n0": count(1), "growth": GROWTH, "num_stages": count(1)}, jittable=False),
        Spec("stochopt.run_stochastic_approximation",
             lambda **a: stochopt.run_stochastic_approximation(kernel, state, KEY, a["num_steps"])[0].theta,
             {"num_steps": 3}, {"num_steps": count(1)}),
    ]


SPECS: list = (_distribution_specs() + _estimator_specs() + _tilting_specs() + _oracle_specs()
               + _stochopt_specs())
