#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_block_warps.sh SECONDS
# (repository root; nothing needs carrying). The compaction pass's block size against its warps
# for one row of 1e8 float32 (the whole cvar_large call, tails 1e-3 / 1e-2 / 1e-1).
T=$1; END=$(( $(date +%s) + T ))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/block_warps; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H > $D/commit.txt 2>/dev/null; git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
run sweep $T -m benchmarks.perf.cvar_tuning --size paper --parts sweep --sweep-warps \
  --blocks 1024 2048 4096 --warps 2 4 8 --sample-sizes 1048576 --widths 5 --finishes histogram \
  --methods compact --repeats 20 --out $D/sweep
cd $OUT && tar czf block_warps.tar.gz block_warps && rm -rf block_warps
