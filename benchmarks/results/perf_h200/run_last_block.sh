#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_last_block.sh SECONDS
# (repository root; carry .parent: `git archive e62e663 tailjax benchmarks/__init__.py
# benchmarks/perf benchmarks/_harness.py | tar -x -C .parent`). The compaction kernel masks the
# lanes past a row only in the row's last block (two code paths under pl.when) against e62e663,
# which masks them in every block when the row is not a multiple of the block: one row of 1e8
# float32 at the defaults, each tree in its own process twice, profiled and timed interleaved
# with the floor; then this tree on 99,999,744 values (a multiple of 1024: no mask at all).
T=$1; END=$(( $(date +%s) + T ))
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/last_block; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
P=$PWD/.parent
PROFILE="-m benchmarks.perf.cvar_profile --size paper --calls 10 --rounds 100"
for i in 1 2; do
  (cd $P && PYTHONPATH=$P run every_block$i 60 $PROFILE --configs every_block:block=1024 --out $D/every_block$i)
  PYTHONPATH=$PWD run last_block$i 60 $PROFILE --configs last_block:block=1024 --out $D/last_block$i
done
PYTHONPATH=$PWD run whole_blocks 60 $PROFILE --n 99999744 --configs whole_blocks:block=1024 --out $D/whole_blocks
cd $OUT && tar czf last_block.tar.gz last_block && rm -rf last_block
