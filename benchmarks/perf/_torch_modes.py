"""PyTorch execution modes for the benchmarks' peers, measured side by side in one run.

``eager`` runs a peer's functions and modules as written, ``compile`` wraps them in
``torch.compile`` (default mode, Inductor) and ``cudagraphs`` in
``torch.compile(mode="reduce-overhead")``, which also captures the compiled graphs in CUDA
graphs; that mode needs a CUDA device and is skipped with a reason elsewhere. Compiled code
uses static shapes (``dynamic=False``): each distinct input shape and grad mode gets its own
graph, and Dynamo's caches are cleared before each mode so no mode inherits graphs or
recompile counts from another.
"""

from __future__ import annotations

import importlib
import time
import traceback
from typing import Any, Callable

from benchmarks import _harness as harness

MODES = ("eager", "compile", "cudagraphs")
_COMPILE_MODE = {"compile": "default", "cudagraphs": "reduce-overhead"}
# JAX computes float32 matmuls on recent NVIDIA GPUs with TF32 by default; "high" lets
# PyTorch do the same, "highest" is PyTorch's own default (full float32)
PRECISIONS = ("high", "highest")


def add_arguments(parser) -> None:
    """``--torch-modes`` and ``--torch-matmul-precision`` on a benchmark's parser."""
    parser.add_argument("--torch-modes", nargs="+", choices=MODES, default=list(MODES),
                        help="PyTorch peers to time: eager, torch.compile, and torch.compile "
                             "with CUDA graphs (mode reduce-overhead, CUDA only)")
    parser.add_argument("--torch-matmul-precision", choices=PRECISIONS, default="high",
                        help="torch.set_float32_matmul_precision for the peers: 'high' allows TF32 "
                             "on GPUs, as JAX does by default; 'highest' is full float32")


def setup(torch, precision: str) -> dict[str, Any]:
    """Set the float32 matmul precision; fail instead of falling back to eager on too many
    recompiles; turn off the caches of compiled graphs (Inductor's FX graph cache and the
    AOTAutograd cache) so each mode's first step compiles from scratch, as JAX's does
    (Triton's kernel cache is left as it is). Returns what the JSON should record."""
    torch.set_float32_matmul_precision(precision)
    config = torch._dynamo.config
    for name in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit"):
        if hasattr(config, name):
            setattr(config, name, True)
            break
    for module, name in (("torch._inductor.config", "fx_graph_cache"),
                         ("torch._functorch.config", "enable_autograd_cache")):
        module = importlib.import_module(module)
        if hasattr(module, name):
            setattr(module, name, False)
    return {"torch_version": torch.__version__, "torch_matmul_precision": precision,
            "torch_graph_caches": "off"}


def skip_reason(mode: str, device: str) -> str | None:
    """Why ``mode`` cannot run on ``device`` (None if it can)."""
    if mode == "cudagraphs" and device != "cuda":
        return f"CUDA-graph capture needs a CUDA device; PyTorch runs on {device}"
    return None


def wrap(torch, module, mode: str):
    """``module`` as run in ``mode``: itself, or compiled with static shapes."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "eager":
        return module
    return torch.compile(module, mode=_COMPILE_MODE[mode], dynamic=False)


def step_begin(torch, mode: str) -> None:
    """Mark a new training step for CUDA-graph trees (outputs of the last one may be reused)."""
    if mode == "cudagraphs":
        torch.compiler.cudagraph_mark_step_begin()


def keeper(torch, mode: str) -> Callable[[Any], Any]:
    """Copies a module output that must outlive later calls (CUDA graphs reuse output memory)."""
    return torch.clone if mode == "cudagraphs" else (lambda t: t)


def synchronizer(torch, device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)


def time_steps(torch, step, device: str, iters: int, repeats: int) -> tuple[float, list[float], Any]:
    """``(first step's seconds, iterations/s of each of ``repeats`` runs of ``iters`` steps, the
    last step's output)``; ``step(generator)`` runs one training step on fresh draws."""
    gen = torch.Generator(device=device).manual_seed(0)
    sync = synchronizer(torch, device)
    t0 = time.perf_counter()
    step(gen)
    sync()
    first_s = time.perf_counter() - t0

    def run():
        for _ in range(iters):
            out = step(gen)
        return out

    timing = harness.time_call(run, repeats=repeats, block=lambda out: (sync(), out)[1])
    return first_s, [iters / t for t in timing["times"]], timing["output"]


def _compile_counts(torch) -> dict[str, int]:
    from torch._dynamo.utils import counters

    return {"graphs": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(counters["graph_break"].values()))}


def run_modes(torch, modes, device: str, bench: Callable[[str], dict], log=print) -> dict[str, dict]:
    """``{mode: bench(mode)}`` for each mode, on fresh compiler caches; a skipped mode holds
    ``{"skipped": reason}``, a compiled mode that raises holds ``{"error": first line,
    "traceback": ...}`` (an error in eager is raised). Compiled modes also record their
    ``graphs`` and ``graph_breaks``."""
    from torch._dynamo.utils import counters

    out = {}
    for mode in modes:
        reason = skip_reason(mode, device)
        if reason is not None:
            out[mode] = {"skipped": reason}
            log(f"PyTorch {mode}: skipped ({reason})")
            continue
        torch._dynamo.reset()
        counters.clear()
        t0 = time.perf_counter()
        try:
            out[mode] = bench(mode)
        except Exception as exc:  # a compiled mode that fails is reported, not fatal
            if mode == "eager":
                raise
            first_line = (str(exc).strip().splitlines() or [""])[0]
            out[mode] = {"error": f"{type(exc).__name__}: {first_line}"[:300],  # the table's cell
                         "traceback": traceback.format_exc(limit=-8)}
            log(f"PyTorch {mode}: failed after {time.perf_counter() - t0:.1f} s: {out[mode]['error']}")
            continue
        if mode != "eager":
            out[mode].update(_compile_counts(torch))
    torch._dynamo.reset()
    return out


def fastest(per_mode: dict[str, dict], key: str, *, higher_is_better: bool) -> str | None:
    """The mode with the best ``key`` among those that ran (None if none did)."""
    ran = {m: r[key] for m, r in per_mode.items() if r.get(key) is not None}
    if not ran:
        return None
    return (max if higher_is_better else min)(ran, key=ran.get)
