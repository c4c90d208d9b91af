#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_radix.sh SECONDS
# (repository root; nothing needs carrying). Short rows (n <= 2^14): cvar_large's bitwise key
# search in registers (SelectConfig.short="auto" on GPU) against its lax.top_k path
# (short="top_k"), risk.cvar, jnp.sort, lax.top_k and torch.topk in the same process; then the
# exactness of bfloat16 rows and rows with +-inf and NaN against risk.cvar.
T=$1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/radix; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
timeout $((T / 2)) python3 - > $D/exact.log 2>&1 <<'P'
import jax, jax.numpy as jnp, numpy as np
from tailjax import risk
for dt in ("float32", "bfloat16"):
    for b, n in ((10000, 1000), (7, 3), (300, 10000), (5, 16384)):
        x = jax.random.normal(jax.random.PRNGKey(n), (b, n)).astype(dt)
        x = x.at[0, 1].set(jnp.inf).at[min(1, b - 1), 0].set(-jnp.inf).at[b - 1, n - 1].set(jnp.nan)
        for p in (0.001, 0.01, 0.1, 0.5):
            got, ref = risk.cvar_large(x, p), risk.cvar(x, p)
            vg, vr = risk.var_large(x, p), risk.var(x, p)
            g = jax.grad(lambda x: jnp.sum(jnp.where(jnp.isfinite(risk.cvar_large(x, p)), risk.cvar_large(x, p), 0)))(x[1:2])
            same_nan = bool(jnp.all(jnp.isnan(got) == jnp.isnan(ref)))
            fin = jnp.isfinite(ref)
            err = float(jnp.max(jnp.where(fin, jnp.abs(got.astype(float) - ref.astype(float)) / (1 + jnp.abs(ref.astype(float))), 0)))
            print(dt, b, n, p, "nan pattern same", same_nan, "var equal", bool(jnp.all((vg == vr) | (jnp.isnan(vg) & jnp.isnan(vr)))),
                  "max rel err", err, "grad sum", float(jnp.sum(g)), flush=True)
P
echo "exact rc=$? $(date +%T)" >> $D/calls.log
timeout $((T / 2 - 10)) python3 -m benchmarks.perf.cvar_batched --size paper \
  --shapes 10000x1000 1000x10000 100000x100 1000x1000 1x10000 100x16384 --shorts top_k --repeats 20 --out $D > $D/batched.log 2>&1
echo "batched rc=$? $(date +%T)" >> $D/calls.log
cd $OUT && tar czf radix.tar.gz radix && rm -rf radix
