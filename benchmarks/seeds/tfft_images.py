"""Tail-aware fine-tuning of a class-conditional image flow (the shape of TFFT's Tables 2-3).

    python -m benchmarks.seeds.tfft_images --size small                     # CPU, 8 x 8 digits
    python -m benchmarks.seeds.tfft_images --size paper --seeds 3           # GPU
    python -m benchmarks.seeds.tfft_images --size paper --data usps         # 16 x 16 USPS ($TAILJAX_DATA)

A class-conditional UNet velocity field (:class:`tailjax.nn.UNet` with ``time_scale`` and
``num_classes``) is pre-trained by flow matching on real digits (scikit-learn's 8 x 8 digits, or
USPS 16 x 16), then fine-tuned for the reward r(x, c) = logit_c(x) - logsumexp_{j != c} logit_j(x)
of a CNN classifier trained on the same digits: the log-odds of the conditioning class,
unbounded in both directions. Arms, each given the same wall-clock budget (steps set from
measured step times; the actual seconds are reported):

* pre-trained; EXP-FT (target p_pre exp(r / alpha));
  (the budget is spent on optimizer steps after compilation; the reported seconds include
  compilation, Stage-1 sampling and TFFT's tail-mass check, so on a CPU, where compiling a
  UNet dominates, they exceed the budget);
* FDC with K = 2 and 3 rounds, for each tail (:func:`tailjax.flows.fdc_fine_tune`: each round
  re-estimates the VaR on samples of the current model and fine-tunes, warm-started from it,
  towards the FDC operator's next iterate, expressed against the pre-trained model);
* L-TFFT (beta = 0.2) and R-TFFT (beta = 0.8) by :func:`tailjax.flows.tfft_fine_tune` with its
  defaults (Stage-1 diagnostics decide on a tail proposal), thresholds pooled over classes
  (``--stage1 per_context`` for one per class).

Metrics on fresh samples (``eval_per_class`` per class, not used for anything else): expected
reward, R-CVaR_0.8 (mean of the top 20%), L-CVaR_0.2 (mean of the bottom 20%), the share
classified as the conditioning class, diversity (mean pairwise distance of the classifier's
penultimate features within a class) and cost (seconds and adjoint-matching steps). Over seeds:
mean ± sd and sign tests of TFFT against EXP-FT and the better FDC on its own tail.
"""

from __future__ import annotations

import json
import pathlib
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import _harness as harness
from benchmarks.setups.flows import diversity, digit_images, margin_reward, train_classifier, unet_field
from tailjax.flows import (
    TFFTWarning, adjoint_matching, exp_ft, fdc_fine_tune, fit_adjoint_matching, fit_flow_matching, memoryless_sample,
    tfft_fine_tune,
)
from tailjax.risk import cvar

CONFIGS = {
    "small": dict(data="sklearn", channels=(16, 32), time_dim=32, pre_steps=1500, pre_batch=128, pre_lr=2e-3,
                  batch=32, grid=12, lr=5e-4, temperature=1.0, budget_s=45.0, offline=1000, eval_per_class=100,
                  clf_steps=600, sample_chunk=1000),
    "paper": dict(data="sklearn", channels=(64, 128, 128), time_dim=128, pre_steps=20_000, pre_batch=256,
                  pre_lr=1e-3, batch=128, grid=40, lr=2e-4, temperature=1.0, budget_s=300.0, offline=10_000,
                  eval_per_class=1000, clf_steps=3000, sample_chunk=4096),
}
ARMS = ["Pre-trained", "EXP-FT", "FDC-R (K=2)", "FDC-R (K=3)", "L-TFFT", "FDC-L (K=2)", "FDC-L (K=3)", "R-TFFT"]
LOWER, UPPER = 0.2, 0.8  # TFFT's beta of the left and right tails


def _timed_steps(kernel, params, steps=3):
    """Seconds per step of a kernel after compilation."""
    step = jax.jit(kernel.step)
    state = kernel.init(params)
    state, _ = step(state, jax.random.key(0))
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for i in range(steps):
        state, _ = step(state, jax.random.key(i + 1))
    jax.block_until_ready(state)
    return (time.perf_counter() - t0) / steps


class Setup:
    """Data, classifier, reward and pre-trained field of one seed."""

    def __init__(self, cfg, seed, out, log):
        key = jax.random.key(seed)
        k_clf, k_init, k_pre = jax.random.split(key, 3)
        x, y, x_test, y_test = digit_images(cfg["data"], seed)
        self.shape = x.shape[1:]
        self.clf_params, self.clf = train_classifier(k_clf, x, y, steps=cfg["clf_steps"])
        acc = float(np.mean(np.argmax(np.asarray(self.clf.apply(self.clf_params, x_test)), -1) == y_test))
        self.reward = margin_reward(self.clf_params, self.clf)
        self.module, self.field = unet_field(cfg["channels"], time_dim=cfg["time_dim"])
        params = self.module.init(k_init, jnp.zeros(self.shape), jnp.zeros(()), jnp.zeros((), jnp.int32))
        t0 = time.perf_counter()
        sched = optax.cosine_decay_schedule(cfg["pre_lr"], cfg["pre_steps"], 0.05)
        pre = fit_flow_matching(k_pre, self.field, params, x, context=y, num_steps=cfg["pre_steps"],
                                batch_size=cfg["pre_batch"], optimizer=optax.adam(sched), progress=False,
                                checkpoint_path=pathlib.Path(out) / f"pretrain_seed{seed}.ckpt")
        self.params = pre.state.params
        self.info = {"classifier_test_accuracy": acc, "pretrain_seconds": round(time.perf_counter() - t0, 1),
                     "pretrain_final_loss": float(np.mean(pre.history["loss"][-100:])), "train_images": int(x.shape[0])}
        log(f"seed {seed}: classifier test accuracy {acc:.3f}; pre-trained {self.info}")
        self.contexts = jnp.arange(10)
        base = lambda z, t, c: self.field(self.params, z, t, c)
        common = dict(batch_size=cfg["batch"], num_steps=cfg["grid"], contexts=self.contexts)
        am = exp_ft(self.field, base, self.reward, optax.adam(cfg["lr"]), self.shape, **common)
        mix = adjoint_matching(self.field, base, lambda z, _, c: self.reward(z, c), optax.adam(cfg["lr"]), self.shape,
                               behaviour_fields=[None, base], **common)
        sampler = jax.jit(lambda k, c: memoryless_sample(k, self.field, self.params, c.shape[0], self.shape,
                                                         context=c, num_steps=cfg["grid"]))
        chunk = jnp.arange(cfg["sample_chunk"]) % 10
        jax.block_until_ready(sampler(jax.random.key(0), chunk))
        t0 = time.perf_counter()
        jax.block_until_ready(sampler(jax.random.key(1), chunk))
        sample_s = (time.perf_counter() - t0) / cfg["sample_chunk"]
        self.cost = {"step_s": _timed_steps(am, self.params), "mixture_step_s": _timed_steps(mix, self.params),
                     "sample_s": sample_s}
        log(f"seed {seed}: measured costs {self.cost}")

    def steps(self, budget, samples=0, per_step=None):
        """Optimizer steps that fit the budget after drawing ``samples`` offline samples."""
        per_step = per_step or self.cost["step_s"]
        return max(2, int((budget - samples * self.cost["sample_s"]) / per_step))


def run_arm(name, setup, cfg, key):
    """Fine-tune one arm within the budget; returns (params, extra info)."""
    opt, budget = optax.adam(cfg["lr"]), cfg["budget_s"]
    common = dict(batch_size=cfg["batch"], contexts=setup.contexts, grid_steps=cfg["grid"], progress=False)
    base = lambda z, t, c: setup.field(setup.params, z, t, c)
    if name == "Pre-trained":
        return setup.params, {"steps": 0}
    if name == "EXP-FT":
        n = setup.steps(budget)
        kernel = exp_ft(setup.field, base, setup.reward, opt, setup.shape, temperature=cfg["temperature"],
                        batch_size=cfg["batch"], num_steps=cfg["grid"], contexts=setup.contexts)
        return fit_adjoint_matching(key, kernel, setup.params, num_steps=n, progress=False).state.params, {"steps": n}
    if name.startswith("FDC"):
        rounds = int(name[-2])
        side, beta = ("upper", UPPER) if name.startswith("FDC-R") else ("lower", LOWER)
        n = max(setup.steps(budget, samples=rounds * cfg["offline"]) // rounds, 1)
        res = fdc_fine_tune(key, setup.field, setup.params, setup.reward, setup.shape, quantile_level=beta,
                            temperature=cfg["temperature"], side=side, num_rounds=rounds, steps_per_round=n,
                            num_var_samples=cfg["offline"], optimizer=opt, **common)
        return res.params, {"steps": rounds * n, "thresholds": np.asarray(res.thresholds).tolist()}
    side, beta = ("lower", LOWER) if name == "L-TFFT" else ("upper", UPPER)
    if side == "upper":  # room for a proposal and an off-policy Stage 2 if Stage 1 asks for them
        n = setup.steps(budget, samples=3 * cfg["offline"], per_step=setup.cost["step_s"] + setup.cost["mixture_step_s"])
    else:
        n = setup.steps(budget, samples=2 * cfg["offline"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TFFTWarning)
        res = tfft_fine_tune(key, setup.field, setup.params, setup.reward, setup.shape, quantile_level=beta, side=side,
                             temperature=cfg["temperature"], num_steps=n, num_offline=cfg["offline"], optimizer=opt,
                             stage1=cfg.get("stage1", "pooled"), sample_chunk=cfg["sample_chunk"], **common)
    d = res.diagnostics
    return res.params, {"steps": n * (2 if res.proposal is not None else 1), "t_star": np.asarray(res.t_star).tolist(),
                        "tail_mass": np.asarray(d.tail_mass).tolist(), "target_tail_mass": d.target_tail_mass,
                        "stage1_tail_ess": np.asarray(d.tail_ess).tolist(), "proposal": res.proposal is not None,
                        "warnings": [str(w.message)[:160] for w in caught if issubclass(w.category, TFFTWarning)]}


def evaluate(setup, params, cfg, key):
    """Metrics of the model on fresh samples, ``eval_per_class`` per class."""
    labels = jnp.repeat(setup.contexts, cfg["eval_per_class"])
    sampler = jax.jit(lambda k, c: memoryless_sample(k, setup.field, params, c.shape[0], setup.shape, context=c,
                                                     num_steps=cfg["grid"]))
    chunk = cfg["sample_chunk"]
    xs = jnp.concatenate([sampler(jax.random.fold_in(key, i), labels[s:s + chunk])
                          for i, s in enumerate(range(0, labels.shape[0], chunk))])
    r = jnp.asarray(jax.jit(jax.vmap(setup.reward))(xs, labels))
    feats = jax.jit(lambda z: setup.clf.apply(setup.clf_params, z, method="features"))(xs)
    pred = jnp.argmax(jax.jit(lambda z: setup.clf.apply(setup.clf_params, z))(xs), -1)
    return {"E[r]": float(jnp.mean(r)), "R-CVaR_0.8": float(cvar(r, 1 - UPPER)),
            "L-CVaR_0.2": float(cvar(r, LOWER, side="lower")), "class_rate": float(jnp.mean(pred == labels)),
            "diversity": diversity(feats, labels)}, np.asarray(xs[:: cfg["eval_per_class"]])


def run_seed(cfg, seed, out, log):
    setup = Setup(cfg, seed, out, log)
    key = jax.random.fold_in(jax.random.key(seed), 7)
    rows, images = {}, {}
    for i, name in enumerate(ARMS):
        t0 = time.perf_counter()
        params, extra = run_arm(name, setup, cfg, jax.random.fold_in(key, i))
        seconds = round(time.perf_counter() - t0, 1)
        metrics, images[name] = evaluate(setup, params, cfg, jax.random.fold_in(key, 100))
        rows[name] = {**metrics, **extra, "seconds": seconds}
        log(f"seed {seed} {name:12s} " + " ".join(f"{k}={v:.3f}" for k, v in metrics.items()) +
            f" steps={extra['steps']} seconds={seconds}")
    return {"seed": seed, **setup.info, "cost": setup.cost, "arms": rows}, images


def report(result):
    runs = result["runs"]
    cols = ["E[r]", "R-CVaR_0.8", "L-CVaR_0.2", "class_rate", "diversity", "steps", "seconds"]
    rows = []
    for name in ARMS:
        row = {"method": name}
        for c in cols:
            m, s = harness.mean_sd([run["arms"][name][c] for run in runs])
            row[c] = f"{m:.3f}" if len(runs) == 1 else f"{m:.3f} ± {s:.3f}"
        rows.append(row)
    lines = [f"class-conditional {result['config']['data']} digits, reward = classifier log-odds of the class, "
             f"alpha = {result['config']['temperature']}, budget {result['config']['budget_s']} s per arm, "
             f"{len(runs)} seed(s)", harness.markdown_table(rows, ["method"] + cols)]
    for tfft_arm, metric, fdc in (("R-TFFT", "R-CVaR_0.8", "FDC-R"), ("L-TFFT", "L-CVaR_0.2", "FDC-L")):
        for rival in ("EXP-FT", "best " + fdc):
            diffs = []
            for run in runs:
                arms = run["arms"]
                other = arms[rival] if rival == "EXP-FT" else max((arms[f"{fdc} (K={k})"] for k in (2, 3)),
                                                                  key=lambda a: a[metric])
                diffs.append(arms[tfft_arm][metric] - other[metric])
            wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
            lines.append(f"{tfft_arm} vs {rival} on {metric}: mean difference {np.mean(diffs):+.3f}, "
                         f"wins {wins}/{len(diffs)}, sign test p = {harness.sign_test(wins, losses):.3f}")
    return "\n".join(lines)


def merge(files, out):
    """One report (mean ± sd, sign tests) over the runs of several result files of one setting."""
    results = [json.loads(pathlib.Path(f).read_text()) for f in files]
    configs = {json.dumps(r["config"], sort_keys=True) for r in results}
    if len(configs) != 1:
        raise ValueError(f"the files were run with different settings: {sorted(configs)}")
    runs = [run for r in results for run in r["runs"]]
    seeds = [run["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"a seed appears more than once in the files (seeds {seeds}); pass each run once")
    merged = {"size": results[0]["size"], "config": results[0]["config"], "sources": [str(f) for f in files],
              "runs": runs}
    harness.write_json(out, "tfft_images", merged)
    text = report(merged)
    (pathlib.Path(out) / "tfft_images.md").write_text(text + "\n")
    print(text)
    return merged


def plot(out, images, shape):
    fig, axes = harness.figure(len(images), 10, figsize=(10, 1.1 * len(images)))
    for i, (name, imgs) in enumerate(images.items()):
        for j in range(10):
            axes[i, j].imshow(np.asarray(imgs[j]).reshape(shape[:2]), cmap="gray_r", vmin=-1, vmax=1)
            axes[i, j].axis("off")
        axes[i, 0].set_title(name, fontsize=7, loc="left")
    harness.save_figure(fig, out, "tfft_images_samples")


def main(argv=None):
    parser = harness.parser(__doc__, sizes=tuple(CONFIGS), out="results/tfft_images", compile_cache=True)
    parser.add_argument("--data", choices=["sklearn", "usps"], help="digits data (default: the size's)")
    parser.add_argument("--budget", type=float, help="seconds per fine-tuning arm (default: the size's)")
    parser.add_argument("--temperature", type=float, help="KL temperature alpha of every arm (default: the size's)")
    parser.add_argument("--pre-steps", type=int, help="flow-matching pre-training steps (default: the size's)")
    parser.add_argument("--stage1", choices=["pooled", "per_context"], default="pooled",
                        help="TFFT thresholds pooled over classes or one per class")
    parser.add_argument("--merge", type=pathlib.Path, nargs="+",
                        help="tfft_images.json files of single-seed runs of one setting: write their report and stop")
    args = parser.parse_args(argv)
    harness.use_compile_cache(args)
    if args.merge:
        return merge(args.merge, args.out)
    cfg = dict(CONFIGS[args.size], stage1=args.stage1)
    if args.data:
        cfg["data"] = args.data
    if args.budget:
        cfg["budget_s"] = args.budget
    if args.temperature:
        cfg["temperature"] = args.temperature
    if args.pre_steps:
        cfg["pre_steps"] = args.pre_steps
    start = time.perf_counter()
    log = lambda s: print(f"[{time.perf_counter() - start:7.1f} s] {s}", flush=True)
    result = {"size": args.size, "config": cfg, "runs": []}
    images = None
    for seed in harness.seeds(args):
        run, seed_images = run_seed(cfg, seed, args.out, log)
        result["runs"].append(run)
        images = images or seed_images
        harness.write_json(args.out, "tfft_images", result)
    result["seconds"] = round(time.perf_counter() - start, 1)
    harness.write_json(args.out, "tfft_images", result)
    plot(args.out, images, images["Pre-trained"].shape[1:])
    print(report(result))
    return result


if __name__ == "__main__":
    main()
