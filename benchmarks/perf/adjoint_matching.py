"""Adjoint-matching iterations per second: tailjax (JAX, one jitted step) vs PyTorch, and the
memory and speed of a UNet fine-tuning step with its scale options.

    python -m benchmarks.perf.adjoint_matching --size small   # CPU, ratios only
    python -m benchmarks.perf.adjoint_matching --size paper --part mlp   # GPU: batch 512, 40 steps, three MLPs
    python -m benchmarks.perf.adjoint_matching --size paper --part unet   # GPU: UNet on 32x32x3 images
    python -m benchmarks.perf.adjoint_matching --size paper --part unet-torch --torch-modes eager compile
    python -m benchmarks.perf.adjoint_matching --size paper --part curve  # GPU: it/s against batch and width

Part ``unet``: a class-conditional UNet velocity field on image events, one adjoint-matching
step at a size where the UNet's compute dominates (paper: 25M parameters, batch 256), in the
variants ``remat + bf16``, ``remat`` (the loss rematerialised over the time grid), ``bf16``
(``compute_dtype``) and plain, and with several local devices the batch sharded over them
(``mesh``). Memory is XLA's compiled estimate (arguments + outputs + temporaries,
``memory_analysis``) and, on a GPU, the device's peak bytes in use since the process
started, read after the timed steps (so a row's peak is at least the rows' before it);
model TFLOP/s counts XLA's FLOPs of one evaluation times the evaluations of a step
(:func:`step_flops`). A variant that does not fit is reported with its error. Part
``unet-torch`` runs the PyTorch peer of that step (``_torch_unet``: the same UNet and weights,
eager and ``torch.compile``, float32 and bf16 autocast), after checking that its UNet and its
loss agree with JAX's.

Part ``curve``: JAX it/s of the MLP step against the batch (64 to 4096) and the width (256 to
4096, three layers), with the compute floor (model FLOPs at the H200's dense TF32 peak).

Part ``mlp``: MLP velocity fields at batch 512 and 40 steps, d = 2 and d = 64 with hidden
(256, 256, 256) (overhead-dominated), and d = 64 with hidden (4096, 4096, 4096) (about 34M
parameters, compute-dominated).

The PyTorch side is a faithful implementation of the same step (the PyPI package
``diffusiongym`` 2.0.1 ships environments and schedulers but no adjoint-matching trainer, and
pins torch 2.3.1): the same MLP velocity field with a sinusoidal time embedding, the same
memoryless sampler (memoryless first step, Euler-Maruyama, deterministic last step), the same
lean adjoint (exact kappa factor, VJPs by autograd) and the same loss over all interior times,
evaluated in one batched call, then Adam. Both start from the same weights, and one step's
loss is compared on the same noise (with the initial weights, after timing).

Every PyTorch mode runs in the same process (``--torch-modes``, see ``_torch_modes``):
``eager`` (VJPs by ``torch.autograd.grad``, as above); ``compile``, ``torch.compile`` in its
default mode; ``cudagraphs``, ``torch.compile(mode="reduce-overhead")``, which also captures
CUDA graphs (CUDA only; skipped with a reason elsewhere). What a compiled mode compiles is
``--torch-compile-scope``: ``step`` (default) compiles the whole loss as one static graph,
sampling loop, lean adjoint and loss, with the adjoint's VJPs and the reward gradient by
``torch.func`` (``torch.autograd.grad`` breaks the graph), while ``loss.backward()`` runs the
compiled backward and Adam stays eager; ``module`` compiles only the trained and the frozen
velocity modules, the step around them stays as in eager (one static graph per distinct call:
no-grad sampling, a VJP at one batch, the loss at all interior times). On a 2-core CPU (torch
2.13, ``--size small``) ``step`` ran 2.2x to 3.2x more iterations per second than ``module``
but compiles more slowly (at grid 40 on one busy core, 145 s against 12 s). Adam is the fused
kernel on CUDA in every mode. The first step's time includes compilation; the headline
speed-up is against the fastest PyTorch mode, the one against eager is shown too; each mode's
loss on the same noise is compared with JAX's and eager's. PyTorch computes float32 matmuls
at ``--torch-matmul-precision`` (TF32 on GPUs by default, as JAX does).
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
from benchmarks.perf import _torch_modes as modes
from benchmarks.perf import _torch_unet as torch_unet
from tailjax.flows import (
    AdjointMatchingBatch, adjoint_matching, adjoint_matching_loss, lean_adjoint, memoryless_coefficients,
    memoryless_solve,
)
from tailjax.flows import cast_field
from tailjax.nn import UNet, VelocityField

# ``models``: one row each, its entries override the size's defaults (d, hidden, iters, repeats)
SIZES = {
    "small": dict(batch=64, grid=10, hidden=(64, 64), iters=5, repeats=3,
                  models=(dict(d=2), dict(d=8), dict(d=8, hidden=(256, 256))),
                  unet=dict(channels=(8, 16), image=(8, 8, 1), batch=8, grid=6, iters=2, repeats=2)),
    "paper": dict(batch=512, grid=40, hidden=(256, 256, 256), iters=50, repeats=5,
                  models=(dict(d=2), dict(d=64, hidden=(4096, 4096, 4096), iters=10, repeats=3), dict(d=64)),
                  unet=dict(channels=(256, 512, 512), image=(32, 32, 3), batch=256, grid=20, iters=2, repeats=2)),
}
# ``--part curve``: JAX it/s against the batch (at the first width) and the MLP width (at the first batch)
CURVES = {"small": dict(d=8, grid=10, batches=(16, 64, 256), widths=(32, 128, 512), iters=5, repeats=3),
          "paper": dict(d=64, grid=40, batches=(512, 64, 128, 256, 1024, 2048, 4096),
                        widths=(256, 512, 1024, 2048, 4096), iters=10, repeats=3)}
# Dense tensor-core peaks of an H200 SXM (NVIDIA's data sheet, without sparsity), TFLOP/s
PEAK_TFLOPS = {"float32 (TF32)": 494.0, "bfloat16": 989.0}
EMB, MAXF, LR = 64, 100.0, 1e-4
SCOPES = ("step", "module")  # what a compiled PyTorch mode compiles


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
def torch_impl(torch, d, cfg, flax_params, device, mode="eager", scope="step"):
    """The step's pieces in PyTorch ``mode``: ``(loss_on_noise, step, restore)``; ``restore``
    puts the initial weights back. A compiled mode compiles the whole loss (``scope="step"``,
    lean adjoint by ``torch.func``) or only the two velocity modules (``scope="module"``)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
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

    weights, frozen = load(Field()), load(Field())
    for p in frozen.parameters():
        p.requires_grad_(False)
    initial = [p.detach().clone() for p in weights.parameters()]
    opt = torch.optim.Adam(weights.parameters(), lr=LR, fused=True if str(device).startswith("cuda") else None)
    functional = mode != "eager" and scope == "step"  # torch.autograd.grad would break the graph
    if scope == "module":
        model, base = modes.wrap(torch, weights, mode), modes.wrap(torch, frozen, mode)
        keep = modes.keeper(torch, mode)
    else:
        model, base, keep = weights, frozen, (lambda t: t)
    c = memoryless_coefficients(num_steps=cfg["grid"])
    ts = torch.tensor(np.asarray(c.ts), device=device)
    h, kap, nz = (torch.tensor(np.asarray(a), device=device) for a in (c.h, c.kappa, c.noise_scale))
    sig, alpha, beta = (torch.tensor(np.asarray(a), device=device) for a in (c.sigma, c.alpha, c.beta))
    K = cfg["grid"]

    def reward(x):
        return -0.5 * ((x - 1.0) ** 2).sum()

    def vjp_base(x, t, a):  # base field at x and its transposed Jacobian applied to a
        if functional:
            vb, pull = torch.func.vjp(lambda y: base(y, t), x)
            return vb, pull(a)[0]
        xk = x.detach().requires_grad_(True)
        vb = base(xk, t)
        return vb.detach(), torch.autograd.grad(vb, xk, a)[0]

    def loss_fn(x0, noise):
        with torch.no_grad():  # trajectories under the current field, held fixed
            v0 = model(x0, ts[0])
            x = alpha[1] * (v0 + x0) + beta[1] * noise[:, 0]  # data prediction at t = 0 (rectified flow)
            traj = [x0, x]
            for k in range(1, K):
                x = x + h[k] * (2.0 * model(x, ts[k]) - kap[k] * x) + nz[k] * noise[:, k]
                traj.append(x)
        if functional:
            a = -torch.func.grad(reward)(traj[-1])
        else:
            x1 = traj[-1].clone().requires_grad_(True)
            a = -torch.autograd.grad(reward(x1), x1)[0]
        adjoints, vbases = [None] * (K + 1), [None] * (K + 1)
        for k in range(K - 1, 0, -1):  # lean adjoint, backwards, exact kappa factor
            vb, jt_a = vjp_base(traj[k + 1], ts[k + 1], a)
            a = (alpha[k] / alpha[k + 1]) * (a + 2.0 * h[k] * jt_a)
            adjoints[k], vbases[k + 1] = a, keep(vb)
        with torch.no_grad():
            vbases[1] = keep(base(traj[1], ts[1]))
        xs = torch.stack(traj[1:K])  # (K - 1, B, d), interior times
        tt = ts[1:K].reshape(-1, 1, 1).expand(-1, xs.shape[1], 1)
        v = model(xs.reshape(-1, d), tt.reshape(-1)).reshape(xs.shape)
        s = sig[1:K].reshape(-1, 1, 1)
        terms = (((2.0 / s) * (v - torch.stack(vbases[1:K])) + s * torch.stack(adjoints[1:K])) ** 2).sum(-1)
        return terms.sum(0).mean()

    compiled_loss = modes.wrap(torch, loss_fn, mode) if scope == "step" else loss_fn

    def loss_on_noise(x0, noise):
        modes.step_begin(torch, mode)
        return compiled_loss(x0, noise)

    def step(gen):
        x0 = torch.randn(cfg["batch"], d, device=device, generator=gen)
        noise = torch.randn(cfg["batch"], K, d, device=device, generator=gen)
        loss = loss_on_noise(x0, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def restore():
        with torch.no_grad():
            for p, p0 in zip(weights.parameters(), initial):
                p.copy_(p0)

    return loss_on_noise, step, restore


# ------------------------------------------------------------------------------------ UNet
def forward_flops(apply, params, event, context=None):
    """XLA's FLOP count of one velocity evaluation of one sample, compiled for the CPU (on a
    GPU, convolutions become library calls that the count leaves out)."""
    cpu = jax.devices("cpu")[0]
    args = jax.device_put((params, jnp.zeros(event), jnp.zeros(())) + (() if context is None else (context,)), cpu)
    with jax.default_device(cpu):
        cost = jax.jit(apply).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"])


def step_flops(per_sample, batch, grid, remat=False):
    """Model FLOPs of one adjoint-matching step: ``grid`` sampling evaluations, ``grid``
    base VJPs (about 2 evaluations each), the loss at ``grid - 1`` times with its gradient
    (about 3 each; 4 when rematerialised)."""
    return per_sample * batch * (3 * grid + (4 if remat else 3) * (grid - 1))


def unet_rows(cfg, only=None, on_row=None, compile_only=False):
    """Memory, it/s and model TFLOP/s of one UNet adjoint-matching step in each scale variant
    (or those named in ``only``), with its compile time; each row is printed (and passed to
    ``on_row``) as soon as it is measured, and a variant that fails is a row with its error.
    ``compile_only``: compile and report XLA's memory plan, run nothing (whether a variant fits)."""
    u = cfg["unet"]
    module = UNet(channels=tuple(u["channels"]), time_dim=128, in_channels=u["image"][-1], time_scale=1000.0,
                  num_classes=10)
    field = lambda p, x, t, c: module.apply(p, x, t, c)
    params = jax.jit(module.init)(jax.random.key(0), jnp.zeros(u["image"]), jnp.zeros(()), jnp.zeros((), jnp.int32))
    n_params = int(sum(a.size for a in jax.tree_util.tree_leaves(params)))
    per_sample = forward_flops(field, params, u["image"], jnp.zeros((), jnp.int32))
    reward = lambda x, _, c: -jnp.mean((x - 0.1 * jnp.asarray(c, x.dtype)) ** 2)
    devices = jax.local_devices()
    mesh = jax.sharding.Mesh(np.asarray(devices), ("batch",)) if u["batch"] % len(devices) == 0 else None
    # the memory-lean variants first: plain may not fit at a compute-bound size
    variants = {"remat + bf16": {"remat": True, "compute_dtype": jnp.bfloat16}, "remat": {"remat": True},
                "bf16": {"compute_dtype": jnp.bfloat16}, "plain": {}}
    if mesh is not None and len(devices) > 1:
        variants[f"sharded over {len(devices)} + remat + bf16"] = {"mesh": mesh, "remat": True,
                                                                 "compute_dtype": jnp.bfloat16}
        variants[f"sharded over {len(devices)}"] = {"mesh": mesh}
    rows = []
    for name, options in variants.items():
        if only and name not in only:
            continue
        flops = step_flops(per_sample, u["batch"], u["grid"], options.get("remat", False))
        row = {"variant": name, "parameters": n_params, "model TFLOP/step": flops / 1e12}
        print(f"{time.strftime('%X')} {name}: compiling", flush=True)
        try:
            low = cast_field(field, options.get("compute_dtype"))
            base = lambda x, t, c, low=low: low(params, x, t, c)
            kernel = adjoint_matching(field, base, reward, optax.adam(LR), u["image"], batch_size=u["batch"],
                                      num_steps=u["grid"], contexts=jnp.arange(10), **options)
            state = kernel.init(params)
            t0 = time.perf_counter()
            compiled = jax.jit(kernel.step).lower(state, jax.random.key(0)).compile()
            row["compile s"] = time.perf_counter() - t0
            mem = compiled.memory_analysis()
            row["XLA memory MiB"] = None if mem is None else (
                mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes) / 2**20
            print(f"{time.strftime('%X')} {name}: compiled in {row['compile s']:.1f} s, "
                  f"XLA memory {row['XLA memory MiB']} MiB", flush=True)
            if compile_only:
                row["platform"] = devices[0].platform
                rows.append(row)
                print(row, flush=True)
                if on_row is not None:
                    on_row(rows)
                continue

            def run(state):
                for i in range(u["iters"]):
                    state, info = compiled(state, jax.random.key(i))
                return state, info

            timing = harness.time_call(run, state, repeats=u["repeats"])
            stats = devices[0].memory_stats() or {}
            row.update({"it/s": u["iters"] / timing["seconds"], "first call s": timing["compile_seconds"],
                        "peak MiB": stats.get("peak_bytes_in_use", 0) / 2**20 or None,
                        "loss": float(timing["output"][1].loss)})
            row["TFLOP/s"] = row["model TFLOP/step"] * row["it/s"]
        except Exception as err:  # e.g. out of memory: reported, and the next variant runs
            row["error"] = repr(err)[:300]
        rows.append(row)
        print(row, flush=True)
        if on_row is not None:
            on_row(rows)
    return rows


# ----------------------------------------------------------------------------- it/s curves
def curve_rows(size, on_row=None):
    """JAX it/s of the MLP step against the batch (width = the first width) and the width
    (batch = the first batch), three hidden layers, with XLA's model FLOPs per step."""
    c = CURVES[size]
    specs = [("batch", b, c["widths"][0]) for b in c["batches"]]
    specs += [("width", c["batches"][0], w) for w in c["widths"][1:]]
    rows = []
    for axis, batch, width in specs:
        rc = {"batch": batch, "grid": c["grid"], "hidden": (width,) * 3, "iters": c["iters"], "repeats": c["repeats"]}
        field, params, _, kernel = jax_setup(c["d"], rc, jax.random.key(0))
        per_sample = forward_flops(field, params, (c["d"],))
        compile_s, runs, _ = time_jax(kernel, params, rc)
        row = {"axis": axis, "batch": batch, "width": width, "d": c["d"], "grid": c["grid"],
               "parameters": int(sum(a.size for a in jax.tree_util.tree_leaves(params))),
               "compile s": compile_s, "it/s": statistics.median(runs), "runs": runs,
               "model TFLOP/step": step_flops(per_sample, batch, c["grid"]) / 1e12}
        row["TFLOP/s"] = row["model TFLOP/step"] * row["it/s"]
        rows.append(row)
        print({k: v for k, v in row.items() if k != "runs"}, flush=True)
        if on_row is not None:
            on_row(rows)
    return rows


def _plot_curves(rows, device, out_dir):
    """it/s against batch and against parameters, log-log, with the compute floor (the
    model FLOPs at the TF32 peak) drawn beside."""
    peak = PEAK_TFLOPS["float32 (TF32)"]
    fig, axes = harness.figure(1, 2, figsize=(9, 3.4))
    for ax, axis, key, label in [(axes[0], "batch", "batch", "batch"), (axes[1], "width", "parameters", "parameters")]:
        sel = sorted([r for r in rows if r["axis"] == axis or (axis == "width" and r is rows[0])], key=lambda r: r[key])
        xs = [r[key] for r in sel]
        ax.plot(xs, [r["it/s"] for r in sel], "o-", label="tailjax (JAX)")
        ax.plot(xs, [peak / r["model TFLOP/step"] for r in sel], "k--", label=f"floor: model FLOPs at {peak:.0f} TFLOP/s")
        ax.set_xscale("log")
        ax.set_yscale("log")
        if axis == "batch":
            ax.set_xticks(xs, [str(x) for x in xs], fontsize=7)
            ax.minorticks_off()
        ax.set_xlabel(label)
        ax.set_ylabel("iterations / s")
        ax.legend(fontsize=7)
    axes[0].set_title(f"MLP {rows[0]['width']}x3, d = {rows[0]['d']}, {rows[0]['grid']} steps", fontsize=9)
    axes[1].set_title(f"batch {rows[0]['batch']}, widths {sorted({r['width'] for r in rows})}", fontsize=9)
    fig.suptitle(f"adjoint matching on {device}", fontsize=9)
    harness.save_figure(fig, out_dir, "adjoint_matching_curves")


def mlp_row(spec, cfg, torch, tdev, torch_modes, scope="step", log=print):
    """JAX and every PyTorch mode on one MLP model; ``spec`` overrides ``cfg``."""
    rc = {**cfg, **spec}
    d = rc["d"]
    field, params, base_params, kernel = jax_setup(d, rc, jax.random.key(d))
    row = {"d": d, "hidden": tuple(rc["hidden"]), "iters": rc["iters"], "repeats": rc["repeats"],
           "parameters": int(sum(a.size for a in jax.tree_util.tree_leaves(params)))}
    row["jax_compile_s"], runs, _ = time_jax(kernel, params, rc)
    row["jax_it_per_s"] = statistics.median(runs)
    row["jax_runs"] = runs
    log(f"{_label(row)}: JAX {row['jax_it_per_s']:.3f} it/s (compile {row['jax_compile_s']:.1f} s)")
    if torch is None:
        return row
    rng = np.random.default_rng(d)
    x0 = rng.standard_normal((rc["batch"], d)).astype(np.float32)
    noise = rng.standard_normal((rc["batch"], rc["grid"], d)).astype(np.float32)
    lj = float(jax.jit(lambda p, b, x, z: jax_loss_on_noise(field, p, b, x, z, rc["grid"]))(
        params, base_params, x0, noise))
    row["loss_jax"] = lj

    def bench(mode):
        torch.manual_seed(0)
        loss_on_noise, step, restore = torch_impl(torch, d, rc, params, tdev, mode, scope)
        first_s, truns, _ = modes.time_steps(torch, step, tdev, rc["iters"], rc["repeats"])
        restore()  # the parity check uses the initial weights, as JAX does
        lt = loss_on_noise(torch.from_numpy(x0).to(tdev), torch.from_numpy(noise).to(tdev)).item()
        out = {"first_step_s": first_s, "it_per_s": statistics.median(truns), "runs": truns, "loss": lt,
               "loss_rel_diff": abs(lj - lt) / abs(lj)}
        log(f"{_label(row)}: PyTorch {mode} {out['it_per_s']:.3f} it/s (first step {first_s:.1f} s), "
            f"loss rel diff to JAX {out['loss_rel_diff']:.2e}")
        return out

    per_mode = modes.run_modes(torch, torch_modes, tdev, bench, log=log)
    eager = per_mode.get("eager", {}).get("loss")
    for mode, r in per_mode.items():
        if "loss" in r and eager is not None:
            r["loss_rel_diff_eager"] = abs(r["loss"] - eager) / abs(eager)
            if r["loss_rel_diff_eager"] > 1e-4:
                log(f"warning: PyTorch {mode} loss differs from eager by {r['loss_rel_diff_eager']:.2e} (rel)")
    row["torch"] = per_mode
    row["torch_it_per_s"] = {m: r["it_per_s"] for m, r in per_mode.items() if "it_per_s" in r}
    best = modes.fastest(per_mode, "it_per_s", higher_is_better=True)
    if best is not None:
        row["torch_fastest"] = best
        row["loss_rel_diff"] = per_mode[best]["loss_rel_diff"]
        row["speedup"] = row["jax_it_per_s"] / row["torch_it_per_s"][best]
    if "eager" in row["torch_it_per_s"]:
        row["speedup_vs_eager"] = row["jax_it_per_s"] / row["torch_it_per_s"]["eager"]
    return row


def main(argv=None):
    parser = harness.parser(__doc__, sizes=tuple(SIZES), out="results/perf_adjoint_matching")
    parser.add_argument("--part", nargs="*", choices=["mlp", "unet", "unet-torch", "curve"], default=["mlp", "unet"])
    modes.add_arguments(parser)
    parser.add_argument("--torch-compile-scope", choices=SCOPES, default="step",
                        help="what the compiled PyTorch modes compile: the whole loss or the velocity modules")
    parser.add_argument("--models", type=int, nargs="+", help="rows of the size's models to run (indices; default all)")
    parser.add_argument("--unet-variants", nargs="+", help="UNet variants to run (e.g. plain 'remat + bf16'; default all)")
    parser.add_argument("--unet-channels", type=int, nargs="+", help="UNet widths per level (default: the size's)")
    parser.add_argument("--unet-batch", type=int, help="UNet batch (default: the size's)")
    parser.add_argument("--unet-grid", type=int, help="UNet time steps (default: the size's)")
    parser.add_argument("--unet-compile-only", action="store_true",
                        help="compile the UNet variants and report XLA's memory plan without running them")
    args = parser.parse_args(argv)
    cfg = SIZES[args.size]
    if "curve" in args.part:
        device = jax.devices()[0].device_kind
        write = lambda rows: harness.write_json(args.out, "adjoint_matching_curves", {
            "size": args.size, "config": CURVES[args.size], "device": device, "peak_tflops": PEAK_TFLOPS, "rows": rows})
        rows = curve_rows(args.size, write)
        _plot_curves(rows, device, args.out)
        print(harness.markdown_table(rows, ["axis", "batch", "width", "parameters", "it/s", "TFLOP/s", "compile s"],
                                     {"it/s": ".2f", "TFLOP/s": ".1f", "compile s": ".1f"}))
    if "unet" in args.part:
        u = cfg["unet"] = {**cfg["unet"], **{k: v for k, v in [("channels", args.unet_channels),
                                                                 ("batch", args.unet_batch),
                                                                 ("grid", args.unet_grid)] if v}}
        title = (f"UNet {tuple(u['channels'])} adjoint matching on {u['image']} images, batch {u['batch']}, "
                 f"{u['grid']} steps, {jax.devices()[0].device_kind}")
        write = lambda rows: harness.write_json(args.out, "adjoint_matching_unet",
                                                {"size": args.size, "config": u, "title": title, "rows": rows})
        rows = unet_rows(cfg, args.unet_variants, write, args.unet_compile_only)
        print(title + "\n" + harness.markdown_table(
            rows, ["variant", "it/s", "TFLOP/s", "compile s", "XLA memory MiB", "peak MiB", "loss", "error"],
            {"it/s": ".3f", "TFLOP/s": ".1f", "compile s": ".1f", "XLA memory MiB": ".1f", "peak MiB": ".1f",
             "loss": ".4g"}))
    try:
        import torch
    except ImportError:
        torch = None
    tdev = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
    if "unet-torch" in args.part and torch is not None:
        unet_torch_part(cfg, args, torch, tdev)
    if "mlp" not in args.part:
        return None
    result = {"size": args.size, "config": cfg, "jax_platform": jax.devices()[0].platform,
              "jax_device": jax.devices()[0].device_kind, "rows": []}
    if torch is not None:
        result["torch_device"] = torch.cuda.get_device_name() if tdev == "cuda" else "cpu"
        result["torch_modes"] = list(args.torch_modes)
        result["torch_compile_scope"] = args.torch_compile_scope
        result.update(modes.setup(torch, args.torch_matmul_precision))
    specs = cfg["models"] if args.models is None else [cfg["models"][i] for i in args.models]
    for spec in specs:
        row = mlp_row(spec, cfg, torch, tdev, args.torch_modes, args.torch_compile_scope)
        result["rows"].append(row)
        harness.write_json(args.out, "adjoint_matching", result)
    _plot(result, args.out)
    print(_table(result))
    return result


def unet_torch_part(cfg, args, torch, tdev):
    """The PyTorch peer of the UNet rows (``_torch_unet``), written as ``adjoint_matching_unet_torch``."""
    u = {**cfg["unet"], **{k: v for k, v in [("channels", args.unet_channels), ("batch", args.unet_batch),
                                             ("grid", args.unet_grid)] if v}}
    module = UNet(channels=tuple(u["channels"]), time_dim=128, in_channels=u["image"][-1], time_scale=1000.0,
                  num_classes=10)
    params = jax.jit(module.init)(jax.random.key(0), jnp.zeros(u["image"]), jnp.zeros(()), jnp.zeros((), jnp.int32))
    info = modes.setup(torch, args.torch_matmul_precision)
    write = lambda rows: harness.write_json(args.out, "adjoint_matching_unet_torch", {
        "size": args.size, "config": u, **info, "torch_device": torch.cuda.get_device_name() if tdev == "cuda" else "cpu",
        "rows": [{k: v for k, v in r.items() if k != "traceback"} for r in rows]})
    rows = torch_unet.peer_rows(torch, u, module, params, tdev, args.torch_modes, on_row=write)
    print(harness.markdown_table(rows, ["mode", "precision", "it_per_s", "first_step_s", "peak_MiB", "loss",
                                        "forward_parity", "loss_parity", "error"],
                                 {"it_per_s": ".3f", "first_step_s": ".1f", "peak_MiB": ".0f", "loss": ".4g",
                                  "forward_parity": ".1e", "loss_parity": ".1e"}))


def _label(r):
    h = r["hidden"]
    width = f"{h[0]}x{len(h)}" if len(set(h)) == 1 else "-".join(map(str, h))
    return f"d = {r['d']}, MLP {width}"


def _table(result):
    """Absolute iterations/s from a GPU; on a CPU only the ratios to PyTorch are shown. A second
    table has each PyTorch mode's first step (compile included), parity and graph counts."""
    absolute = result["jax_platform"] == "gpu"
    title = (f"adjoint matching, batch {result['config']['batch']}, {result['config']['grid']} steps, JAX on "
             f"{result['jax_device']}" + (f", PyTorch on {result['torch_device']}" if "torch_device" in result else ""))
    torch_modes = result.get("torch_modes", [])
    rows, mode_rows = [], []
    for r in result["rows"]:
        row = {"model": _label(r), "JAX compile s": r["jax_compile_s"], "torch fastest": r.get("torch_fastest"),
               "speedup": r.get("speedup"), "vs eager": r.get("speedup_vs_eager"),
               "loss rel diff": r.get("loss_rel_diff")}
        its = r.get("torch_it_per_s", {})
        if absolute:
            row["JAX it/s"] = r["jax_it_per_s"]
            row.update({f"{m} it/s": its.get(m) for m in torch_modes})
        rows.append(row)
        for m, t in r.get("torch", {}).items():
            status = t.get("skipped") or t.get("error") or "ran"
            mode_rows.append({"model": _label(r), "mode": m, "first step s": t.get("first_step_s"),
                              "JAX / mode": r["jax_it_per_s"] / t["it_per_s"] if "it_per_s" in t else None,
                              "rel diff to JAX": t.get("loss_rel_diff"),
                              "rel diff to eager": t.get("loss_rel_diff_eager"),
                              "graphs": t.get("graphs"), "graph breaks": t.get("graph_breaks"), "status": status})
    columns = ["model"] + (["JAX it/s"] + [f"{m} it/s" for m in torch_modes] if absolute else [])
    formats = {"JAX it/s": ".2f", "speedup": ".2f", "vs eager": ".2f", "JAX compile s": ".2f",
               "loss rel diff": ".2e", **{f"{m} it/s": ".2f" for m in torch_modes}}
    table = harness.markdown_table(rows, columns + ["torch fastest", "speedup", "vs eager", "JAX compile s",
                                                    "loss rel diff"], formats)
    detail = harness.markdown_table(mode_rows, ["model", "mode", "JAX / mode", "first step s", "rel diff to JAX",
                                                "rel diff to eager", "graphs", "graph breaks", "status"],
                                    {"JAX / mode": ".2f", "first step s": ".1f", "rel diff to JAX": ".2e",
                                     "rel diff to eager": ".2e"})
    note = "" if absolute else "\n(CPU run: only the speed ratios to PyTorch; absolute it/s only from a GPU)"
    return (f"{title}\n{table}\n(speedup: JAX against the fastest PyTorch mode; vs eager: against PyTorch eager;"
            f" loss rel diff: the fastest mode's loss against JAX's)\n\nPyTorch modes\n{detail}{note}")


def _plot(result, out_dir):
    rows = [r for r in result["rows"] if r.get("torch_it_per_s")]
    if not rows:
        return
    torch_modes = [m for m in result.get("torch_modes", []) if any(m in r["torch_it_per_s"] for r in rows)]
    series = [("tailjax (JAX)", [r["jax_it_per_s"] for r in rows])]
    series += [(f"PyTorch {m}", [r["torch_it_per_s"].get(m, np.nan) for r in rows]) for m in torch_modes]
    fig, ax = harness.figure(figsize=(6.5, 3.6))
    x = np.arange(len(rows))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series):
        ax.bar(x - 0.4 + (i + 0.5) * width, values, width, label=name)
    for i, r in enumerate(rows):
        top = max([r["jax_it_per_s"], *r["torch_it_per_s"].values()])
        ax.text(i, top * 1.05, f"{r['speedup']:.1f}x vs {r['torch_fastest']}", ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(x, [_label(r) for r in rows], fontsize=7)
    ax.set_ylabel("iterations / s")
    ax.set_title(f"adjoint matching on {result['jax_device']}", fontsize=9)
    ax.legend(fontsize=7)
    harness.save_figure(fig, out_dir, "adjoint_matching")


if __name__ == "__main__":
    main()
