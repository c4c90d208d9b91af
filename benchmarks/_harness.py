"""What every benchmark script shares: arguments, environment record, timing, JSON, tables,
plots and the statistics of a comparison over seeds.

A script reads::

    parser = harness.parser(__doc__, sizes=("small", "paper"), out="results/my_bench")
    args = parser.parse_args(argv)
    rows = [...]                                     # one dict per measurement
    harness.write_json(args.out, "my_bench", {"size": args.size, "rows": rows})
    print(harness.markdown_table(rows, ["method", "seconds"]))
    harness.save_figure(fig, args.out, "my_bench")

``--size small`` runs on a CPU in minutes, ``--size paper`` is the paper's size on a GPU;
``--seeds N`` and ``--first-seed S`` pick seeds S..S+N-1. The reproductions (``seeds/``) add
``--compile-cache`` (:func:`use_compile_cache`), except ``seeds/importance_sampling.py``;
speed benchmarks and that one never do, since they time compilation.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import time
from importlib import metadata
from typing import Any, Callable, Iterable, Sequence

import numpy as np

__all__ = [
    "parser",
    "seeds",
    "use_compile_cache",
    "environment",
    "time_call",
    "write_json",
    "markdown_table",
    "figure",
    "save_figure",
    "mean_sd",
    "sign_test",
]


def parser(doc: str | None, *, sizes: Sequence[str] = ("small", "paper"), out: str,
           seeds: int = 1, compile_cache: bool = False) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with ``--size``, ``--out``, ``--seeds`` and ``--first-seed``, and
    with ``compile_cache`` also ``--compile-cache`` (see :func:`use_compile_cache`)."""
    first_line = (doc or "").strip().splitlines()[0] if doc else None
    p = argparse.ArgumentParser(description=first_line)
    p.add_argument("--size", choices=list(sizes), default=sizes[0],
                   help="problem size: small (CPU, minutes) or paper (GPU)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path(out),
                   help="folder for the JSON result and the plot")
    p.add_argument("--seeds", type=int, default=seeds, help="number of seeds")
    p.add_argument("--first-seed", type=int, default=0, help="first seed")
    if compile_cache:
        p.add_argument("--compile-cache", default="auto", metavar="DIR",
                       help="JAX's persistent compilation cache: a folder, 'none', or 'auto' (the "
                            f"default: {COMPILE_CACHE} at --size paper, none otherwise)")
    return p


COMPILE_CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "tailjax" / "jax"


def use_compile_cache(args: argparse.Namespace) -> pathlib.Path | None:
    """Turn on JAX's persistent compilation cache as ``args.compile_cache`` asks (returns the
    folder, or None when off). A run that trains many models of one shape (every baseline's
    learning-rate and predictor grid) then compiles each program once; a program that
    closes over one data set's arrays compiles once per data set. A hit loads the executable
    compiled from the same program, so results are unchanged. Only compilations over a
    second are stored."""
    choice = getattr(args, "compile_cache", "none")
    if choice == "auto":
        choice = str(COMPILE_CACHE) if args.size == "paper" else "none"
    if choice == "none":
        return None
    import jax

    folder = pathlib.Path(choice).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def seeds(args: argparse.Namespace) -> list[int]:
    """The seeds an ``args`` from :func:`parser` asks for."""
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be >= 1, got {args.seeds}")
    return list(range(args.first_seed, args.first_seed + args.seeds))


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu() -> str | None:
    """The host CPU's model and widest vector extension (XLA's CPU code, and so the last bits
    of a long training run, depend on it)."""
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    vector = next((f for f in ("avx512f", "avx2", "avx", "neon", "asimd") if f in flags), None)
    return "; ".join(x for x in (model, vector) if x) or None


def environment() -> dict[str, Any]:
    """Device, versions and time of the run, for every JSON result."""
    import jax

    devices = jax.devices()
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": devices[0].platform,
        "device": devices[0].device_kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": _cpu(),
        "command": " ".join([pathlib.Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    for name in ("tailjax", "jax", "jaxlib", "flax", "optax", "jaxopt", "distrax", "numpy"):
        env[name] = _version(name)
    if "torch" in sys.modules:
        env["torch"] = _version("torch")
    return env


def time_call(fn: Callable[..., Any], *args: Any, repeats: int = 10,
              block: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Median wall time of ``fn(*args)`` after one warm-up call (compile time reported apart).

    ``block`` waits for the result (default ``jax.block_until_ready``); returns
    ``{"seconds": median, "compile_seconds": first call, "times": [...], "output": last}``.
    """
    import jax

    block = block or jax.block_until_ready
    start = time.perf_counter()
    out = block(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(max(1, int(repeats))):
        start = time.perf_counter()
        out = block(fn(*args))
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "compile_seconds": first, "times": times, "output": out}


def plain(obj: Any) -> Any:
    """``obj`` with arrays, numpy scalars, paths and non-finite floats made JSON-ready."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if hasattr(obj, "tolist") and hasattr(obj, "shape"):
        return np.asarray(obj).tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, pathlib.Path):
        return str(obj)
    return obj


def _flat(v: Any) -> bool:
    """A scalar, or a list of at most four scalars."""
    if isinstance(v, list):
        return len(v) <= 4 and not any(isinstance(u, (dict, list)) for u in v)
    return not isinstance(v, dict)


def dumps(obj: Any, indent: int = 2, _level: int = 0) -> str:
    """JSON with nested objects indented and every list of scalars, or of short tuples of
    scalars (a curve's (step, value) pairs), on one line: readable without one line per number."""
    pad, inner = " " * (indent * _level), " " * (indent * (_level + 1))
    if isinstance(obj, dict) and obj:
        items = (f"{inner}{json.dumps(str(k))}: {dumps(v, indent, _level + 1)}" for k, v in obj.items())
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list) and not all(_flat(v) for v in obj):
        return "[\n" + ",\n".join(f"{inner}{dumps(v, indent, _level + 1)}" for v in obj) + f"\n{pad}]"
    return _one_line(obj)


def _one_line(obj: Any) -> str:
    """``json.dumps(obj)``, except that a float holding a float32 value exactly (every number a
    float32 computation returns) is written with its shortest float32 digits, which read back
    to the same float32: result files about a fifth smaller at no loss."""
    if isinstance(obj, list):
        return "[" + ", ".join(_one_line(v) for v in obj) + "]"
    if isinstance(obj, float) and math.isfinite(obj):
        with np.errstate(over="ignore"):
            single = np.float32(obj)
        if float(single) == obj:
            return str(single)
    return json.dumps(obj)


def as_written(obj: Any) -> Any:
    """``obj`` as a result file written by :func:`dumps` reads it back: what a resumed run
    compares its settings with (applied to both sides, since files of earlier versions kept
    every float's float64 digits)."""
    return json.loads(dumps(plain(obj)))


def earlier_run(path: pathlib.Path, run: dict[str, Any]) -> dict[str, Any]:
    """The result file at ``path`` for a resumed run: its contents when its fields ``run``
    equal ``run`` as written, {} when there is no file; an error naming the fields that differ
    otherwise."""
    if not path.exists():
        return {}
    state = json.loads(path.read_text())
    mine, theirs = as_written(run), as_written({k: state.get(k) for k in run})
    if diff := [k for k in mine if theirs[k] != mine[k]]:
        raise SystemExit(f"--resume: {path} belongs to another run (differs in {', '.join(diff)}); "
                         "use another --out or delete it")
    return state


def write_json(out: str | pathlib.Path, name: str, payload: dict[str, Any]) -> pathlib.Path:
    """Write ``payload`` plus ``"environment"`` to ``out/name.json``; returns the path."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")  # replaced in one step: a run killed mid-write keeps the last file
    tmp.write_text(dumps(plain({**payload, "environment": environment()})))
    tmp.replace(path)
    return path


def _cell(value: Any, fmt: str | None) -> str:
    if value is None:
        return ""
    if fmt is not None and isinstance(value, (int, float, np.number)):
        return format(value, fmt)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: Iterable[dict[str, Any]], columns: Sequence[str],
                   formats: dict[str, str] | None = None) -> str:
    """A Markdown table of ``rows`` (dicts) with the given ``columns``."""
    formats = formats or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c), formats.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def figure(*args: Any, **kwargs: Any):
    """``matplotlib.pyplot.subplots`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig: Any, out: str | pathlib.Path, name: str) -> pathlib.Path:
    """Save ``fig`` as ``out/name.png`` (256-colour palette) and close it."""
    import matplotlib.pyplot as plt

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    palette_png(path)
    return path


def palette_png(path: str | pathlib.Path) -> None:
    """Rewrite a PNG with a 256-colour palette: line plots lose nothing visible and shrink about
    3x, which keeps the results folder small enough to travel with the tree to a GPU machine."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256)  # median cut, the default for RGB
    small.save(path, "PNG", optimize=True)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = [float(v) for v in values]
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value for ``wins`` against ``losses`` (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)
