"""PyEPO's own answers for tests/dfl/test_pyepo_equivalence.py (run by .venv-pyepo's Python,
never imported by tailjax's environment).

    .venv-pyepo/bin/python tests/dfl/pyepo_reference.py SPEC.json OUT.npz

SPEC.json lists cases ``{"name": ..., "problem": "shortest_path" | "knapsack" | "portfolio",
"gen": [genData's positional arguments], ...}``; for each, PyEPO 2.2's ``genData`` draws the
data, PyEPO's own models solve it (OR-Tools: the shortest-path LP with GLOP, the binary
knapsack with SCIP and its LP relaxation ``relax()``; Pyomo + SCIP: the variance-capped
portfolio, as given (``sol_raw``) and with Sigma scaled to unit mean entry (``sol``), the same
feasible set), and ``pyepo.metric.regret`` scores a fixed linear predictor (weights from
``RandomState(pred_seed)``, a ``torch.nn.Linear``) on the ``optDataset``. Every array is
written to OUT.npz under ``<name>/<field>``.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from pyepo.data import knapsack, portfolio, shortestpath
from pyepo.data.dataset import optDataset
from pyepo.metric import regret
from torch.utils.data import DataLoader


def _linear(x, d, seed):
    """A fixed torch linear predictor x (n, p) -> (n, d) and its float32 weights."""
    rnd = np.random.RandomState(seed)
    p = x.shape[1]
    W = rnd.normal(0.0, 1.0 / np.sqrt(p), (d, p)).astype(np.float32)
    b = rnd.uniform(0.5, 1.5, d).astype(np.float32)
    lin = torch.nn.Linear(p, d)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W))
        lin.bias.copy_(torch.from_numpy(b))
    return lin, W, b


def _solve_all(model, costs):
    sols, objs = [], []
    for c in costs:
        model.setObj(c)
        sol, obj = model.solve()
        sols.append(np.asarray(sol, np.float64))
        objs.append(float(obj))
    return np.stack(sols), np.asarray(objs)


def _score(prefix, model, x, c, lin, out):
    """PyEPO's optDataset (true solutions), the predictor's regret, its decisions."""
    data = optDataset(model, x, c)
    loader = DataLoader(data, batch_size=16, shuffle=False)
    out[f"{prefix}/sol"] = np.asarray(data.sols, np.float64)
    out[f"{prefix}/obj"] = np.asarray(data.objs, np.float64).reshape(-1)
    out[f"{prefix}/regret"] = np.asarray(regret(lin, model, loader, reduction="none"), np.float64)
    out[f"{prefix}/regret_normalized"] = np.float64(regret(lin, model, loader))
    with torch.no_grad():
        pred = lin(torch.as_tensor(x, dtype=torch.float32)).numpy()
    out[f"{prefix}/pred_sol"], _ = _solve_all(model, pred)
    return pred


def run_case(case: dict, out: dict) -> None:
    name, kind, gen = case["name"], case["problem"], case["gen"]
    if kind == "shortest_path":
        from pyepo.model.ort import shortestPathModel

        x, c = shortestpath.genData(*gen)
        model = shortestPathModel(tuple(case.get("grid", gen[2])), solver="glop")
        lin, W, b = _linear(x, c.shape[1], case["pred_seed"])
        out[f"{name}/pred"] = _score(f"{name}/lp", model, x, c, lin, out)
    elif kind == "knapsack":
        from pyepo.model.ort import knapsackModel

        weights, x, c = knapsack.genData(*gen)
        out[f"{name}/weights"] = weights
        model = knapsackModel(weights, np.asarray(case["capacity"], np.float64))
        lin, W, b = _linear(x, c.shape[1], case["pred_seed"])
        out[f"{name}/pred"] = _score(f"{name}/binary", model, x, c, lin, out)
        _score(f"{name}/relaxed", model.relax(), x, c, lin, out)
    elif kind == "portfolio":
        from pyepo.model.omo import portfolioModel

        cov, x, c = portfolio.genData(*gen)
        out[f"{name}/cov"] = cov
        gamma = case.get("gamma", 2.25)
        model = portfolioModel(c.shape[1], cov, gamma=gamma, solver="scip_direct")
        out[f"{name}/risk_level"] = np.float64(model.risk_level)
        out[f"{name}/sol_raw"], out[f"{name}/obj_raw"] = _solve_all(model, c)
        # the same problem with Sigma scaled to unit mean entry: SCIP's absolute feasibility
        # tolerance (1e-6) then is relative to the cap instead of 5% of a cap of 2e-5
        scaled = portfolioModel(c.shape[1], cov / np.mean(cov), gamma=gamma, solver="scip_direct")
        out[f"{name}/sol"], out[f"{name}/obj"] = _solve_all(scaled, c)
        lin, W, b = _linear(x, c.shape[1], case["pred_seed"])
        with torch.no_grad():
            out[f"{name}/pred"] = lin(torch.as_tensor(x, dtype=torch.float32)).numpy()
        out[f"{name}/pred_sol"], _ = _solve_all(scaled, out[f"{name}/pred"])
    else:
        raise ValueError(f"problem must be shortest_path, knapsack or portfolio, got {kind!r}")
    out[f"{name}/x"], out[f"{name}/c"] = x, c
    out[f"{name}/W"], out[f"{name}/b"] = W, b


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        spec = json.load(f)
    out: dict[str, np.ndarray] = {}
    for case in spec["cases"]:
        run_case(case, out)
    import pyepo

    out["pyepo_version"] = np.asarray(pyepo.__version__)
    np.savez(argv[2], **out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
