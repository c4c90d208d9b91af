"""A driver for Nsight Compute (issue 19): the kernels of ``risk.cvar_large`` on one row.

    ncu -k regex:'^_kernel$|gather|input_reduce_fusion$' python -m benchmarks.perf.cvar_ncu

Runs the one-read floor (``jnp.sum``) once and ``cvar_large`` once per tail probability on
one row of n float32 normals (default 1e8), each checked against the float64 reference;
ncu replays each kernel it selects in isolation, so one call of each is enough. On the H200
of ``benchmarks/results/perf_h200/variants_h200/`` ncu crashed in it (segmentation fault,
``ncu.err`` there) before writing a report.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.perf.cvar_tuning import reference
from tailjax import risk


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000_000)
    parser.add_argument("--tail-probs", type=float, nargs="*", default=[1e-3, 1e-2, 1e-1])
    args = parser.parse_args(argv)
    x = jax.random.normal(jax.random.key(0), (args.n,), jnp.float32)
    print("floor", float(jax.jit(jnp.sum)(x)))
    x64 = np.asarray(x, np.float64)
    for p in args.tail_probs:
        got = float(jax.jit(lambda x: risk.cvar_large(x, p))(x))
        want = reference(x64, p)
        print(f"tail {p}: cvar_large {got:.8f}, float64 {want:.8f}, relative error {abs(got - want) / abs(want):.2e}")


if __name__ == "__main__":
    main()
