"""Reports of the Gen-DFL benchmarks: records summarised over seeds, the printed table, the figure,
and Table 1 of the paper from per-seed records (mean ± sd per cell, per-seed orderings).

A record is a dict with ``experiment``, ``method``, ``tail_prob_eval``, ``metric``, ``regret``,
``seed`` and the settings of its configuration (``problem``, ``deg``, ``sigma``, ``dim``,
``n_train``, ``regret_weight``, ``K``, ``tail_prob_train``). Records written before the names
``tail_prob``/``regret_weight`` (``alpha_eval``, ``alpha_train``, ``beta``) are renamed on read
(:func:`renamed`).

Each Table 1 ordering "A < B" counts the seeds on which method A's regret is below B's on the
same data, with a two-sided sign test (ties dropped); the "best baseline" of a seed is the
lowest regret among the baselines run on it.
"""

from __future__ import annotations

import numpy as np

from benchmarks import _harness as harness
from benchmarks.setups.dfl.gen_dfl import PAPER_TABLE1, TAIL_PROB

__all__ = ["EXPERIMENTS", "renamed", "summarise", "table", "plot", "table1_cells", "best_baseline",
           "ordering", "table1_report"]

EXPERIMENTS = ("table1", "sigma", "dim", "train_size", "regret_weight", "tail_prob", "samples", "energy",
               "is_gto")
_OLD_NAMES = {"alpha_eval": "tail_prob_eval", "alpha_train": "tail_prob_train", "beta": "regret_weight"}
_OLD_EXPERIMENTS = {"alpha": "tail_prob", "beta": "regret_weight"}
TABLE1_METHODS = (("gen_dfl", "Gen-DFL"), ("nll_flow", "NLL flow"), ("spo+", "SPO+"), ("mse", "PTO (MSE)"),
                  ("nce", "NCE"), ("map", "MAP"), ("pairwise", "pairwise"), ("listwise", "listwise"),
                  ("dfl", "DFL"), ("dfl+", "DFL+"), ("oracle_saa", "oracle SAA"))
TABLE1_BASELINES = ("spo+", "mse", "nce", "map", "pairwise", "listwise", "dfl", "dfl+")
ORDERINGS = (("gen_dfl", "spo+"), ("spo+", "mse"), ("gen_dfl", "mse"), ("gen_dfl", "nll_flow"),
             ("gen_dfl", "best"))


def renamed(record):
    """A record with the current field and experiment names."""
    out = {_OLD_NAMES.get(k, k): v for k, v in record.items()}
    if "experiment" in out:
        out["experiment"] = _OLD_EXPERIMENTS.get(out["experiment"], out["experiment"])
    return out


def summarise(recs):
    """Mean and (population) sd over seeds, keyed by everything but seed and regret."""
    groups = {}
    for r in recs:
        key = tuple(sorted((k, v) for k, v in r.items() if k not in ("seed", "regret")))
        groups.setdefault(key, []).append(r["regret"])
    return [dict(**dict(k), mean=float(np.mean(v)), std=float(np.std(v)), n=len(v)) for k, v in groups.items()]


def table(rows):
    """The printed table of :func:`summarise`'s rows."""
    fields = ("problem", "deg", "sigma", "dim", "n_train", "regret_weight", "K", "tail_prob_train",
              "tail_prob_eval", "metric")
    out = [dict(experiment=r["experiment"], setting=", ".join(f"{k}={r[k]}" for k in fields if k in r),
                method=r["method"], regret=f"{r['mean']:.2f} ± {r['std']:.2f}") for r in rows]
    return harness.markdown_table(out, ["experiment", "setting", "method", "regret"])


def plot(rows, out, name, metric="cvar_of_difference"):
    """One panel per experiment (Table 1: per problem, log scale) of the ``metric`` regret; the
    oracle SAA row dashed. Saved as ``out/name.png``."""
    rows = [r for r in rows if r.get("metric", metric) == metric and r["method"] != "true_mean"]
    panels = []
    for e in EXPERIMENTS:
        probs = sorted({r["problem"] for r in rows if r["experiment"] == e})
        panels += [(e, p) for p in probs] if e == "table1" else [(e, None)] * bool(probs)
    ncols = min(4, max(1, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    fig, axes = harness.figure(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    xfield = {"table1": "deg", "sigma": "sigma", "dim": "dim", "train_size": "n_train",
              "regret_weight": "regret_weight", "tail_prob": "tail_prob_eval", "samples": "K", "is_gto": "K",
              "energy": None}
    for ax, (e, prob) in zip(axes.flat, panels):
        sub = [r for r in rows if r["experiment"] == e and (prob is None or r["problem"] == prob)]
        f = xfield[e]
        if f is None:
            ax.bar([r["method"] for r in sub], [r["mean"] for r in sub], yerr=[r["std"] for r in sub])
            ax.tick_params(axis="x", rotation=60)
        else:
            if e == "tail_prob":  # Fig. 5: one line per training level
                sub = [r for r in sub if r["method"] == "gen_dfl"]
            series = {}
            for r in sub:
                label = r["method"]
                label += f" tail_prob_train={r['tail_prob_train']}" if e == "tail_prob" else ""
                label += f" dim={r['dim']}" if e == "is_gto" and "dim" in r else ""
                series.setdefault(label, []).append((r[f], r["mean"], r["std"]))
            for label, pts in series.items():
                pts.sort()
                style = dict(ls="--", color="gray") if label.startswith("oracle_saa") else {}
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                            label=label, capsize=2, **style)
            if f in ("regret_weight", "K", "n_train"):
                ax.set_xscale("log")
            if e == "table1":
                ax.set_yscale("log")
            ax.set_xlabel(f)
            ax.legend(fontsize=6)
        ax.set_title(e if prob is None else f"{e}: {prob}")
        ax.set_ylabel("CVaR regret (%)" if metric == "cvar_of_difference" else "CVaR gap (%)")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    return harness.save_figure(fig, out, name)


def table1_cells(recs, metric="cvar_of_difference"):
    """{(problem, deg, method): {seed: regret}} of the Table 1 records at the default level."""
    cells = {}
    for r in recs:
        if r.get("experiment") != "table1" or r.get("metric") != metric or r.get("tail_prob_eval") != TAIL_PROB:
            continue
        by_seed = cells.setdefault((r["problem"], r["deg"], r["method"]), {})
        # equal duplicates (the oracle rows of two runs on one seed) are fine
        if r["seed"] in by_seed and by_seed[r["seed"]] != r["regret"]:
            raise ValueError(f"records: two results for {r['problem']} deg {r['deg']} {r['method']} "
                             f"seed {r['seed']} that differ; pass each run once")
        by_seed[r["seed"]] = r["regret"]
    return cells


def best_baseline(cells, problem, deg):
    """{seed: lowest regret among the baselines run on that seed}, on seeds where all of them ran."""
    runs = [cells[problem, deg, m] for m in TABLE1_BASELINES if (problem, deg, m) in cells]
    seeds = set.intersection(*(set(r) for r in runs)) if runs else set()
    return {s: min(r[s] for r in runs) for s in seeds}


def ordering(a, b):
    """(wins of a, paired seeds without ties, sign-test p) for per-seed dicts a and b."""
    pairs = [(a[s], b[s]) for s in a.keys() & b.keys() if a[s] != b[s]]
    wins = sum(x < y for x, y in pairs)
    p = harness.sign_test(wins, len(pairs) - wins) if pairs else float("nan")
    return wins, len(pairs), p


def _cell(values):
    mean, sd = harness.mean_sd(values)
    return f"{mean:.1f} ± {sd:.1f} ({len(values)})"


def table1_report(recs, metric="cvar_of_difference"):
    """Markdown: one table per problem, methods by degree, then the per-seed orderings."""
    cells = table1_cells(recs, metric)
    out = [f"Eq. (9) regret %, tail_prob (the paper's alpha) = {TAIL_PROB}: mean ± sample sd over seeds "
           "(number of seeds).", ""]
    for prob in sorted({k[0] for k in cells}):
        degs = sorted({k[1] for k in cells if k[0] == prob})
        out += [f"### {prob}", "", "| method | " + " | ".join(f"deg {d}" for d in degs) + " |",
                "|---" * (len(degs) + 1) + "|"]
        for method, label in TABLE1_METHODS:
            row = [_cell(list(cells[prob, d, method].values())) if (prob, d, method) in cells else "-"
                   for d in degs]
            if any(v != "-" for v in row):
                out.append(f"| {label} | " + " | ".join(row) + " |")
            paper = PAPER_TABLE1.get((prob, method))
            if paper:
                vals = [paper[(2, 4, 6, 8).index(d)] if d in (2, 4, 6, 8) else None for d in degs]
                out.append(f"| {label}, paper | " + " | ".join("-" if v is None else f"{v:.2f}" for v in vals) + " |")
        names = dict(TABLE1_METHODS, best="best baseline")
        for a, b in ORDERINGS:
            row = []
            for d in degs:
                right = best_baseline(cells, prob, d) if b == "best" else cells.get((prob, d, b))
                if (prob, d, a) in cells and right:
                    wins, n, p = ordering(cells[prob, d, a], right)
                    row.append(f"{wins}/{n} (p={p:.2g})")
                else:
                    row.append("-")
            out.append(f"| seeds {names[a]} < {names[b]} | " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)
