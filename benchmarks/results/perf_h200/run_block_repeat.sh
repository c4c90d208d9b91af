#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_block_repeat.sh SECONDS
# (repository root; nothing needs carrying). The compaction pass's block x warps again, the
# default (2048, 4) against the fastest cells of block_warps_h100/, in three processes one
# after the other (the spread between processes is what decides whether a difference is real).
T=$1; END=$(( $(date +%s) + T ))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/block_repeat; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H > $D/commit.txt 2>/dev/null; git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
for i in 1 2 3; do
  run sweep$i 100 -m benchmarks.perf.cvar_tuning --size paper --parts sweep --sweep-warps \
    --blocks 1024 2048 --warps 2 4 --sample-sizes 1048576 --widths 5 --finishes histogram \
    --methods compact --repeats 50 --out $D/sweep$i
done
cd $OUT && tar czf block_repeat.tar.gz block_repeat && rm -rf block_repeat
