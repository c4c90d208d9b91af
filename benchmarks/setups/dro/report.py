"""Tables of the GAS-DRO benchmark: mean +- sd over seeds per test set, per-seed wins with a
sign test, and the verdict of GAS-DRO against the best converged baseline and against
persistence, per test set and on average.

A verdict is "win" (or "loss") when the two-sided sign test of the per-seed differences has
p <= ``alpha`` (0.0625: 5 of 5 seeds, or 8 of 9...), otherwise "tie". Lower is better (MSE).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from benchmarks import _harness as harness

__all__ = ["BASELINES", "REFERENCES", "compare", "verdict", "seed_table", "comparison_table", "best_baseline"]

BASELINES = ("ML", "DML", "KL-DRO", "W-DRO", "DRAGEN", "P-DRO")
REFERENCES = ("persistence", "seasonal naive")


def verdict(ours: Sequence[float], theirs: Sequence[float], alpha: float = 0.0625) -> dict[str, Any]:
    """Per-seed wins/losses of ``ours`` against ``theirs`` (lower is better), the sign-test
    p-value and the verdict."""
    d = np.asarray(ours, float) - np.asarray(theirs, float)
    wins, losses = int(np.sum(d < 0)), int(np.sum(d > 0))
    p = harness.sign_test(wins, losses)
    word = "tie"
    if p <= alpha:
        word = "win" if wins > losses else "loss"
    return {"wins": wins, "losses": losses, "p": p, "verdict": word,
            "mean_diff": float(np.mean(d)), "rel_diff": float(np.mean(d) / max(np.mean(theirs), 1e-12))}


def _per_seed(runs: list[dict], name: str, field: str, key: str | None = None) -> list[float]:
    vals = [r[name][field] if key is None else r[name][field][key] for r in runs]
    return [float(v) for v in vals]


def best_baseline(runs: list[dict]) -> str:
    """The converged baseline with the lowest mean test average over seeds (the strongest
    opponent, chosen on the test sets: conservative for GAS-DRO)."""
    present = [b for b in BASELINES if b in runs[0]]
    return min(present, key=lambda b: np.mean(_per_seed(runs, b, "average")))


def compare(runs: list[dict], ours: str = "GAS-DRO", alpha: float = 0.0625) -> dict[str, Any]:
    """Verdicts of ``ours`` against the best baseline and persistence per set and on average."""
    sets = list(runs[0][ours]["mse"])
    out = {}
    for opponent in (best_baseline(runs), "persistence"):
        rows = {s: verdict(_per_seed(runs, ours, "mse", s), _per_seed(runs, opponent, "mse", s), alpha)
                for s in sets}
        rows["average"] = verdict(_per_seed(runs, ours, "average"), _per_seed(runs, opponent, "average"), alpha)
        rows["worst"] = verdict(_per_seed(runs, ours, "worst"), _per_seed(runs, opponent, "worst"), alpha)
        out[opponent] = rows
    return out


def seed_table(runs: list[dict], names: Sequence[str], fmt: str = ".4g") -> str:
    """Rows: every test set, then average, worst, validation, steps; cells mean +- sd."""
    sets = list(runs[0][names[0]]["mse"])
    rows = []
    for s in [*sets, "average", "worst", "validation", "steps", "seconds"]:
        row = {"": s}
        for n in names:
            if s in sets:
                vals = _per_seed(runs, n, "mse", s)
            elif all(r[n].get(s) is not None for r in runs):
                vals = _per_seed(runs, n, s)
            else:
                row[n] = ""
                continue
            m, sd = harness.mean_sd(vals)
            row[n] = f"{m:{fmt}} ± {sd:.2g}" if len(vals) > 1 else f"{m:{fmt}}"
        rows.append(row)
    return harness.markdown_table(rows, ["", *names])


def comparison_table(comparison: dict[str, Any], ours: str = "GAS-DRO") -> str:
    """One row per test set (and average, worst): wins-losses, p and verdict per opponent."""
    opponents = list(comparison)
    sets = list(comparison[opponents[0]])
    rows = []
    for s in sets:
        row = {"set": s}
        for o in opponents:
            v = comparison[o][s]
            row[f"vs {o}"] = f"{v['verdict']} ({v['wins']}-{v['losses']}, p={v['p']:.3g}, {100 * v['rel_diff']:+.1f} %)"
        rows.append(row)
    return harness.markdown_table(rows, ["set", *[f"vs {o}" for o in opponents]])
