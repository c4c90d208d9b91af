#!/bin/bash
# One lent-H200 call (issues 17 and 19): cvar_large's stage times, synced table and batched
# table, the adjoint-matching it/s curves, then the compute-bound UNet rows.
# usage: bash benchmarks/results/perf_h200/run_search_unet.sh SECONDS
# The recorded run (search_unet/) used the tree of commit 1873304, whose cvar_large searched
# its buffer and whose cvar_tuning also timed that search; both were reverted after it, so the
# same command on a later tree times the sort finish.
# (repository root, .whl/dev312 carried). Logs and JSON under $OUT.
T=$1
[ -d /tmp/site/jaxopt ] || python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
start=$SECONDS
run() {  # name, seconds at most, then the command's arguments
  local name=$1 most=$2; shift 2
  local left=$((T - (SECONDS - start)))
  [ $left -gt 20 ] || return
  [ $most -lt $left ] && left=$most
  echo "$(date +%T) $name (limit $left s)"
  timeout $left "$@" > $OUT/$name.log 2>&1
  echo "$(date +%T) $name rc=$?"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $OUT/gpu.txt
run tuning 120 python3 -m benchmarks.perf.cvar_tuning --size paper --blocks 2048 --warps 4 \
  --sample-sizes 1048576 --widths 3 5 --dtypes float32 bfloat16 --out $OUT/select
run cvar_large 60 python3 -m benchmarks.perf.cvar_large --size paper --tail-probs 0.001 0.01 0.1 --out $OUT/select
run batched 90 python3 -m benchmarks.perf.cvar_batched --size paper --out $OUT/select
run am_curve 110 python3 -m benchmarks.perf.adjoint_matching --size paper --part curve --out $OUT/am
run am_unet 600 python3 -m benchmarks.perf.adjoint_matching --size paper --part unet --out $OUT/am
