#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_block_rows.sh SECONDS
# (repository root; nothing needs carrying). The block x warps cells of block_repeat_h100/ on
# the batched shapes 1e3 x 1e5 and 1e2 x 1e6 and on one row of 1e8 again, two processes each.
T=$1; END=$(( $(date +%s) + T ))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/block_rows; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H > $D/commit.txt 2>/dev/null; git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
for i in 1 2; do
  for rows in 1 100 1000; do
    run rows${rows}_$i 60 -m benchmarks.perf.cvar_tuning --size paper --parts sweep --sweep-warps --rows $rows \
      --blocks 1024 2048 --warps 2 4 --sample-sizes 1048576 --widths 5 --finishes histogram \
      --methods compact --repeats 50 --out $D/rows${rows}_$i
  done
done
cd $OUT && tar czf block_rows.tar.gz block_rows && rm -rf block_rows
