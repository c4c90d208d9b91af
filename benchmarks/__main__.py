"""`python -m benchmarks quick [--out DIR] [--only NAME ...]`: each method family's headline.

Every module in ``benchmarks/quick/`` exposes ``run(out_dir: pathlib.Path) -> str``; it
reproduces its family's headline result on CPU in about a minute, writes a JSON result and a
plot under ``out_dir``, and returns a table to print. Modules run in name order.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import pkgutil
import sys
import time

from benchmarks import quick


def _quick_modules(only):
    names = sorted(m.name for m in pkgutil.iter_modules(quick.__path__) if not m.name.startswith("_"))
    unknown = set(only or ()) - set(names)
    if unknown:
        raise SystemExit(f"unknown quick benchmark(s) {sorted(unknown)}; available: {names}")
    return [n for n in names if not only or n in only]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("command", choices=["quick"])
    parser.add_argument("--out", default="results/quick", help="folder for JSON results and plots")
    parser.add_argument("--only", nargs="*", help="run only these quick modules")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in _quick_modules(args.only):
        start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.quick.{name}")
        table = module.run(out)
        print(f"\n== {name} ({time.perf_counter() - start:.1f} s) ==\n{table}", flush=True)
    print(f"\nresults and plots in {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
