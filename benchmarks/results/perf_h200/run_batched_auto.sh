#!/bin/bash
# One short lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_batched_auto.sh SECONDS
# (repository root; nothing needs carrying). cvar_large with its default bracket (sorted subsamples
# for a batch) against torch.topk in the same process, (100, 1e6) then (1000, 1e5).
T=$1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/batched_auto; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
timeout $((T - 10)) python3 -m benchmarks.perf.cvar_batched --size paper --shapes 100x1000000 1000x100000 \
  --methods tailjax.cvar_large torch.topk --repeats 10 --out $D > $D/batched.log 2>&1
echo "batched rc=$? $(date +%T)" >> $D/calls.log
cd $OUT && tar czf batched_auto.tar.gz batched_auto && rm -rf batched_auto
