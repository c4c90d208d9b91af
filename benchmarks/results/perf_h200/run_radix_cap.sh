#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_radix_cap.sh SECONDS
# (repository root; nothing needs carrying). The short-row key search with programs capped at the
# batch's rows: its exactness for rows of 3 to 16384 values, float32 and bfloat16, against a
# float64 host sort, and the (7, 3) batch in the uncapped layout that disagreed on an H100
# (benchmarks.perf.radix_exact); then timings, key search against the top_k path and torch.topk,
# of bfloat16 rows and of float32 rows of at most 64 values ("auto" takes top_k for both).
# WAIT_FOR: the timings start once no process matches this pattern (another job of the same call).
T=$1; END=$(( $(date +%s) + T ))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/radix_cap; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
source benchmarks/results/perf_h200/_call.sh
run exact 150 -m benchmarks.perf.radix_exact --out $D/exact
[ -n "$WAIT_FOR" ] && while pgrep -f "$WAIT_FOR" > /dev/null; do sleep 5; done
echo "timings from $(date +%T)" >> $D/calls.log
run bf16 120 -m benchmarks.perf.cvar_batched --size paper --dtype bfloat16 --shapes 10000x1000 1000x10000 100x16384 \
  --shorts top_k radix --repeats 20 --out $D/bf16
run short 120 -m benchmarks.perf.cvar_batched --size paper --shapes 100000x16 100000x64 10000x64 1000x32 \
  --shorts top_k radix --repeats 20 --out $D/short
cd $OUT && tar czf radix_cap.tar.gz radix_cap && rm -rf radix_cap
