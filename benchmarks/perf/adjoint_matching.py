"""Adjoint-matching iterations per second: tailjax (JAX, one jitted step) vs PyTorch, and the
memory and speed of a UNet fine-tuning step with its scale options.

    python -m benchmarks.perf.adjoint_matching --size small   # CPU, ratios only
    python -m benchmarks.perf.adjoint_matching --size paper   # GPU: batch 512, 40 steps, d = 2 and 64
    python -m benchmarks.perf.adjoint_matching --size paper --part unet   # GPU: UNet on 32x32x3 images

Part ``unet``: a class-conditional UNet velocity field on image events, one adjoint-matching
step at a size where the UNet's compute dominates, in the variants plain, ``remat`` (the loss
rematerialised over the time grid), ``bf16`` (``compute_dtype``), both, and the batch sharded
over every local device (``mesh``; with one device it equals plain). Memory is XLA's compiled
estimate (arguments + outputs + temporaries, ``memory_analysis``) and, on a GPU, the device's
peak bytes in use after the timed steps.

The PyTorch side is a faithful implementation of the same step (the PyPI package
``diffusiongym`` 2.0.1 ships environments and schedulers but no adjoint-matching trainer, and
pins torch 2.3.1): the same MLP velocity field with a sinusoidal time embedding, the same
memoryless sampler (memoryless first step, Euler-Maruyama, deterministic last step), the same
lean adjoint (exact kappa factor, VJPs by autograd) and the same loss over all interior times,
evaluated in one batched call, then Adam. Both start from the same weights, and one step's
loss is compared on the same noise before timing. Compile time (JAX) is reported separately.
"""

from __future__ import annotations

import math
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import _harness as harness
from tailjax.flows import (
    AdjointMatchingBatch, adjoint_matching, adjoint_matching_loss, lean_adjoint, memoryless_coefficients,
    memoryless_solve,
)
from tailjax.flows import cast_field
from tailjax.nn import UNet, VelocityField

SIZES = {
    "small": dict(batch=64, grid=10, hidden=(64, 64), dims=(2, 8), iters=5, repeats=3,
                  unet=dict(channels=(8, 16), image=(8, 8, 1), batch=8, grid=6, iters=2, repeats=2)),
    "paper": dict(batch=512, grid=40, hidden=(256, 256, 256), dims=(2, 64), iters=50, repeats=5,
                  unet=dict(channels=(128, 256, 256), image=(32, 32, 3), batch=64, grid=40, iters=5, repeats=3)),
}
EMB, MAXF, LR = 64, 100.0, 1e-4


def reward_jax(x):
    return -0.5 * jnp.sum((x - 1.0) ** 2)


# ------------------------------------------------------------------------------------- JAX
def jax_setup(d, cfg, key):
    module = VelocityField(hidden=cfg["hidden"], time_embedding_dim=EMB, max_frequency=MAXF)
    field = lambda p, x, t: module.apply(p, x, t)
    params = module.init(key, jnp.zeros(d), 0.0)
    base_params = jax.tree_util.tree_map(lambda a: a + 0.0, params)
    base = lambda x, t: field(base_params, x, t)
    kernel = adjoint_matching(field, base, lambda x, _: reward_jax(x), optax.adam(LR), d,
                              batch_size=cfg["batch"], num_steps=cfg["grid"])
    return field, params, base_params, kernel


def jax_loss_on_noise(field, params, base_params, x0, noise, grid):
    """The kernel's loss for given noise, from the library's pieces (for the equivalence check)."""
    coefs = memoryless_coefficients(num_steps=grid)
    _, traj = memoryless_solve(field, params, x0, noise, coefficients=coefs, return_trajectory=True)
    g = jax.vmap(jax.grad(reward_jax))(traj[:, -1])
    adj, vb = jax.vmap(lambda p, a: lean_adjoint(lambda x, t: field(base_params, x, t), p, a, coefs))(traj, -g)
    batch = AdjointMatchingBatch(traj, adj, vb, jnp.arange(1, grid))
    return adjoint_matching_loss(params, batch, None, velocity_fn=field, coefficients=coefs)[0]


def time_jax(kernel, params, cfg):
    """Compile time, then iterations/s of ``iters`` chained steps, ``repeats`` times."""
    step = jax.jit(kernel.step)
    state = kernel.init(params)
    t0 = time.perf_counter()
    compiled = step.lower(state, jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t0

    def run(state):
        for i in range(cfg["iters"]):
            state, info = compiled(state, jax.random.key(i))
        return state, info

    timing = harness.time_call(run, state, repeats=cfg["repeats"])
    runs = [cfg["iters"] / t for t in timing["times"]]
    return compile_s, runs, float(timing["output"][1].loss)


# ----------------------------------------------------------------------------------- PyTorch
def torch_impl(torch, d, cfg, flax_params, device):
    nn = torch.nn

    class Field(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [d + EMB, *cfg["hidden"], d]
            self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
            self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(MAXF), EMB // 2)))

        def forward(self, x, t):
            ang = t.reshape(-1, 1) * self.freqs
            h = torch.cat([x, torch.sin(ang).expand(x.shape[0], -1), torch.cos(ang).expand(x.shape[0], -1)], -1)
            for layer in self.layers[:-1]:
                h = torch.nn.functional.silu(layer(h))
            return self.layers[-1](h)

    def load(module):
        dense = flax_params["params"]
        with torch.no_grad():
            for i, layer in enumerate(module.layers):
                layer.weight.copy_(torch.from_numpy(np.asarray(dense[f"Dense_{i}"]["kernel"]).T.copy()))
                layer.bias.copy_(torch.from_numpy(np.asarray(dense[f"Dense_{i}"]["bias"]).copy()))
        return module.to(device)

    model, base = load(Field()), load(Field())
    for p in base.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    c = memoryless_coefficients(num_steps=cfg["grid"])
    ts = torch.tensor(np.asarray(c.ts), device=device)
    h, kap, nz = (torch.tensor(np.asarray(a), device=device) for a in (c.h, c.kappa, c.noise_scale))
    sig, alpha, beta = (torch.tensor(np.asarray(a), device=device) for a in (c.sigma, c.alpha, c.beta))
    K = cfg["grid"]

    def loss_on_noise(x0, noise):
        with torch.no_grad():  # trajectories under the current field, held fixed
            v0 = model(x0, ts[0])
            x = alpha[1] * (v0 + x0) + beta[1] * noise[:, 0]  # data prediction at t = 0 (rectified flow)
            traj = [x0, x]
            for k in range(1, K):
                x = x + h[k] * (2.0 * model(x, ts[k]) - kap[k] * x) + nz[k] * noise[:, k]
                traj.append(x)
        x1 = traj[-1].clone().requires_grad_(True)
        r = -0.5 * ((x1 - 1.0) ** 2).sum()
        (grad_r,) = torch.autograd.grad(r, x1)
        a = -grad_r
        adjoints, vbases = [None] * (K + 1), [None] * (K + 1)
        for k in range(K - 1, 0, -1):  # lean adjoint, backwards, exact kappa factor
            xk = traj[k + 1].detach().requires_grad_(True)
            vb = base(xk, ts[k + 1])
            (jt_a,) = torch.autograd.grad(vb, xk, a)
            a = (alpha[k] / alpha[k + 1]) * (a + 2.0 * h[k] * jt_a)
            adjoints[k], vbases[k + 1] = a, vb.detach()
        with torch.no_grad():
            vbases[1] = base(traj[1], ts[1])
        xs = torch.stack(traj[1:K])  # (K - 1, B, d), interior times
        tt = ts[1:K].reshape(-1, 1, 1).expand(-1, xs.shape[1], 1)
        v = model(xs.reshape(-1, d), tt.reshape(-1)).reshape(xs.shape)
        s = sig[1:K].reshape(-1, 1, 1)
        terms = (((2.0 / s) * (v - torch.stack(vbases[1:K])) + s * torch.stack(adjoints[1:K])) ** 2).sum(-1)
        return terms.sum(0).mean()

    def step(gen):
        x0 = torch.randn(cfg["batch"], d, device=device, generator=gen)
        noise = torch.randn(cfg["batch"], K, d, device=device, generator=gen)
        loss = loss_on_noise(x0, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return loss_on_noise, step


def time_torch(torch, step, cfg, device):
    """First step's time, then iterations/s of ``iters`` steps, ``repeats`` times."""
    gen = torch.Generator(device=device).manual_seed(0)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    step(gen)
    sync()
    first_s = time.perf_counter() - t0

    def run():
        for _ in range(cfg["iters"]):
            loss = step(gen)
        return loss

    timing = harness.time_call(run, repeats=cfg["repeats"], block=lambda loss: (sync(), loss)[1])
    return first_s, [cfg["iters"] / t for t in timing["times"]], timing["output"].item()


# ------------------------------------------------------------------------------------ UNet
def unet_rows(cfg):
    """Memory and it/s of one UNet adjoint-matching step in each scale variant."""
    u = cfg["unet"]
    module = UNet(channels=tuple(u["channels"]), time_dim=128, in_channels=u["image"][-1], time_scale=1000.0,
                  num_classes=10)
    field = lambda p, x, t, c: module.apply(p, x, t, c)
    params = jax.jit(module.init)(jax.random.key(0), jnp.zeros(u["image"]), jnp.zeros(()), jnp.zeros((), jnp.int32))
    reward = lambda x, _, c: -jnp.mean((x - 0.1 * c) ** 2)
    devices = jax.local_devices()
    mesh = jax.sharding.Mesh(np.asarray(devices), ("batch",)) if u["batch"] % len(devices) == 0 else None
    variants = {"plain": {}, "remat": {"remat": True}, "bf16": {"compute_dtype": jnp.bfloat16},
                "remat + bf16": {"remat": True, "compute_dtype": jnp.bfloat16}}
    if mesh is not None:
        variants[f"sharded over {len(devices)}"] = {"mesh": mesh}
        variants[f"sharded over {len(devices)} + remat + bf16"] = {"mesh": mesh, "remat": True,
                                                                 "compute_dtype": jnp.bfloat16}
    rows = []
    for name, options in variants.items():
        low = cast_field(field, options.get("compute_dtype"))
        base = lambda x, t, c, low=low: low(params, x, t, c)
        kernel = adjoint_matching(field, base, reward, optax.adam(LR), u["image"], batch_size=u["batch"],
                                  num_steps=u["grid"], contexts=jnp.arange(10), **options)
        state = kernel.init(params)
        t0 = time.perf_counter()
        compiled = jax.jit(kernel.step).lower(state, jax.random.key(0)).compile()
        compile_s = time.perf_counter() - t0
        mem = compiled.memory_analysis()
        estimate = None if mem is None else (mem.argument_size_in_bytes + mem.output_size_in_bytes
                                             + mem.temp_size_in_bytes) / 2**20

        def run(state):
            for i in range(u["iters"]):
                state, info = compiled(state, jax.random.key(i))
            return state, info

        timing = harness.time_call(run, state, repeats=u["repeats"])
        stats = devices[0].memory_stats() or {}
        row = {"variant": name, "it/s": u["iters"] / timing["seconds"], "compile s": compile_s,
               "XLA memory MiB": estimate, "peak MiB": stats.get("peak_bytes_in_use", 0) / 2**20 or None,
               "loss": float(timing["output"][1].loss)}
        rows.append(row)
        print(row, flush=True)
    return rows


def main(argv=None):
    parser = harness.parser(__doc__, sizes=tuple(SIZES), out="results/perf_adjoint_matching")
    parser.add_argument("--part", nargs="*", choices=["mlp", "unet"], default=["mlp", "unet"])
    args = parser.parse_args(argv)
    cfg = SIZES[args.size]
    if "unet" in args.part:
        u = cfg["unet"]
        rows = unet_rows(cfg)
        title = (f"UNet {tuple(u['channels'])} adjoint matching on {u['image']} images, batch {u['batch']}, "
                 f"{u['grid']} steps, {jax.devices()[0].device_kind}")
        harness.write_json(args.out, "adjoint_matching_unet", {"size": args.size, "config": u, "rows": rows})
        print(title + "\n" + harness.markdown_table(rows, ["variant", "it/s", "compile s", "XLA memory MiB",
                                                          "peak MiB", "loss"],
                                                     {"it/s": ".3f", "compile s": ".1f", "XLA memory MiB": ".1f",
                                                      "peak MiB": ".1f", "loss": ".4g"}))
        if "mlp" not in args.part:
            return rows
    try:
        import torch
    except ImportError:
        torch = None
    tdev = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
    result = {"size": args.size, "config": cfg, "jax_platform": jax.devices()[0].platform,
              "jax_device": jax.devices()[0].device_kind, "rows": []}
    if torch is not None:
        result["torch_device"] = torch.cuda.get_device_name() if tdev == "cuda" else "cpu"
    for d in cfg["dims"]:
        field, params, base_params, kernel = jax_setup(d, cfg, jax.random.key(d))
        row = {"d": d}
        row["jax_compile_s"], runs, _ = time_jax(kernel, params, cfg)
        row["jax_it_per_s"] = statistics.median(runs)
        row["jax_runs"] = runs
        if torch is not None:
            torch.manual_seed(0)
            loss_on_noise, step = torch_impl(torch, d, cfg, params, tdev)
            rng = np.random.default_rng(d)
            x0 = rng.standard_normal((cfg["batch"], d)).astype(np.float32)
            noise = rng.standard_normal((cfg["batch"], cfg["grid"], d)).astype(np.float32)
            lj = float(jax.jit(lambda p, b, x, z: jax_loss_on_noise(field, p, b, x, z, cfg["grid"]))(
                params, base_params, x0, noise))
            lt = loss_on_noise(torch.from_numpy(x0).to(tdev), torch.from_numpy(noise).to(tdev)).item()
            row["loss_jax"], row["loss_torch"] = lj, lt
            row["loss_rel_diff"] = abs(lj - lt) / abs(lj)
            row["torch_first_step_s"], truns, _ = time_torch(torch, step, cfg, tdev)
            row["torch_it_per_s"] = statistics.median(truns)
            row["torch_runs"] = truns
            row["speedup"] = row["jax_it_per_s"] / row["torch_it_per_s"]
        result["rows"].append(row)
        print({k: v for k, v in row.items() if not k.endswith("_runs")}, flush=True)
    harness.write_json(args.out, "adjoint_matching", result)
    _plot(result, args.out)
    print(_table(result))
    return result


def _table(result):
    """Absolute iterations/s from a GPU; on a CPU only the ratio to PyTorch is shown."""
    absolute = result["jax_platform"] == "gpu"
    title = (f"adjoint matching, batch {result['config']['batch']}, {result['config']['grid']} steps, JAX on "
             f"{result['jax_device']}" + (f", PyTorch on {result['torch_device']}" if "torch_device" in result else ""))
    rows = []
    for r in result["rows"]:
        row = {"d": r["d"], "JAX compile s": r["jax_compile_s"], "speedup": r.get("speedup"),
               "loss rel diff": r.get("loss_rel_diff")}
        if absolute:
            row["JAX it/s"], row["torch it/s"] = r["jax_it_per_s"], r.get("torch_it_per_s")
        rows.append(row)
    columns = ["d", "JAX it/s", "torch it/s"] if absolute else ["d"]
    table = harness.markdown_table(rows, columns + ["speedup", "JAX compile s", "loss rel diff"],
                                   {"JAX it/s": ".2f", "torch it/s": ".2f", "speedup": ".2f",
                                    "JAX compile s": ".2f", "loss rel diff": ".2e"})
    note = "" if absolute else "\n(CPU run: only the speed ratio to PyTorch; absolute times only from a GPU)"
    return f"{title}\n{table}{note}"


def _plot(result, out_dir):
    rows = [r for r in result["rows"] if "torch_it_per_s" in r]
    fig, ax = harness.figure(figsize=(5, 3.2))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["jax_it_per_s"] for r in rows], 0.4, label="tailjax (JAX)")
    ax.bar(x + 0.2, [r["torch_it_per_s"] for r in rows], 0.4, label="PyTorch (same step)")
    for i, r in enumerate(rows):
        ax.text(i, max(r["jax_it_per_s"], r["torch_it_per_s"]), f"{r['speedup']:.1f}x", ha="center", va="bottom")
    ax.set_xticks(x, [f"d = {r['d']}" for r in rows])
    ax.set_ylabel("iterations / s")
    ax.set_title(f"adjoint matching on {result['jax_device']}", fontsize=9)
    ax.legend(fontsize=8)
    harness.save_figure(fig, out_dir, "adjoint_matching")


if __name__ == "__main__":
    main()
