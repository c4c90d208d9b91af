#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_block_slots.sh SECONDS
# (repository root; nothing needs carrying). The compaction pass with a window of slots per
# block (SelectConfig.block_slots: no atomic add per block) against one buffer per row, on one
# row of 1e8 float32: kernel by kernel under the profiler, the pass and its finish alone, and
# the whole call with subsamples of 2^18 and 2^20.
T=$1; END=$(( $(date +%s) + T ))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/block_slots; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H > $D/commit.txt 2>/dev/null; git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
run profile 100 -m benchmarks.perf.cvar_profile --size paper --block-slots 0 8 16 32 --out $D/profile
run stages 60 -m benchmarks.perf.cvar_tuning --size paper --parts stages --methods compact --blocks 2048 --warps 4 \
  --block-slots 0 8 16 32 --finishes histogram --repeats 20 --out $D/stages
run sweep 90 -m benchmarks.perf.cvar_tuning --size paper --parts sweep --methods compact --finishes histogram \
  --blocks 2048 --sample-sizes 262144 1048576 --widths 5 --block-slots 0 8 16 32 --repeats 50 --out $D/sweep
cd $OUT && tar czf block_slots.tar.gz block_slots && rm -rf block_slots
