"""The PyTorch peer of the UNet adjoint-matching rows: a twin of :class:`tailjax.nn.UNet`
(same layers, loaded with the same weights) and one adjoint-matching step with it.

The step is the one of ``adjoint_matching.torch_impl`` on images with class labels: sampling
and the lean adjoint without a graph, then the loss time by time, each time's gradient
accumulated by its own ``backward`` (the memory of one time's activations, as JAX's
``remat=True``, without recomputing the forward pass). Modes: ``eager`` and ``compile``
(``torch.compile`` of the two velocity modules), each in float32 (TF32 products) and under
``torch.autocast`` to bfloat16.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.perf import _torch_modes as modes
from tailjax.flows import (
    AdjointMatchingBatch, adjoint_matching_loss, lean_adjoint, memoryless_coefficients, memoryless_solve,
)


def twin(torch, flax_params, channels, time_dim, in_channels, time_scale, num_classes, max_period=10_000.0):
    """A ``torch.nn.Module`` computing ``UNet(...).apply(flax_params, x, t, c)`` on NCHW images."""
    nn, F = torch.nn, torch.nn.functional

    def conv(kernel, bias):
        k = np.asarray(kernel)  # (kh, kw, in, out)
        layer = nn.Conv2d(k.shape[2], k.shape[3], k.shape[0], padding=k.shape[0] // 2)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(k.transpose(3, 2, 0, 1).copy()))
            layer.bias.copy_(torch.from_numpy(np.asarray(bias).copy()))
        return layer

    def dense(p):
        k = np.asarray(p["kernel"])
        layer = nn.Linear(*k.shape)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(k.T.copy()))
            layer.bias.copy_(torch.from_numpy(np.asarray(p["bias"]).copy()))
        return layer

    def norm(p, groups):
        scale = np.asarray(p["scale"])
        layer = nn.GroupNorm(groups, scale.shape[0], eps=1e-6)  # flax's default epsilon
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(scale.copy()))
            layer.bias.copy_(torch.from_numpy(np.asarray(p["bias"]).copy()))
        return layer

    class ResBlock(nn.Module):
        def __init__(self, p):
            super().__init__()
            cin, ch = p["Conv_0"]["kernel"].shape[2:]
            self.norm1, self.conv1 = norm(p["GroupNorm_0"], min(8, cin)), conv(**p["Conv_0"])
            self.emb = dense(p["Dense_0"])
            self.norm2, self.conv2 = norm(p["GroupNorm_1"], min(8, ch)), conv(**p["Conv_1"])
            self.skip = conv(**p["Conv_2"]) if "Conv_2" in p else None

        def forward(self, h, emb):
            r = self.conv1(F.silu(self.norm1(h))) + self.emb(emb)[:, :, None, None]
            r = self.conv2(F.silu(self.norm2(r)))
            return (h if self.skip is None else self.skip(h)) + r

    class UNet(nn.Module):
        def __init__(self, p):
            super().__init__()
            levels = len(channels)
            # flax names the outer Dense first: Dense_1 is applied to the embedding, Dense_0 after it
            self.emb_in, self.emb_out = dense(p["Dense_1"]), dense(p["Dense_0"])
            self.conv_in = conv(**p["Conv_0"])
            self.down = nn.ModuleList([ResBlock(p[f"_ResBlock_{i}"]) for i in range(levels)])
            self.mid = ResBlock(p[f"_ResBlock_{levels}"])
            self.up = nn.ModuleList([ResBlock(p[f"_ResBlock_{levels + 1 + i}"]) for i in range(levels - 1)])
            self.norm_out = norm(p["GroupNorm_0"], min(8, channels[0]))
            self.conv_out = conv(**p["Conv_1"])
            half = time_dim // 2
            self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half))

        def forward(self, x, t, c):
            ang = (t * time_scale).reshape(-1, 1).expand(x.shape[0], 1) * self.freqs
            emb = torch.cat([torch.sin(ang), torch.cos(ang), F.one_hot(c, num_classes).to(ang.dtype)], -1)
            emb = self.emb_out(F.silu(self.emb_in(emb)))
            h, skips = self.conv_in(x), []
            for i, block in enumerate(self.down):
                h = block(h, emb)
                if i < len(self.down) - 1:
                    skips.append(h)
                    h = F.avg_pool2d(h, 2)
            h = self.mid(h, emb)
            for block, skip in zip(self.up, reversed(skips)):
                h = block(torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), skip], 1), emb)
            return self.conv_out(F.silu(self.norm_out(h)))

    assert in_channels == np.asarray(flax_params["params"]["Conv_0"]["kernel"]).shape[2]
    return UNet(flax_params["params"])


def step_fn(torch, make_module, cfg, device, mode="eager", bf16=False, lr=1e-4):
    """``(step, loss_of)``: one adjoint-matching step on a fresh random batch, and the loss of
    the current weights on given ``(x0, noise, labels)``; the field is ``make_module()``."""
    weights, frozen = make_module().to(device), make_module().to(device)
    for p in frozen.parameters():
        p.requires_grad_(False)
    model, base = modes.wrap(torch, weights, mode), modes.wrap(torch, frozen, mode)
    opt = torch.optim.Adam(weights.parameters(), lr=lr, fused=str(device).startswith("cuda") or None)
    c = memoryless_coefficients(num_steps=cfg["grid"])
    ts, h, kap, nz, sig, alpha, beta = (torch.tensor(np.asarray(a), device=device, dtype=torch.float32)
                                        for a in (c.ts, c.h, c.kappa, c.noise_scale, c.sigma, c.alpha, c.beta))
    K, B = cfg["grid"], cfg["batch"]
    H, W, C = cfg["image"]
    autocast = lambda: torch.autocast(device_type=str(device).split(":")[0], dtype=torch.bfloat16, enabled=bf16)

    def field(module, x, t, labels):
        with autocast():
            return module(x, t, labels).float()

    def reward_grad(x, labels):  # gradient of sum_b -mean((x_b - 0.1 c_b)^2)
        return -2.0 * (x - 0.1 * labels.reshape(-1, 1, 1, 1)) / x[0].numel()

    def terms(x0, noise, labels, backward):
        with torch.no_grad():
            x = alpha[1] * (field(model, x0, ts[0], labels) + x0) + beta[1] * noise[0]
            traj = [x0, x]
            for k in range(1, K):
                x = x + h[k] * (2.0 * field(model, x, ts[k], labels) - kap[k] * x) + nz[k] * noise[k]
                traj.append(x)
        a = -reward_grad(traj[-1], labels)
        adjoints, vbases = [None] * (K + 1), [None] * (K + 1)
        for k in range(K - 1, 0, -1):  # lean adjoint, backwards
            xk = traj[k + 1].detach().requires_grad_(True)
            vb = field(base, xk, ts[k + 1], labels)
            jt_a = torch.autograd.grad(vb, xk, a)[0]
            a = (alpha[k] / alpha[k + 1]) * (a + 2.0 * h[k] * jt_a)
            adjoints[k], vbases[k + 1] = a, vb.detach()
        with torch.no_grad():
            vbases[1] = field(base, traj[1], ts[1], labels)
        total = 0.0
        for i in range(1, K):  # one time at a time, its gradient accumulated
            v = field(model, traj[i], ts[i], labels)
            term = (((2.0 / sig[i]) * (v - vbases[i]) + sig[i] * adjoints[i]) ** 2).sum((1, 2, 3)).mean()
            if backward:
                term.backward()
            total += float(term.detach()) if not backward else term.detach()
        return total

    def step(gen):
        x0 = torch.randn(B, C, H, W, device=device, generator=gen)
        noise = torch.randn(K, B, C, H, W, device=device, generator=gen)
        labels = torch.randint(0, 10, (B,), device=device, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss = terms(x0, noise, labels, backward=True)
        opt.step()
        return loss

    def loss_of(x0, noise, labels):
        return terms(x0, noise, labels, backward=False)

    return step, loss_of


def loss_parity(torch, flax_module, flax_params, u, device, batch=4):
    """|JAX loss - PyTorch loss| / |JAX loss| of the adjoint-matching loss on the same draws
    (``batch`` samples, a random head on ``flax_params``): the JAX side is the library's
    memoryless solve, lean adjoint and loss; the PyTorch side is ``step_fn``'s ``loss_of``."""
    params = random_head(flax_params)
    field = lambda p, x, t, c: flax_module.apply(p, x, t, c)
    K, image = u["grid"], tuple(u["image"])
    coefs = memoryless_coefficients(num_steps=K)
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((batch, *image)).astype(np.float32)
    noise = rng.standard_normal((batch, K, *image)).astype(np.float32)
    labels = np.arange(batch, dtype=np.int32) % 10

    @jax.jit
    def jax_loss(x0, noise, labels):
        _, traj = memoryless_solve(field, params, x0, noise, context=labels, coefficients=coefs,
                                   return_trajectory=True)
        grad = jax.vmap(jax.grad(lambda x, c: -jnp.mean((x - 0.1 * c.astype(x.dtype)) ** 2)))(traj[:, -1], labels)
        adj, vb = jax.vmap(lambda tr, a, c: lean_adjoint(lambda x, t, c: field(params, x, t, c), tr, a, coefs,
                                                         context=c))(traj, -grad, labels)
        batch_ = AdjointMatchingBatch(traj, adj, vb, jnp.arange(1, K), None, labels)
        return adjoint_matching_loss(params, batch_, None, velocity_fn=field, coefficients=coefs)[0]

    want = float(jax_loss(x0, noise, labels))
    make = lambda: twin(torch, params, tuple(u["channels"]), 128, image[-1], 1000.0, 10)
    _, loss_of = step_fn(torch, make, {**u, "batch": batch}, device)
    got = loss_of(torch.from_numpy(x0.transpose(0, 3, 1, 2).copy()).to(device),
                  torch.from_numpy(noise.transpose(1, 0, 4, 2, 3).copy()).to(device),
                  torch.from_numpy(labels).long().to(device))
    return abs(want - float(got)) / abs(want)


def random_head(flax_params, scale=0.01):
    """The parameters with a random last convolution (the UNet's starts at zero, which would
    make any twin agree on the output)."""
    params = jax.tree_util.tree_map(lambda a: a, flax_params)
    head = params["params"]["Conv_1"]["kernel"]
    params["params"]["Conv_1"]["kernel"] = scale * jax.random.normal(jax.random.key(1), head.shape)
    return params


def peer_rows(torch, u, flax_module, flax_params, device, torch_modes, precisions=("bf16", "float32"), log=print,
              on_row=None):
    """One row per (precision, mode): first step (compile included), it/s, peak memory; and
    the twin's agreement with JAX: the UNet's output (max abs difference / max abs output)
    and the loss on the same draws (:func:`loss_parity`).
    ``on_row(rows)`` runs after each row."""
    make = lambda: twin(torch, flax_params, tuple(u["channels"]), 128, u["image"][-1], 1000.0, 10)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, *u["image"])).astype(np.float32)
    t = np.float32(0.3)
    labels = np.arange(4, dtype=np.int32)
    params = random_head(flax_params)
    want = np.asarray(jax.vmap(lambda x, c: flax_module.apply(params, x, t, c))(x, labels))
    with torch.no_grad():
        got = twin(torch, params, tuple(u["channels"]), 128, u["image"][-1], 1000.0, 10).to(device)(
            torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device), torch.tensor(t, device=device),
            torch.from_numpy(labels).long().to(device))
    parity = float(np.abs(got.cpu().numpy().transpose(0, 2, 3, 1) - want).max() / np.abs(want).max())
    loss_diff = loss_parity(torch, flax_module, flax_params, u, device)
    log(f"PyTorch UNet twin: forward max abs diff / max abs output {parity:.2e}, loss rel diff {loss_diff:.2e}")
    rows = []
    for precision in precisions:
        bf16 = precision == "bf16"

        def bench(mode):
            torch.manual_seed(0)
            if str(device).startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            step, _ = step_fn(torch, make, u, device, mode, bf16)
            first, runs, loss = modes.time_steps(torch, step, device, u["iters"], u["repeats"])
            its = sorted(runs)
            peak = torch.cuda.max_memory_allocated() / 2**20 if str(device).startswith("cuda") else None
            out = {"first_step_s": first, "it_per_s": its[len(its) // 2], "runs": its, "peak_MiB": peak,
                   "loss": float(loss)}
            log(f"PyTorch UNet {mode} {precision}: {out['it_per_s']:.3f} it/s (first step {first:.1f} s, "
                f"peak {peak} MiB)")
            return out

        for mode in torch_modes:
            if mode == "cudagraphs":  # the step differentiates through the field inside a loop: not captured
                continue
            r = modes.run_modes(torch, [mode], str(device).split(":")[0], bench, log=log)[mode]
            rows.append({"mode": mode, "precision": precision, "forward_parity": parity,
                         "loss_parity": loss_diff, **r})
            if on_row is not None:
                on_row(rows)
    return rows
