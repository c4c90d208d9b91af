#!/bin/bash
# GPU part of a lent-H200 call (issue 19): where cvar_large's time goes (tuning sweep), then
# the batched CVaR against its peers. usage: bash benchmarks/results/perf_h200/run_select.sh SECONDS
# (repository root, .whl/dev312 carried; pinned to CPU cores 0-1, the rest left to CPU jobs).
T=$1
[ -d /tmp/site/jaxopt ] || python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false
start=$SECONDS
run() {  # name, then the command's arguments
  local name=$1; shift
  local left=$((T - (SECONDS - start)))
  [ $left -gt 20 ] || return
  taskset -c 0-1 timeout $left "$@" > $OUT/$name.log 2>&1
}
run tuning python3 -m benchmarks.perf.cvar_tuning --size paper --dtypes float32 bfloat16 --out $OUT/cvar_tuning
run tuning_f64 env JAX_ENABLE_X64=1 python3 -m benchmarks.perf.cvar_tuning --size paper --parts dtypes --dtypes float64 --out $OUT/cvar_tuning
run batched python3 -m benchmarks.perf.cvar_batched --size paper --out $OUT/cvar_batched
nvidia-smi --query-gpu=name,memory.used --format=csv > $OUT/gpu.txt
