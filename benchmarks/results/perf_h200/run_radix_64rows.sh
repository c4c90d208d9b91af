#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_radix_64rows.sh SECONDS
# (repository root; nothing needs carrying). The key search with programs of at most 64 rows (after
# radix_layout_h100/): the default exactness cases, the layouts that failed there 20 times each,
# and the timing of rows of 16 to 64 values against the top_k path and torch.topk.
T=$1; END=$(( $(date +%s) + T ))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/radix_64rows; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
source benchmarks/results/perf_h200/_call.sh
run exact 200 -m benchmarks.perf.radix_exact --out $D/exact --repeat 100000x64:7 100000x32:4 100000x16:2 2049x64:7 \
  10000x64:64 100001x8:1 3x64:7
run short 120 -m benchmarks.perf.cvar_batched --size paper --shapes 100000x16 100000x64 10000x64 1000x32 \
  --shorts top_k radix --repeats 20 --out $D/short
cd $OUT && tar czf radix_64rows.tar.gz radix_64rows && rm -rf radix_64rows
