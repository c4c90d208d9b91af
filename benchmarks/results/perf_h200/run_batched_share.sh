#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_batched_share.sh SECONDS
# (repository root; nothing needs carrying). Rows of a batch now share one subsample budget
# (SelectConfig.sample_total = 2^20 values): the batched table against torch.topk with both
# brackets at that share; the whole cvar_large at (1000, 1e5) and (100, 1e6) per subsample
# size and bracket (search, sort). Writes $OUT/batched_share.tar.gz.
T=$1; END=$(($(date +%s) + T))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/batched_share; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H > $D/commit.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
run batched 90 -m benchmarks.perf.cvar_batched --size paper --repeats 10 \
  --shapes 100x1000000 1000x100000 4x25000000 \
  --methods tailjax.cvar_large torch.topk --brackets search sort --out $D
SWEEP="--size paper --parts sweep --methods compact --finishes histogram --blocks 2048 --warps 4 --widths 5 --repeats 10"
run rows1000 100 -m benchmarks.perf.cvar_tuning $SWEEP --rows 1000 --sample-sizes 512 1024 2048 \
  --brackets search sort --out $D/rows1000
run rows100 80 -m benchmarks.perf.cvar_tuning $SWEEP --rows 100 --sample-sizes 4096 8192 \
  --brackets search sort --out $D/rows100
cd $OUT && tar czf batched_share.tar.gz batched_share && rm -rf batched_share
