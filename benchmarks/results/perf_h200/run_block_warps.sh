#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_block_warps.sh SECONDS
# (repository root; nothing needs carrying). One row of 1e8 float32: the whole cvar_large with
# the compaction pass's block of 1024 or 2048 values and 2 or 4 warps (the defaults: 2048, 4),
# twice in one process, for the default's run-to-run spread. Writes $OUT/block_warps.tar.gz.
T=$1; END=$(($(date +%s) + T))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/block_warps; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
S="-m benchmarks.perf.cvar_tuning --size paper --methods compact --finishes histogram --parts sweep --sweep-warps \
  --blocks 1024 2048 --warps 2 4 --sample-sizes 1048576 --widths 5 --repeats 20"
run sweep1 120 $S --out $D/sweep1
run sweep2 120 $S --out $D/sweep2
cd $OUT && tar czf block_warps.tar.gz block_warps && rm -rf block_warps
