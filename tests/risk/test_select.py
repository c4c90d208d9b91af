"""Large-sample CVaR by selection: exact against the sort on every path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax import risk
from tailjax.risk import _bracket, _compact, select
from tailjax.risk._compact import compact
from tailjax.risk._counts import counts_at_least
from tailjax.risk._finish import finish_radix
from tailjax.risk._histogram import _keys, from_signed_keys, key_histogram, signed_keys
from tailjax.risk._radix import radix_select
from tailjax.risk.empirical import accumulator
from tailjax.risk.select import SelectConfig, _rank, _select

SMALL = SelectConfig(sample_size=4096, block=256, min_size=1024, backend="xla")


def _inputs(kind, n):
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (n,))
    return {
        "normal": x,
        "sorted": jnp.sort(x),
        "reversed": -jnp.sort(x),
        "ties": jnp.round(3 * x),
        "cauchy": jax.random.cauchy(key, (n,)),
    }[kind]


@pytest.mark.parametrize(
    "kind, p",
    [("normal", 0.5), ("normal", 0.01), ("sorted", 0.29), pytest.param("reversed", 0.01, marks=pytest.mark.slow), ("ties", 0.01),
     ("ties", 0.29), ("cauchy", 1e-5), ("cauchy", 0.01)],
)
def test_matches_sort(kind, p):
    n = 65_537
    x = _inputs(kind, n)
    assert float(risk.var_large(x, p, config=SMALL)) == float(risk.var(x, p))
    np.testing.assert_allclose(risk.cvar_large(x, p, config=SMALL), risk.cvar(x, p), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(
        risk.cvar_large(x, p, side="lower", config=SMALL), risk.cvar(x, p, side="lower"), rtol=2e-6, atol=1e-6
    )


@pytest.mark.parametrize("kind, p", [("normal", 0.01), ("sorted", 0.29), ("reversed", 0.01), ("ties", 0.01),
                                     ("cauchy", 1e-5), ("normal", 1e-6)])
def test_sorted_subsample_bracket_selects_exactly(kind, p):
    x = _inputs(kind, 65_537)
    sort = SMALL._replace(bracket="sort")
    rank = _rank(x.shape[0], p)
    v, _, ok, _ = _select(x[None], rank, sort)
    assert bool(ok[0]) or kind == "cauchy"  # the selection itself, not the fallback
    assert float(risk.var_large(x, p, config=sort)) == float(risk.var(x, p))
    np.testing.assert_allclose(risk.cvar_large(x, p, config=sort), risk.cvar(x, p), rtol=2e-6, atol=1e-6)


def test_subsample_runs_are_consecutive_evenly_spread_and_select_exactly():
    n, m, run = 200_003, 4096, 32
    idx = np.asarray(_bracket.sample_indices(n, m, run)).reshape(m // run, run)
    assert np.all(np.diff(idx, axis=1) == 1) and idx.min() >= 0 and idx.max() < n
    gaps = np.diff(idx[:, 0])  # run starts one n / (m / run) apart, within rounding
    assert gaps.min() >= n // (m // run) - 1 and gaps.max() <= n // (m // run) + 1
    assert idx[0, 0] < n // (m // run) and idx[-1, -1] >= n - n // (m // run)  # both ends covered
    for kind in ["normal", "sorted", "reversed"]:
        x = _inputs(kind, n)
        for p in [1e-3, 0.05]:
            cfg = SMALL._replace(sample_run=run)
            assert bool(_select(x[None], _rank(n, p), cfg)[2][0])  # the selection, not the fallback
            assert float(risk.var_large(x, p, config=cfg)) == float(risk.var(x, p))


@pytest.mark.slow
def test_sorted_subsample_bracket_is_the_subsample_rank_interval_and_no_wider_than_the_search():
    x = jax.random.normal(jax.random.PRNGKey(8), (3, 200_003))
    n, p = x.shape[1], 0.01
    rank, m = _rank(n, p), _bracket.sample_size(*x.shape, SMALL)
    centre, sd = _bracket.spread(n, rank, m)
    lo, hi = _bracket.sample_bracket(x, rank, m, SMALL._replace(bracket="sort"))
    single = np.asarray(((jnp.arange(m, dtype=jnp.float32) + 0.5) * (n / m)).astype(jnp.int32))  # runs of 1
    assert np.array_equal(single, _bracket.sample_indices(n, m, 1))
    idx = np.asarray(_bracket.sample_indices(n, m, SMALL.sample_run))  # as the library
    sample = np.asarray(x)[:, idx]
    assert np.all(np.sum(sample >= np.asarray(hi)[:, None], axis=1) <= np.floor(centre - SMALL.width_sd * sd - 1))
    assert np.all(np.sum(sample >= np.asarray(lo)[:, None], axis=1) >= np.ceil(centre + SMALL.width_sd * sd + 1))
    lo_s, hi_s = _bracket.sample_bracket(x, rank, m, SMALL._replace(bracket="search"))
    members = lambda lo, hi: np.sum((np.asarray(x) >= np.asarray(lo)[:, None]) & (np.asarray(x) < np.asarray(hi)[:, None]), 1)
    assert np.all(members(lo, hi) <= members(lo_s, hi_s))
    np.testing.assert_allclose(risk.cvar_large(x, p, config=SMALL._replace(bracket="sort")), risk.cvar(x, p), rtol=2e-6)


@pytest.mark.parametrize("p", [0.01, 0.1])
def test_a_heavy_tail_is_selected_with_the_sorted_bracket_where_the_search_overflows(p):
    x = jax.random.cauchy(jax.random.PRNGKey(0), (1, 200_003))
    rank = _rank(x.shape[1], p)
    single = SMALL._replace(sample_run=1)  # on this subsample the search's value grid is too coarse
    assert not bool(_select(x, rank, single._replace(bracket="search"))[2][0])
    assert bool(_select(x, rank, single._replace(bracket="sort"))[2][0])
    assert bool(_select(x, rank, SMALL._replace(bracket="sort"))[2][0])
    np.testing.assert_allclose(risk.cvar_large(x, p, config=SMALL._replace(bracket="sort")), risk.cvar(x, p), rtol=2e-6)


def test_auto_bracket_searches_one_row_and_sorts_a_batch(monkeypatch):
    x = jax.random.normal(jax.random.PRNGKey(9), (2, 40_009))
    rank = _rank(x.shape[1], 0.01)
    assert SelectConfig().bracket == "auto"
    for batch, want, other in [(x[:1], "search", "sort"), (x, "sort", "search")]:
        m = _bracket.sample_size(*batch.shape, SMALL)
        got = _bracket.sample_bracket(batch, rank, m, SMALL._replace(bracket="auto"))
        ref = _bracket.sample_bracket(batch, rank, m, SMALL._replace(bracket=want))
        alt = _bracket.sample_bracket(batch, rank, m, SMALL._replace(bracket=other))
        assert all(np.array_equal(a, b) for a, b in zip(got, ref))
        assert not np.array_equal(got[0], alt[0])  # the two brackets differ here
    np.testing.assert_allclose(risk.cvar_large(x, 0.01, config=SMALL._replace(bracket="auto")), risk.cvar(x, 0.01),
                               rtol=2e-6)
    calls = []
    monkeypatch.setattr(_bracket, "search_bracket", lambda *a: calls.append(1) or (a[1], a[2]))
    _bracket.sample_bracket(x, rank, _bracket.sample_size(*x.shape, SMALL), SMALL._replace(bracket="auto"))
    assert not calls  # a batch's subsamples are sorted, never searched


def test_rows_of_a_batch_share_the_subsample_budget():
    cfg = SMALL._replace(sample_total=8192)
    assert [_bracket.sample_size(rows, 10**6, cfg) for rows in (1, 2, 3, 32, 1000)] == [4096, 4096, 2048, 256, 256]
    assert _bracket.sample_size(1000, 1000, cfg) == 64  # n / 8 still caps the share
    x = jax.random.normal(jax.random.PRNGKey(12), (32, 40_009))  # 32 rows: each at the 256 floor
    rank = _rank(x.shape[1], 0.01)
    assert bool(jnp.all(_select(x, rank, cfg)[2]))  # the narrow subsample still brackets v in every row
    np.testing.assert_allclose(risk.cvar_large(x, 0.01, config=cfg), risk.cvar(x, 0.01), rtol=2e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("num", [32, 64, 20])
def test_pallas_counts_equal_the_xla_counts(dtype, num):
    with jax.enable_x64(dtype == "float64"):
        _check_counts(dtype, num)


def _check_counts(dtype, num):
    key = jax.random.PRNGKey(10)
    values = jnp.round(4 * jax.random.normal(key, (3, 16_384))).astype(dtype)  # ties at every threshold
    values = values.at[0, :5].set(jnp.inf).at[1, :5].set(-jnp.inf)
    thresholds = jnp.linspace(-6.0, 6.0, num).astype(dtype)[None].repeat(3, 0).at[2, 0].set(jnp.inf)
    got = jax.vmap(lambda v, t: counts_at_least(v, t, "interpret"))(values, thresholds)
    want = np.sum(np.asarray(values, np.float64)[:, :, None] >= np.asarray(thresholds, np.float64)[:, None, :], axis=1)
    assert np.array_equal(np.asarray(got), want)
    assert np.array_equal(np.asarray(jax.vmap(counts_at_least)(values, thresholds)), want)


def test_search_with_the_pallas_counts_selects_exactly():
    x = jax.random.normal(jax.random.PRNGKey(11), (2, 40_009))
    cfg = SMALL._replace(bracket="search", count_backend="interpret")
    rank = _rank(x.shape[1], 0.01)
    m = _bracket.sample_size(*x.shape, cfg)
    lo, hi = _bracket.sample_bracket(x, rank, m, cfg)
    assert all(np.array_equal(a, b) for a, b in zip((lo, hi), _bracket.sample_bracket(x, rank, m, SMALL._replace(
        bracket="search"))))  # the same bracket as the XLA counts
    assert bool(jnp.all(_select(x, rank, cfg)[2]))
    np.testing.assert_allclose(risk.cvar_large(x, 0.01, config=cfg), risk.cvar(x, 0.01), rtol=2e-6)


@pytest.mark.parametrize("field", ["bracket", "finish", "method", "count_backend", "block_slots", "sample_run"])
def test_an_unknown_config_choice_is_refused_on_every_path(field):
    x = jnp.arange(100.0)  # short: the sort runs, the config is still checked
    with pytest.raises(ValueError, match=f"config.{field}"):
        risk.cvar_large(x, 0.1, config=SelectConfig(**{field: "bogus"}))
    with pytest.raises(ValueError, match=f"config.{field}"):
        risk.var_large(x, 0.1, config=SelectConfig(**{field: "bogus"}))


def test_fast_path_taken_and_exact():
    n = 300_001
    x = jax.random.exponential(jax.random.PRNGKey(1), (n,))
    for p in [0.01, 0.001]:
        rank = _rank(n, p)
        v, excess, ok, has_nan = jax.jit(lambda x: _select(x[None], rank, SMALL))(x)
        assert bool(ok[0]) and not bool(has_nan[0])
        assert float(v[0]) == float(jnp.sort(x)[n - rank])
        assert float(excess[0]) == pytest.approx(float(jnp.sum(jnp.maximum(x - v[0], 0.0))), rel=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_keys_order_like_the_values(dtype):
    x = jnp.array([-jnp.inf, -3e4, -1.5, -1e-7, -0.0, 0.0, 1e-7, 1.0, 1.5, 3e4, jnp.inf], dtype)
    x = jnp.concatenate([x, jnp.nextafter(x[1:-1], x[2:])]).sort()
    keys, values = np.asarray(_keys(x)).astype(np.int64), np.asarray(x, np.float64)
    assert np.all(np.diff(keys) >= 0) and np.all(np.diff(keys)[np.diff(values) > 0] > 0)


@pytest.mark.parametrize("kind, p", [("normal", 0.01), ("cauchy", 1e-4), ("sorted", 0.29), ("ties", 0.01)])
@pytest.mark.parametrize("bins", [4096, 64, 3])
def test_histogram_finish_selects_what_the_sort_finish_selects(kind, p, bins):
    x = _inputs(kind, 200_003)[None]
    rank = _rank(x.shape[1], p)
    v, e, ok, _ = _select(x, rank, SMALL._replace(bins=bins))
    v_sort, e_sort, ok_sort, _ = _select(x, rank, SMALL._replace(finish="sort"))
    if bool(ok[0]):
        assert float(v[0]) == float(v_sort[0]) == float(-jnp.sort(-x[0])[rank - 1])
        assert float(e[0]) == pytest.approx(float(e_sort[0]), rel=1e-6)
    else:  # only where v's bin overflowed its gather: heavy ties or few bins
        assert bool(ok_sort[0]) and (kind == "ties" or bins < 64)
    np.testing.assert_allclose(risk.cvar_large(x, p, config=SMALL._replace(bins=bins)), risk.cvar(x, p), rtol=2e-6)


@pytest.mark.parametrize("kind, p", [("normal", 0.01), ("cauchy", 1e-4), ("sorted", 0.29), ("ties", 0.01)])
@pytest.mark.parametrize("bins", [4096, 64, 2])
def test_radix_finish_selects_what_the_sort_selects_however_few_bins(kind, p, bins):
    x = _inputs(kind, 200_003)[None]
    rank = _rank(x.shape[1], p)
    v, e, ok, _ = _select(x, rank, SMALL._replace(finish="radix", bins=bins))
    v_sort, e_sort, ok_sort, _ = _select(x, rank, SMALL._replace(finish="sort"))
    assert bool(ok[0]) == bool(ok_sort[0]) and bool(ok[0])  # no gather that can overflow
    assert float(v[0]) == float(v_sort[0]) == float(-jnp.sort(-x[0])[rank - 1])
    assert float(e[0]) == pytest.approx(float(e_sort[0]), rel=1e-6)
    np.testing.assert_allclose(risk.cvar_large(x, p, config=SMALL._replace(finish="radix", bins=bins)),
                               risk.cvar(x, p), rtol=2e-6)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64"])
def test_radix_finish_finds_every_rank_of_a_buffer_with_ties_and_signed_zeros(dtype):
    # every rank of one buffer, members spread over the whole key range (lo = -inf, hi = +inf)
    with jax.enable_x64(dtype == "float64"):
        base = jnp.array([-jnp.inf, -7.5, -1.0, -0.0, 0.0, 0.0, 1e-3, 2.0, 2.0, 2.0, 3e4], dtype)
        buf = jnp.concatenate([base, jnp.full((5,), -jnp.inf, dtype)])[None]  # 5 unused slots
        valid = jnp.arange(buf.shape[1])[None] < base.size
        lo, hi = jnp.full((1,), -jnp.inf, dtype), jnp.full((1,), jnp.inf, dtype)
        zero = jnp.zeros((1,), jnp.int32)
        top = -np.sort(-np.asarray(base, np.float64))
        for r in range(1, base.size + 1):
            v, _ = finish_radix(buf, valid, zero, jnp.zeros((1,), accumulator(buf.dtype)), lo, hi, r, 16)
            assert float(v[0]) == top[r - 1], r


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_histogram_finish_selects_exactly_in_16_bit(dtype):
    x = _inputs("normal", 200_003).astype(dtype)[None]
    rank = _rank(x.shape[1], 0.01)
    v, _, ok, _ = _select(x, rank, SMALL)
    assert bool(ok[0]) and float(v[0]) == float(-jnp.sort(-x[0])[rank - 1])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_bin_of_one_key_selects_however_many_members_share_it(dtype):
    # v's value is shared by more members than the 4 gather slots (as 1e8 bfloat16 samples
    # share it by thousands): with one key per bin, v is read off the histogram
    x = _inputs("normal", 200_003).astype(dtype)[None]
    rank = _rank(x.shape[1], 0.01)
    v, e, ok, _ = _select(x, rank, SMALL._replace(bin_slots=4))
    top = -jnp.sort(-x[0])
    assert int(jnp.sum(x[0] == top[rank - 1])) > 4
    assert bool(ok[0]) and float(v[0]) == float(top[rank - 1])
    want = jnp.sum(jnp.maximum(x[0].astype(jnp.float32) - v[0].astype(jnp.float32), 0.0))
    assert float(e[0]) == pytest.approx(float(want), rel=1e-5)


def test_an_overfull_bin_is_reported_and_the_result_stays_exact():
    x = jax.random.normal(jax.random.PRNGKey(7), (1, 200_003))
    tight = SMALL._replace(bins=2, bin_slots=16)
    rank = _rank(x.shape[1], 0.01)
    assert not bool(_select(x, rank, tight)[2][0])  # hundreds of members in two bins of 16 slots
    np.testing.assert_allclose(risk.cvar_large(x, 0.01, config=tight), risk.cvar(x, 0.01), rtol=2e-6)
    with pytest.raises(ValueError, match="finish"):
        risk.cvar_large(x, 0.01, config=SMALL._replace(finish="median"))


@pytest.mark.parametrize("p", [0.01, 0.99995])
def test_pallas_kernel_in_interpret_mode(p):
    cfg = SMALL._replace(backend="interpret", sample_size=2048)
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 20_003)).at[1, 7].set(jnp.nan)
    # the last block (35 values) is partial: it holds row 0's largest value and row 1's second NaN
    x = x.at[0, -3].set(9.0).at[1, -1].set(jnp.nan)
    rank = _rank(x.shape[1], p)
    v, excess, ok, has_nan = _select(x, rank, cfg)
    assert bool(ok[0]) and has_nan.tolist() == [False, True]
    assert float(v[0]) == float(-jnp.sort(-x[0])[rank - 1])
    assert float(excess[0]) == pytest.approx(float(jnp.sum(jnp.maximum(x[0] - v[0], 0.0))), rel=1e-5)


def test_batch_rows_match_sort_and_nan_rows_give_nan():
    key = jax.random.PRNGKey(5)
    x = jax.random.normal(key, (4, 12_011))
    x = x.at[1].set(jnp.sort(x[1])).at[2].set(jnp.round(3 * x[2])).at[3, 123].set(jnp.nan)
    for p in [0.01]:
        got = risk.cvar_large(x.reshape(2, 2, -1), p, config=SMALL).reshape(-1)
        want = risk.cvar(x, p)
        np.testing.assert_allclose(got[:3], want[:3], rtol=2e-6, atol=1e-6)
        assert bool(jnp.isnan(got[3])) and bool(jnp.isnan(want[3]))
        assert np.array_equal(np.asarray(risk.var_large(x, p, config=SMALL))[:3], np.asarray(risk.var(x, p))[:3])
        assert bool(jnp.isnan(risk.var_large(x, p, config=SMALL)[3]))


def test_a_row_whose_buffer_overflows_sends_the_batch_to_the_exact_fallback():
    x = jax.random.normal(jax.random.PRNGKey(6), (2, 12_011))
    tiny = SMALL._replace(capacity=8)
    rank = _rank(x.shape[1], 0.01)
    _, _, ok, _ = _select(x, rank, tiny)
    assert not bool(jnp.any(ok))  # about 80 bracket members per row, 8 slots
    np.testing.assert_allclose(risk.cvar_large(x, 0.01, config=tiny), risk.cvar(x, 0.01), rtol=2e-6)


@pytest.mark.parametrize("kind, p", [("normal", 0.01), ("ties", 0.01), pytest.param("normal", 0.29, marks=pytest.mark.slow),
                                     pytest.param("cauchy", 1e-3, marks=pytest.mark.slow)])
def test_block_windows_select_what_the_sort_selects(kind, p):
    x = _inputs(kind, 65_537)
    cfg = SMALL._replace(block_slots=64)  # the normal p = 0.29 bracket puts up to 33 members in a block
    rank = _rank(x.size, p)
    assert bool(_select(x[None], rank, cfg)[2][0])  # the windows held every member: no fallback
    np.testing.assert_allclose(risk.cvar_large(x, p, config=cfg), risk.cvar(x, p), rtol=2e-6)


@pytest.mark.parametrize("backend", ["xla", "interpret"])
def test_block_windows_hold_each_blocks_members_in_order(backend):
    x = jax.random.normal(jax.random.PRNGKey(4), (2, 4 * 256 + 5))
    x = x.at[1, 3].set(jnp.nan).at[1, 4 * 256 + 2].set(jnp.nan).at[0, 4 * 256 + 1].set(0.0)  # the last block partial
    lo, hi = jnp.array([-0.1, 0.5]), jnp.array([0.2, 1.5])
    out = compact(x, lo, hi, 256, 0, backend, block_slots=128)
    for row in range(2):
        for b in range(5):
            xs = np.asarray(x[row, 256 * b: 256 * (b + 1)])
            members = xs[(xs >= float(lo[row])) & (xs < float(hi[row]))]
            window = np.asarray(out.buf[row, 128 * b: 128 * (b + 1)])
            assert np.array_equal(window[: members.size], members) and np.all(window[members.size:] == -np.inf)
            assert int(out.valid[row, 128 * b: 128 * (b + 1)].sum()) == members.size
    assert out.count.tolist() == jnp.sum((x >= lo[:, None]) & (x < hi[:, None]), axis=1).tolist()
    assert out.c_hi.tolist() == jnp.sum(x >= hi[:, None], axis=1).tolist() and out.has_nan.tolist() == [False, True]
    assert out.kept.tolist() == [True, True]
    assert compact(x, lo, hi, 256, 0, backend, block_slots=16).kept.tolist() == [False, False]


@pytest.mark.parametrize("block", [1024, 1 << 15])  # packed into one int32 sum, and not
def test_a_blocks_member_and_above_counts(block):
    x = jax.random.normal(jax.random.PRNGKey(block), (block,))
    member, above = (x >= 0.5) & (x < 1.0), x >= 1.0
    got = _compact.member_and_above_counts(member, above)
    assert [int(g) for g in got] == [int(jnp.sum(member)), int(jnp.sum(above))]
    full = _compact.member_and_above_counts(jnp.ones(block, bool), jnp.ones(block, bool))
    assert [int(g) for g in full] == [block, block]


def test_a_block_window_that_overflows_falls_back_to_one_buffer_per_row(monkeypatch):
    x = jnp.sort(jax.random.normal(jax.random.PRNGKey(8), (65_537,)))  # the tail in the last blocks
    cfg = SMALL._replace(block_slots=8)
    rank = _rank(x.size, 0.01)
    assert not bool(_select(x[None], rank, cfg)[2][0])
    sort = select._sorted_select
    wrong = lambda x, rank: (lambda v, e, nans: (v + 1.0, e, nans))(*sort(x, rank))
    monkeypatch.setattr(select, "_sorted_select", wrong)  # the sort, were it to run, would be off by one
    np.testing.assert_allclose(risk.cvar_large(x, 0.01, config=cfg), risk.cvar(x, 0.01), rtol=2e-6)


def test_gradient_is_exact_subgradient():
    x = jax.random.normal(jax.random.PRNGKey(3), (50_000,))
    g_large = jax.grad(lambda x: risk.cvar_large(x, 0.013, config=SMALL))(x)
    g_sort = jax.grad(lambda x: risk.cvar(x, 0.013))(x)
    np.testing.assert_allclose(g_large, g_sort, atol=1e-7)
    ties = jnp.round(x)
    g_ties = jax.grad(lambda x: risk.cvar_large(x, 0.013, config=SMALL))(ties)
    assert float(jnp.sum(g_ties)) == pytest.approx(1.0, rel=1e-5)
    rows = jnp.stack([x, ties])
    g_rows = jax.grad(lambda x: jnp.sum(risk.cvar_large(x, 0.013, config=SMALL) * jnp.array([1.0, 2.0])))(rows)
    np.testing.assert_allclose(g_rows, jnp.stack([g_large, 2 * g_ties]), atol=1e-7)


def test_default_path_off_gpu_and_jit():
    x = jax.random.normal(jax.random.PRNGKey(4), (10_000,))
    value = jax.jit(lambda x: risk.cvar_large(x, 0.05))(x)
    assert float(value) == pytest.approx(float(risk.cvar(x, 0.05)), rel=1e-6)


@pytest.mark.parametrize("kwargs, match", [(dict(tail_prob=1.0), "tail_prob"), (dict(tail_prob=0.1, side="up"), "side")])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        risk.cvar_large(jnp.arange(10.0), **kwargs)
    with pytest.raises(ValueError, match="samples"):
        risk.cvar_large(jnp.zeros((2, 0)), 0.1)


def test_rows_past_int32_counts_are_refused_at_trace_time():
    too_long = jax.ShapeDtypeStruct((2**31,), jnp.float32)
    for f in (risk.cvar_large, risk.var_large):
        with pytest.raises(ValueError, match="samples: rows of at most"):
            jax.eval_shape(lambda x: f(x, 0.01), too_long)
    assert jax.eval_shape(lambda x: risk.cvar_large(x, 0.01), jax.ShapeDtypeStruct((4, 2**31 - 1), jnp.float32)).shape == (4,)


HIST = SMALL._replace(method="histogram")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_signed_keys_order_like_the_values_and_invert(dtype):
    x = jnp.array([-jnp.inf, -3e4, -1.5, -1e-7, -0.0, 0.0, 1e-7, 1.0, 1.5, 3e4, jnp.inf], dtype)
    x = jnp.concatenate([x, jnp.nextafter(x[1:-1], x[2:])]).sort()
    keys = np.asarray(signed_keys(x)).astype(np.int64)
    assert np.all(np.diff(keys) >= 0) and np.all(np.diff(keys)[np.diff(np.asarray(x, np.float64)) > 0] > 0)
    back = from_signed_keys(signed_keys(x), x.dtype)
    assert np.array_equal(np.asarray(back).view(np.uint8), np.asarray(x).view(np.uint8))  # bit for bit


@pytest.mark.parametrize(
    "kind, p", [("normal", 0.3), ("normal", 0.01), ("sorted", 0.05), ("tiny", 0.01), ("huge", 0.3)]
)
def test_key_histogram_pass_selects_exactly_in_one_pass(kind, p, monkeypatch):
    x = {"tiny": 1e-30 * _inputs("normal", 200_003), "huge": 1e30 * _inputs("normal", 200_003)}.get(kind)
    x = (_inputs(kind, 200_003) if x is None else x)[None]
    rank = _rank(x.shape[1], p)
    # A subsample of 16384 brackets these tails within 3M keys: with 4M bins each bin is one
    # key, and a compaction pass (poisoned here) would have to be the branch taken to matter.
    poisoned = lambda x, *a: (jnp.full(x.shape[:1], jnp.nan, x.dtype),) * 2 + (jnp.zeros(x.shape[:1], bool),) * 2
    monkeypatch.setattr(select, "_select_compact", poisoned)
    v, e, ok, _ = _select(x, rank, HIST._replace(sample_size=1 << 14, key_bins=1 << 22))
    want = -jnp.sort(-x[0])[rank - 1]
    assert bool(ok[0]) and float(v[0]) == float(want)
    exact = np.sum(np.maximum(np.asarray(x[0], np.float64) - float(want), 0.0))
    assert float(e[0]) == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize("kind, p", [("normal", 0.01), ("cauchy", 1e-4), ("sorted", 0.3)])
def test_a_bracket_wider_than_the_bins_is_refined_by_compacting_the_bin_of_v(kind, p, monkeypatch):
    x = _inputs(kind, 200_003)[None]
    rank = _rank(x.shape[1], p)
    calls, compact_select = [], select._select_compact

    def spy(x, rank, lo, hi, cfg):  # records the bracket when (and only if) the branch runs
        jax.debug.callback(lambda lo, hi: calls.append((np.asarray(lo), np.asarray(hi))), lo, hi)
        return compact_select(x, rank, lo, hi, cfg)

    monkeypatch.setattr(select, "_select_compact", spy)
    # single values: with runs of 32, the Cauchy bracket (from the top) has all its members in v's bin
    cfg = HIST._replace(key_bins=16, sample_run=1)
    v, e, ok, _ = _select(x, rank, cfg)
    (lo, hi), = calls
    want = float(-jnp.sort(-x[0])[rank - 1])
    assert bool(ok[0]) and float(v[0]) == want and float(lo[0]) <= want < float(hi[0])
    members = int(jnp.sum((x[0] >= lo[0]) & (x[0] < hi[0])))
    assert 1 <= members < int(jnp.sum((x[0] >= HIST_BRACKET(x, rank, cfg)[0]) & (x[0] < HIST_BRACKET(x, rank, cfg)[1])))
    np.testing.assert_allclose(risk.cvar_large(x, p, config=cfg), risk.cvar(x, p), rtol=2e-6)


def HIST_BRACKET(x, rank, cfg=HIST):
    lo, hi = _bracket.sample_bracket(x, rank, _bracket.sample_size(*x.shape, cfg), cfg)
    return lo[0], hi[0]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_key_histogram_pass_selects_exactly_in_16_bit(dtype):
    x = _inputs("normal", 200_003).astype(dtype)[None]
    for p in [0.3, 0.01]:
        rank = _rank(x.shape[1], p)
        v, _, ok, _ = _select(x, rank, HIST)
        assert bool(ok[0]) and float(v[0]) == float(-jnp.sort(-x[0])[rank - 1])


def test_key_histogram_kernel_in_interpret_mode_matches_xla():
    x = jax.random.normal(jax.random.PRNGKey(8), (2, 4096)).at[1, 9].set(jnp.nan).at[0, 5].set(jnp.inf)
    lo, hi = jnp.array([1.0, -0.5]), jnp.array([2.0, 0.25])
    key_lo, shift = signed_keys(lo), jnp.array([12, 18], jnp.int32)  # row 1 spans 8032 bins: both drop those past the last
    xla = key_histogram(x, lo, hi, key_lo, shift, 256, 4096, "xla")
    interp = key_histogram(x, lo, hi, key_lo, shift, 256, 4096, "interpret")
    assert int(jnp.sum(xla[0])) > 100
    for a, b in zip(xla[:2] + xla[3:], interp[:2] + interp[3:]):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert xla[3].tolist() == [False, True]  # the NaN flag, read off row 1's NaN excess
    np.testing.assert_allclose(xla[2], interp[2], rtol=1e-6)
    cfg = HIST._replace(backend="interpret", sample_size=2048, key_bins=1 << 12)
    y = jax.random.normal(jax.random.PRNGKey(2), (2, 20_003)).at[1, 7].set(jnp.nan)
    rank = _rank(y.shape[1], 0.01)
    v, e, ok, has_nan = _select(y, rank, cfg)
    assert bool(ok[0]) and has_nan.tolist() == [False, True] and float(v[0]) == float(-jnp.sort(-y[0])[rank - 1])


def test_histogram_method_is_refused_for_float64_and_unknown_methods():
    x = jnp.zeros((1, 2048), jnp.float32)
    with pytest.raises(ValueError, match="config.method"):
        select._method(x, HIST._replace(method="radix"))
    if jax.config.jax_enable_x64:
        with pytest.raises(ValueError, match="config.method='histogram'"):
            select._method(x.astype(jnp.float64), HIST)
    with pytest.raises(ValueError, match="config.method"):
        select._method(x, HIST._replace(method="auto"))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_pallas_kernels_lower_to_triton_for_an_h200(dtype, monkeypatch):
    """Both full passes, the search's count kernel and the short rows' key search lower to
    Triton IR for an H200 (no GPU needed; compiling the IR to PTX is left to the device benchmarks)."""
    plt = pytest.importorskip("jax.experimental.pallas.triton")
    reg = pytest.importorskip("jax._src.pallas.triton.pallas_call_registration")
    if not hasattr(getattr(reg, "gpu_info_lib", None), "get_gpu_info"):
        pytest.skip("this jax has no GPU-info hook to stand an H200 in for")
    monkeypatch.setattr(reg.gpu_info_lib, "get_gpu_info", lambda: plt.get_gpu_info_from_version(plt.GpuVersion.H200))
    x = jax.ShapeDtypeStruct((1, 1 << 20), jnp.dtype(dtype))
    lo, k = jax.ShapeDtypeStruct((1,), jnp.float32), jax.ShapeDtypeStruct((1,), jnp.int32)
    thresholds = jnp.linspace(-1.0, 1.0, 64).astype(dtype)
    passes = [lambda x, lo, hi, k, s: key_histogram(x, lo, hi, k, s, 2048, 1 << 20, "pallas", 4),
              lambda x, lo, hi, k, s: compact(x, lo, hi, 2048, 1 << 16, "pallas", 4),
              lambda x, lo, hi, k, s: compact(x, lo, hi, 2048, 0, "pallas", 4, block_slots=32),
              lambda x, lo, hi, k, s: jax.vmap(lambda r: counts_at_least(r, thresholds, "pallas"))(x),
              lambda x, lo, hi, k, s: radix_select(x.reshape(1024, 1024)[:, :1000], 11, "pallas")]
    for full_pass in passes:
        text = jax.jit(full_pass).trace(x, lo, lo, k, k).lower(lowering_platforms=("cuda",)).as_text()
        assert "__gpu$xla.gpu.triton" in text


@pytest.mark.parametrize("method", ["compact", "histogram"])
def test_infinite_samples_give_infinite_cvar_not_nan(method):
    # at 1e-5 the bracket reaches the top (hi = +inf): +inf - hi must not enter the excess
    p = 1e-5
    x = jax.random.normal(jax.random.PRNGKey(9), (200_003,)).at[5].set(jnp.inf).at[7].set(-jnp.inf)
    cfg = SMALL._replace(method=method)
    assert float(risk.cvar_large(x, p, config=cfg)) == float(risk.cvar(x, p)) == np.inf
    assert float(risk.cvar_large(x, p, side="lower", config=cfg)) == -np.inf
    assert float(risk.var_large(x, p, config=cfg)) == float(risk.var(x, p))


@pytest.mark.parametrize("method", ["compact", pytest.param("histogram", marks=pytest.mark.slow)])
def test_a_search_over_infinite_samples_falls_back_exactly_not_to_nan(method):
    # both infinities in the subsample put the searched bracket at NaN (inf * 0): the row must
    # take the exact fallback, not read the NaN excess as a NaN sample
    x = jax.random.normal(jax.random.PRNGKey(3), (20_003,)).at[::100].set(jnp.inf).at[50::100].set(-jnp.inf)
    cfg = SMALL._replace(method=method, bracket="search")
    lo, hi = jax.jit(lambda x: _bracket.sample_bracket(x, 2_001, 2048, cfg))(x[None])
    assert float(lo[0]) == float(hi[0]) == np.inf  # the empty bracket, not NaN
    assert float(risk.cvar_large(x, 0.1, config=cfg)) == pytest.approx(float(risk.cvar(x, 0.1)), rel=1e-6)
    assert float(risk.var_large(x, 0.1, config=cfg)) == float(risk.var(x, 0.1))


@pytest.mark.parametrize("short", ["top_k", "radix"])
def test_rows_whose_var_is_infinite_give_infinite_cvar_not_nan(short):
    # the VaR itself is +-inf (more infinite values than the tail holds): inf - inf must not
    # enter the excess of a short row (the top_k path gave NaN here)
    x = jax.random.normal(jax.random.PRNGKey(4), (3, 300)).at[0, :10].set(jnp.inf).at[1, :10].set(-jnp.inf)
    cfg = SelectConfig(short=short, backend="xla")
    for side, inf_row in (("upper", 0), ("lower", 1)):
        got, ref = risk.cvar_large(x, 0.01, side=side, config=cfg), risk.cvar(x, 0.01, side=side)
        assert np.isinf(got[inf_row]) and got[inf_row] == ref[inf_row]
        np.testing.assert_allclose(got, ref, rtol=2e-6)
