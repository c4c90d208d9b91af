"""Short rows: the bitwise key search of ``risk.cvar_large`` (``SelectConfig.short``) is exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax import risk
from tailjax.risk import select
from tailjax.risk._radix import _rows_per_program, radix_select
from tailjax.risk.select import SelectConfig, _rank

RADIX = SelectConfig(short="radix", backend="xla")  # the kernel's own code as XLA ops; the Pallas
# interpreter runs it in test_radix_select_is_the_rank_th_largest_and_its_excess


def _rows(kind, shape, dtype="float32"):
    key = jax.random.PRNGKey(3)
    x = jax.random.normal(key, shape)
    x = {
        "normal": x,
        "ties": jnp.round(2 * x),  # a few values, each many times
        "zeros": jnp.where(x > 0, 0.0, -0.0),  # signed zeros: equal values with different keys
        "special": x.at[0, 1].set(jnp.inf).at[1, 0].set(-jnp.inf).at[1, 2].set(jnp.inf),
        "cauchy": jax.random.cauchy(key, shape) * 1e30,
    }[kind]
    return x.astype(dtype)


def _sorted_reference(x, rank):
    x64 = np.asarray(x.astype(jnp.float32), np.float64)
    v = -np.sort(-x64, axis=1)[:, rank - 1]
    above = x64 > v[:, None]
    with np.errstate(invalid="ignore"):  # inf - inf where a row's VaR is inf (not summed)
        return v, np.sum(np.where(above, x64 - v[:, None], 0.0), axis=1)


@pytest.mark.parametrize("backend", ["xla", "interpret"])
@pytest.mark.parametrize("kind, shape, dtype", [
    ("normal", (19, 100), "float32"),  # rows not a multiple of a program's 64
    ("ties", (8, 1000), "float32"),
    ("zeros", (3, 129), "float32"),
    ("special", (5, 300), "float32"),
    ("cauchy", (4, 4097), "float32"),
    ("normal", (6, 500), "bfloat16"),
    ("special", (7, 3), "float32"),  # rows of a few values
    ("normal", (2049, 64), "bfloat16"),  # a partial last program (wrong on an H100 with 128-row programs)
])
def test_radix_select_is_the_rank_th_largest_and_its_excess(backend, kind, shape, dtype):
    x = _rows(kind, shape, dtype)
    n = shape[1]
    ranks = {1, 2, n // 100 + 1, n // 2, n} if backend == "xla" else {2, n // 100 + 1}  # one compile each
    for rank in sorted(ranks):
        v, e, nans = radix_select(x, rank, backend)
        v_ref, e_ref = _sorted_reference(x, rank)
        np.testing.assert_array_equal(np.asarray(v, np.float64), v_ref)  # the value itself, not a neighbour
        np.testing.assert_allclose(np.asarray(e, np.float64), e_ref, rtol=1e-5, atol=1e-30)
        assert not np.any(np.asarray(nans))


def test_radix_select_counts_nan_and_ranks_the_other_values():
    x = _rows("normal", (3, 200)).at[2, 7].set(jnp.nan).at[2, 9].set(jnp.nan)
    v, _, nans = radix_select(x, 5, "interpret")
    np.testing.assert_array_equal(np.asarray(nans), [0, 0, 2])
    row = np.asarray(x[2])
    assert float(v[2]) == -np.sort(-row[~np.isnan(row)])[4]


@pytest.mark.parametrize("p, n", [(1e-3, 1000), (0.3, 1000), (1e-3, 3)])
def test_cvar_large_by_radix_equals_cvar_in_value_and_gradient(p, n):
    x = _rows("special", (7, n)).at[6, 2].set(jnp.nan)
    got, ref = risk.cvar_large(x, p, config=RADIX), risk.cvar(x, p)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=2e-6)
    np.testing.assert_array_equal(risk.var_large(x, p, config=RADIX), risk.var(x, p))
    np.testing.assert_allclose(risk.cvar_large(x, p, side="lower", config=RADIX), risk.cvar(x, p, side="lower"),
                               rtol=2e-6)
    y = _rows("ties", (4, 1000))  # ties at the VaR: the subgradient splits them evenly
    g = jax.grad(lambda y: jnp.sum(risk.cvar_large(y, p, config=RADIX)))(y)
    count = risk.tail_count(1000, p)
    v, _ = _sorted_reference(y, _rank(1000, p))
    y64 = np.asarray(y, np.float64)
    above, tied = y64 > v[:, None], y64 == v[:, None]
    share = (count - above.sum(1, keepdims=True)) / tied.sum(1, keepdims=True)
    np.testing.assert_allclose(g, np.where(above, 1.0, np.where(tied, share, 0.0)) / count, atol=1e-7)
    assert np.any(tied.sum(1) > 1)  # the rows do tie at the VaR


def test_short_rows_take_radix_only_where_it_applies(monkeypatch):
    x = jnp.zeros((2, 1000))
    auto = SelectConfig()
    assert not select._use_radix(x, auto)  # tests run on the CPU: top_k there
    assert select._use_radix(x, RADIX)
    assert select._use_radix(jnp.zeros((2, 3)), RADIX)  # XLA ops: any short row
    assert not select._use_radix(jnp.zeros((2, (1 << 14) + 1)), RADIX)  # beyond short_max
    assert not select._use_radix(jnp.zeros((0, 1000)), RADIX)
    assert not select._use_radix(jnp.zeros((2, 1000), jnp.float16), SelectConfig(short="top_k"))
    monkeypatch.setattr(select.jax, "default_backend", lambda: "gpu")
    assert select._use_radix(jnp.zeros((2, 64)), auto) and select._use_radix(jnp.zeros((2, 3)), auto)
    assert select._use_radix(jnp.zeros((2, 1000), jnp.bfloat16), auto)
    assert not select._use_radix(jnp.zeros((2, 1000), jnp.float16), auto)  # not checked on a GPU
    assert not select._use_radix(x, auto._replace(backend="xla"))
    with pytest.raises(ValueError, match="config.short"):
        risk.cvar_large(x, 0.1, config=SelectConfig(short="sort"))


def test_radix_select_refuses_wide_floats_and_ranks_outside_the_row():
    with pytest.raises(ValueError, match="rank must lie in"):
        radix_select(jnp.zeros((2, 100)), 101, "xla")
    if jax.config.jax_enable_x64:
        with pytest.raises(ValueError, match="at most 32 bits"):
            radix_select(jnp.zeros((2, 100), jnp.float64), 1, "xla")


def test_rank_of_short_rows_matches_the_sort_convention():
    assert _rank(1000, 0.01) == 11 and _rank(100, 0.999) == 100


def test_programs_hold_at_most_64_rows_and_no_more_than_the_batch():
    # 128-512 rows a program gave wrong tail sums on an H100 when the last program was partial
    assert _rows_per_program(100_000, 64) == 64 and _rows_per_program(100_000, 16) == 64
    assert _rows_per_program(100_000, 1024) == 8 and _rows_per_program(10, 16384) == 1
    assert _rows_per_program(7, 4) == 4 and _rows_per_program(1, 64) == 1
