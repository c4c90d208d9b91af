"""TFFT's experiment set-ups: Table 4 (prior N(0, I_2), r = x1 + x2, alpha = 1) with its exact
targets by quadrature, the paper's numbers and flow pre-training; the class-conditional digit
images (scikit-learn 8 x 8 or USPS 16 x 16), their classifier, margin reward, diversity
measure and UNet velocity field.

Names are the library's: ``quantile_level`` is TFFT's beta, ``temperature`` its alpha,
R-CVaR_beta the mean of the top 1 - beta of rewards (``side="upper"``), L-CVaR_beta the mean
of the bottom beta (``side="lower"``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

from tailjax.flows import fit_flow_matching
from tailjax.nn import UNet, VelocityField
from tailjax.risk import cvar, pseudo_reward, solve_threshold
from tailjax.training import fit, gradient_kernel, minibatches

__all__ = [
    "TEMPERATURE", "PAPER", "T_STAR_UPPER", "reward", "metrics", "table4_exact", "table4_reweighting",
    "pretrain", "l_tfft_decomposition", "digit_images", "DigitClassifier", "train_classifier", "margin_reward",
    "diversity", "unet_field",
]

TEMPERATURE = 1.0  # TFFT's alpha in Table 4
T_STAR_UPPER = 5.2772  # the R-TFFT threshold at beta = 0.8 (quadrature)
# TFFT's Table 4: E[r] / R-CVaR_0.8 / L-CVaR_0.2 of each fine-tuned model.
PAPER = {"Pre-trained": (0.00, 1.99, -1.98), "EXP-FT": (2.03, 4.06, 0.03),
         "L-TFFT": (2.00, 3.08, 1.23), "R-TFFT": (1.26, 6.31, -1.80)}


def reward(x):
    """Table 4's reward r(x) = x1 + x2 (per sample)."""
    return x[0] + x[1]


def metrics(r, w=None, upper=0.8, lower=0.2):
    """[E[r], R-CVaR_upper, L-CVaR_lower] of (weighted) rewards, TFFT's quantile levels."""
    r = jnp.asarray(r)
    mean = jnp.mean(r) if w is None else jnp.sum(w * r) / jnp.sum(w)
    return [float(mean), float(cvar(r, 1 - upper, weights=w)), float(cvar(r, lower, weights=w, side="lower"))]


def table4_exact(grid_points=750_001):
    """Exact Table 4: r ~ N(0, 2) under the prior and each target's law of r is a 1-D tilt of
    it, so quadrature on a grid of r gives its metrics, t* and quantile function."""
    with jax.enable_x64(True):
        r = jnp.linspace(-30.0, 45.0, grid_points)
        logphi = norm.logpdf(r, scale=jnp.sqrt(2.0))
        w0 = jnp.exp(logphi)
        t_l = float(solve_threshold(r, 0.2, TEMPERATURE, "lower", w0))
        t_r = float(solve_threshold(r, 0.8, TEMPERATURE, "upper", w0))
        rows = {"Pre-trained": (w0, None)}
        rows["EXP-FT"] = (jnp.exp(logphi + r / TEMPERATURE - logsumexp(logphi + r / TEMPERATURE)), None)
        for name, t, beta, side in (("L-TFFT", t_l, 0.2, "lower"), ("R-TFFT", t_r, 0.8, "upper")):
            lw = logphi + pseudo_reward(r, t, beta, side) / TEMPERATURE
            rows[name] = (jnp.exp(lw - logsumexp(lw)), t)
        out = {k: {"metrics": metrics(r, w), "t_star": t} for k, (w, t) in rows.items()}
        u = np.linspace(0.001, 0.999, 999)
        for k, (w, _) in rows.items():
            cdf = np.cumsum(np.asarray(w)) / float(jnp.sum(w))
            out[k]["quantiles"] = np.interp(u, cdf, np.asarray(r)).tolist()
        out["u"] = u.tolist()
    return out


def table4_reweighting(reps):
    """The paper's R-TFFT row: t* and the target estimated by reweighting 10^4 prior samples,
    ``reps`` times."""
    rows = []
    with jax.enable_x64(True):
        for s in range(reps):
            r = jnp.sqrt(2.0) * jax.random.normal(jax.random.key(1000 + s), (10_000,))
            t = solve_threshold(r, 0.8, TEMPERATURE, "upper")
            w = jax.nn.softmax(pseudo_reward(r, t, 0.8, "upper") / TEMPERATURE)
            rows.append([float(t)] + metrics(r, w) + [float(jnp.max(w))])
    a = np.array(rows)
    return {"mean": a.mean(0).tolist(), "std": a.std(0).tolist(),
            "columns": ["t*", "E", "R-CVaR", "L-CVaR", "max weight"]}


def pretrain(key, data, hidden, *, num_steps, batch_size, lr, time_embedding_dim=32, linear_skip=False):
    """Flow matching on ``data: (n, d)`` with an MLP velocity field and a cosine learning rate.

    Returns ``(field, params, fit_result)`` with ``field(params, x, t)`` per sample.
    """
    module = VelocityField(hidden=tuple(hidden), time_embedding_dim=time_embedding_dim, linear_skip=linear_skip)
    field = lambda p, x, t: module.apply(p, x, t)
    k_init, k_fit = jax.random.split(key)
    sched = optax.cosine_decay_schedule(lr, num_steps, alpha=0.05)
    res = fit_flow_matching(k_fit, field, module.init(k_init, jnp.zeros(data.shape[1]), 0.0), data,
                            num_steps=num_steps, batch_size=batch_size, optimizer=optax.adam(sched), progress=False)
    return field, res.state.params, res


def l_tfft_decomposition(base_rewards, t_stage1, t_exact, beta=0.2):
    """Where an L-TFFT run's E[r] departs from the exact 2.000 before any fine-tuning error:

    * ``stage1``: the exact target's E[r] at the Stage-1 threshold (quadrature on r ~ N(0, 2)),
      i.e. the shift caused by the threshold's sampling error alone;
    * ``own_target``: E[r] of the pre-trained model's own L-TFFT target at the exact t*,
      by self-normalised reweighting of its samples ``base_rewards`` (the weights
      exp(-[t - r]_+ / (alpha beta)) are at most 1, so this estimate is stable).
    """
    with jax.enable_x64(True):
        r = jnp.linspace(-30.0, 45.0, 300_001)
        lw = norm.logpdf(r, scale=jnp.sqrt(2.0)) + pseudo_reward(r, t_stage1, beta, "lower") / TEMPERATURE
        stage1 = float(jax.nn.softmax(lw) @ r)
        b = jnp.asarray(base_rewards, jnp.float64)
        w = jax.nn.softmax(pseudo_reward(b, t_exact, beta, "lower") / TEMPERATURE)
        return {"stage1": stage1, "own_target": float(w @ b)}


# ---------------------------------------------------------------------------- image digits
def digit_images(name="sklearn", seed=0, reps=4):
    """Class-labelled digit images in [-1, 1], dequantised: ``(x (n, H, W, 1), labels (n,),
    x_test, labels_test)``. ``name``: "sklearn" (scikit-learn's 8 x 8 digits, 1797 images,
    pixels 0-16, dequantised ``reps`` times; the last 297 held out) or "usps" (16 x 16, read
    from $TAILJAX_DATA/usps with :func:`tailjax.dro.load_usps`)."""
    rng = np.random.default_rng(seed)
    if name == "sklearn":
        from sklearn.datasets import load_digits

        x_raw, y = load_digits(return_X_y=True)
        x_raw = x_raw.reshape(-1, 8, 8, 1).astype(np.float32)
        train, test = slice(0, 1500), slice(1500, None)
        x = np.concatenate([(x_raw[train] + rng.uniform(size=x_raw[train].shape)) / 17.0 for _ in range(reps)])
        y_train = np.tile(y[train], reps)
        x_test = (x_raw[test] + 0.5) / 17.0
        return (2 * x - 1).astype(np.float32), y_train.astype(np.int32), (2 * x_test - 1).astype(np.float32), \
            y[test].astype(np.int32)
    if name == "usps":
        from tailjax.dro import load_usps

        d = load_usps()
        to = lambda a: (2.0 * np.clip(a, 0.0, 1.0) - 1.0)[..., None].astype(np.float32)
        return to(d["x_train"]), d["y_train"], to(d["x_test"]), d["y_test"]
    raise ValueError(f"unknown digits data {name!r}")


class DigitClassifier(nn.Module):
    """A small CNN on (H, W, 1) digits: ``__call__`` gives logits (10,), ``features`` the
    penultimate 64-d representation (the feature space of the diversity measure)."""

    def setup(self):
        self.conv1, self.conv2 = nn.Conv(16, (3, 3)), nn.Conv(32, (3, 3))
        self.hidden, self.head = nn.Dense(64), nn.Dense(10)

    def features(self, x):
        h = nn.silu(self.conv1(x))
        h = nn.avg_pool(h, (2, 2), (2, 2))
        h = nn.silu(self.conv2(h))
        return nn.silu(self.hidden(h.reshape(h.shape[:-3] + (-1,))))

    def __call__(self, x):
        return self.head(self.features(x))


def train_classifier(key, x, y, steps=1500, batch_size=256):
    """Train :class:`DigitClassifier` (Adam 3e-3, cross-entropy); returns ``(params, module)``."""
    model = DigitClassifier()
    k_init, k_batch, k_fit = jax.random.split(key, 3)

    def loss(p, batch, _):
        xb, yb = batch
        logp = jax.nn.log_softmax(model.apply(p, xb))
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], 1)), {}

    kernel = gradient_kernel(loss, optax.adam(3e-3))
    res = fit(kernel, kernel.init(model.init(k_init, x[:1])), k_fit, steps,
              batches=minibatches(k_batch, (jnp.asarray(x), jnp.asarray(y)), batch_size), progress=False)
    return res.state.params, model


def margin_reward(clf_params, model):
    """r(x, c) = logit_c(x) - logsumexp_{j != c} logit_j(x): the classifier's log-odds of the
    conditioning class, unbounded above and below."""

    def reward(x, c):
        logits = model.apply(clf_params, x)
        others = jnp.where(jnp.arange(10) == c, -jnp.inf, logits)
        return logits[c] - jax.scipy.special.logsumexp(others)

    return reward


def diversity(features, labels):
    """Mean pairwise Euclidean distance of feature vectors within each class, averaged over classes."""
    f, y = np.asarray(features, np.float64), np.asarray(labels)
    out = []
    for c in np.unique(y):
        g = f[y == c]
        if len(g) > 1:
            d = np.sqrt(np.maximum(np.sum(g**2, 1)[:, None] + np.sum(g**2, 1)[None] - 2 * g @ g.T, 0.0))
            out.append(d.sum() / (len(g) * (len(g) - 1)))
    return float(np.mean(out))


def unet_field(channels, num_classes=10, time_dim=64):
    """A class-conditional UNet velocity field ``(module, field(p, x, t, c))`` on (H, W, 1) images."""
    module = UNet(channels=tuple(channels), time_dim=time_dim, in_channels=1, time_scale=1000.0,
                  num_classes=num_classes)
    return module, (lambda p, x, t, c: module.apply(p, x, t, c))
