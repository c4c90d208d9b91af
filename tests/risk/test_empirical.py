"""VaR/CVaR of empirical distributions: closed forms, exactness, gradients, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from scipy import stats

from tailjax import risk


def _reference(x, p, w=None):
    """Float64 numpy reference: (VaR, CVaR) of the upper tail of the weighted sample."""
    x = np.asarray(x, np.float64)
    w = np.ones_like(x) if w is None else np.asarray(w, np.float64)
    order = np.argsort(-x, kind="stable")
    xs, ps = x[order], w[order] / w.sum()
    before = np.cumsum(ps) - ps
    share = np.clip(p - before, 0.0, ps)
    k = np.sum(before <= p * (1 + 1e-12)) - 1
    return xs[k], np.sum(share * xs) / p


def test_exponential_closed_form():
    x = jax.random.exponential(jax.random.PRNGKey(0), (400_000,))
    for p in [0.1, 0.01]:
        assert float(risk.cvar(x, p)) == pytest.approx(1 + np.log(1 / p), rel=0.02)
        assert float(risk.var(x, p)) == pytest.approx(np.log(1 / p), rel=0.02)


def test_normal_closed_form_and_convergence():
    p = 0.05
    exact = stats.norm.pdf(stats.norm.ppf(1 - p)) / p
    errors = []
    for n in [1_000, 10_000, 100_000]:
        vals = jax.vmap(lambda k: risk.cvar(jax.random.normal(k, (n,)), p))(
            jax.random.split(jax.random.PRNGKey(1), 20)
        )
        errors.append(float(jnp.sqrt(jnp.mean((vals - exact) ** 2))))
    assert errors[-1] < 0.01 * exact
    # root-n convergence: the RMSE shrinks by about sqrt(10) per decade.
    assert errors[0] / errors[2] > 5


@pytest.mark.parametrize("p", [0.25, 0.2, 0.05, 1.0])
def test_exact_on_small_samples(p, dtype):
    x = jnp.asarray([3.0, -1.0, 7.5, 2.0, 2.0, 0.5, 9.0, -4.0, 1.0, 6.0], dtype)
    v, c = risk.var_cvar(x, p)
    rv, rc = _reference(x, p)
    assert float(v) == pytest.approx(rv)
    assert float(c) == pytest.approx(rc, rel=1e-6)
    assert c.dtype == dtype


def test_fractional_atom_by_hand():
    x = jnp.arange(10.0)
    # tail of mass 0.25 = atoms 9, 8 and half of 7.
    assert float(risk.cvar(x, 0.25)) == pytest.approx((9 + 8 + 0.5 * 7) / 2.5)
    assert float(risk.var(x, 0.25)) == 7.0
    assert float(risk.var(x, 0.2)) == 7.0  # smallest v with P(X > v) <= 0.2
    assert float(risk.cvar(x, 0.25, side="lower")) == pytest.approx((0 + 1 + 0.5 * 2) / 2.5)


def test_weighted_matches_reference():
    k1, k2 = jax.random.split(jax.random.PRNGKey(2))
    x = jax.random.normal(k1, (500,))
    w = jax.random.uniform(k2, (500,), minval=0.0, maxval=3.0)
    for p in [0.3, 0.07, 0.003]:
        rv, rc = _reference(x, p, w)
        v, c = risk.var_cvar(x, p, weights=w)
        assert float(v) == pytest.approx(rv)
        assert float(c) == pytest.approx(rc, rel=1e-5)
        # weights are normalised: scaling them changes nothing.
        assert float(risk.cvar(x, p, weights=7 * w)) == pytest.approx(float(c), rel=1e-6)


def test_batch_axis_jit_and_vmap():
    x = jax.random.normal(jax.random.PRNGKey(3), (4, 300))
    direct = risk.cvar(x, 0.1)
    mapped = jax.vmap(lambda row: risk.cvar(row, 0.1))(x)
    jitted = jax.jit(lambda x: risk.cvar(x, 0.1))(x)
    assert direct.shape == (4,)
    np.testing.assert_allclose(direct, mapped, rtol=1e-6)
    np.testing.assert_allclose(direct, jitted, rtol=1e-6)
    # traced tail_prob works under jit too
    traced = jax.jit(lambda x, p: risk.cvar(x, p))(x, 0.1)
    np.testing.assert_allclose(direct, traced, rtol=1e-6)


def _finite_difference(f, x, eps):
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = eps
        grad[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return grad


def test_gradients_against_finite_differences(x64):
    k1, k2 = jax.random.split(jax.random.PRNGKey(4))
    x = jax.random.normal(k1, (40,), jnp.float64)
    w = jax.random.uniform(k2, (40,), jnp.float64, 0.5, 2.0)
    for side in ["upper", "lower"]:
        f_x = lambda x: float(risk.cvar(x, 0.13, weights=w, side=side))
        f_w = lambda w: float(risk.cvar(x, 0.13, weights=w, side=side))
        g_x = jax.grad(lambda x: risk.cvar(x, 0.13, weights=w, side=side))(x)
        g_w = jax.grad(lambda w: risk.cvar(x, 0.13, weights=w, side=side))(w)
        np.testing.assert_allclose(g_x, _finite_difference(f_x, x, 1e-6), atol=1e-6)
        np.testing.assert_allclose(g_w, _finite_difference(f_w, w, 1e-6), atol=1e-6)
    g = jax.grad(lambda x: risk.cvar(x, 0.1))(x)
    np.testing.assert_allclose(g, _finite_difference(lambda x: float(risk.cvar(x, 0.1)), x, 1e-6), atol=1e-6)


def test_ru_objective_minimum_is_cvar_at_var(dtype):
    x = jax.random.normal(jax.random.PRNGKey(5), (2000,), dtype)
    p = 0.05
    v, c = risk.var_cvar(x, p)
    grid = jnp.linspace(-1.0, 4.0, 2001, dtype=dtype)
    values = jax.vmap(lambda u: risk.ru_objective(u, x, p))(grid)
    assert float(jnp.min(values)) >= float(c) - 1e-4
    assert float(risk.ru_objective(v, x, p)) == pytest.approx(float(c), rel=1e-5)
    # Weighted RU with likelihood-ratio weights is unnormalised: all-ones weights = plain.
    ones = jnp.ones_like(x)
    assert float(risk.ru_objective(v, x, p, weights=ones)) == pytest.approx(float(c), rel=1e-5)


def test_mean_cvar():
    x = jax.random.normal(jax.random.PRNGKey(6), (1000,))
    m, c = jnp.mean(x), risk.cvar(x, 0.1)
    assert float(risk.mean_cvar(x, 0.1, 0.3)) == pytest.approx(float(0.3 * m + 0.7 * c), rel=1e-6)
    assert float(risk.mean_cvar(x, 0.1, 1.0)) == pytest.approx(float(m), rel=1e-6)
    with pytest.raises(ValueError, match="risk_weight"):
        risk.mean_cvar(x, 0.1, 1.5)


def test_tail_prob_one_is_mean():
    x = jax.random.normal(jax.random.PRNGKey(7), (333,))
    assert float(risk.cvar(x, 1.0)) == pytest.approx(float(jnp.mean(x)), abs=1e-6)
    assert float(risk.cvar(x, 1.0, side="lower")) == pytest.approx(float(jnp.mean(x)), abs=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tail_prob=0.0), "tail_prob"),
        (dict(tail_prob=1.5), "tail_prob"),
        (dict(tail_prob=0.1, side="left"), "side"),
        (dict(tail_prob=0.1, weights=-jnp.ones(5)), "weights"),
        (dict(tail_prob=0.1, weights=jnp.ones(4)), "weights"),
        (dict(tail_prob=0.1, weights=jnp.zeros(5)), "weights"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        risk.cvar(jnp.arange(5.0), **kwargs)


def test_tail_count_rejects_a_sample_count_below_one():
    assert risk.tail_count(64, 0.1) == pytest.approx(6.4)
    for n in (0, -3):
        with pytest.raises(ValueError, match="n must be >= 1"):
            risk.tail_count(n, 0.1)


@pytest.mark.parametrize("name,call", [
    pytest.param("n", lambda: risk.tail_count(2.5, 0.1), id="tail_count-n"),  # was a count of 2
    pytest.param("max_iter", lambda: risk.solve_threshold(jnp.arange(10.0), 0.5, 1.0, max_iter=2.5),
                 id="solve_threshold-max_iter"),  # was 2 iterations
])
def test_fractional_counts_are_refused_not_truncated(name, call):
    with pytest.raises(ValueError, match=rf"^{name} must be an integer"):
        call()


def test_numpy_integer_counts_still_work():
    assert risk.tail_count(np.int64(64), 0.1) == risk.tail_count(64, 0.1)
    r = jnp.arange(10.0)
    assert float(risk.solve_threshold(r, 0.5, 1.0, max_iter=np.int64(50))) == float(
        risk.solve_threshold(r, 0.5, 1.0, max_iter=50))


def test_empty_and_scalar_samples():
    with pytest.raises(ValueError, match="samples"):
        risk.cvar(jnp.zeros((0,)), 0.1)
    with pytest.raises(ValueError, match="samples"):
        risk.var(jnp.asarray(1.0), 0.1)
    with pytest.raises(ValueError, match="losses"):
        risk.ru_objective(0.0, jnp.zeros((3, 0)), 0.1)


def test_nan_documented_and_checked_mode():
    x = jnp.asarray([1.0, jnp.nan, 3.0, 4.0])
    assert jnp.isnan(risk.cvar(x, 0.5))
    with pytest.raises(checkify.JaxRuntimeError, match="NaN"):
        risk.cvar(x, 0.5, checked=True)
    assert float(risk.cvar(jnp.arange(4.0), 0.5, checked=True)) == pytest.approx(2.5)
    # inside a user's jit, the checks surface through checkify
    fn = checkify.checkify(jax.jit(lambda x: risk.cvar(x, 0.5, checked=True)))
    err, _ = fn(x)
    with pytest.raises(checkify.JaxRuntimeError, match="NaN"):
        err.throw()
    w = jnp.asarray([1.0, -1.0, 1.0, 1.0])
    fn = checkify.checkify(jax.jit(lambda x, w: risk.cvar(x, 0.5, weights=w, checked=True)))
    err, _ = fn(jnp.arange(4.0), w)
    with pytest.raises(checkify.JaxRuntimeError, match="non-negative"):
        err.throw()


def test_bfloat16_samples_sum_in_float32_and_round_once():
    x = jax.random.normal(jax.random.PRNGKey(11), (3, 20_000)).astype(jnp.bfloat16)
    w = jax.random.uniform(jax.random.PRNGKey(12), (3, 20_000)).astype(jnp.bfloat16)
    for weights in (None, w):
        v, c = risk.var_cvar(x, 0.01, weights=weights)
        v32, c32 = risk.var_cvar(x.astype(jnp.float32), 0.01,
                                 weights=None if weights is None else weights.astype(jnp.float32))
        assert c.dtype == jnp.bfloat16
        assert np.array_equal(np.asarray(v, np.float32), np.asarray(v32))
        np.testing.assert_array_equal(np.asarray(c, np.float32), np.asarray(c32.astype(jnp.bfloat16), np.float32))


@pytest.mark.parametrize("scale", [1e-37, 1e-30, 1e30, 1e37])
@pytest.mark.parametrize("weighted", [False, True])
def test_cvar_of_tiny_and_huge_samples_neither_flushes_nor_overflows(scale, weighted):
    key = jax.random.PRNGKey(11)
    # normal floats from scale to about 12 * scale: 1e-37 / n is subnormal (or flushed to 0)
    x = (1.0 + jax.random.exponential(key, (50_001,))) * scale
    w = jax.random.uniform(jax.random.fold_in(key, 1), x.shape, minval=0.5, maxval=1.5) if weighted else None
    for p in [0.5, 1e-3]:
        x64 = np.asarray(x, np.float64)
        w64 = np.ones_like(x64) if w is None else np.asarray(w, np.float64)
        order = np.argsort(-x64)
        mass = w64[order] / w64.sum()
        share = np.clip(p - (np.cumsum(mass) - mass), 0.0, mass)
        want = np.sum(share * x64[order]) / p
        got = float(risk.cvar(x, p, weights=w))
        assert got == pytest.approx(want, rel=1e-5, abs=0.0), (scale, p)
