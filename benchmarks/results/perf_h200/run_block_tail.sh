#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_block_tail.sh SECONDS
# (repository root; carry .parent, made as below). The pass's block tail in two reductions (members and
# values >= hi packed into one int32 sum; NaN read off the excess sum) against the four reductions
# of commit a52d029, each tree in its own process: one row of 1e8 float32 at the defaults,
# profiled and timed interleaved with the floor. Then the current defaults' full set
# (run_current_default.sh: one row against torch.topk, the batched shapes, the exactness cases).
T=$1; END=$(( $(date +%s) + T ))
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/block_tail; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H > $D/commit.txt 2>/dev/null; git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
P=$PWD/.parent  # commit a52d029 (the four reductions): git archive a52d029 tailjax benchmarks/__init__.py benchmarks/perf benchmarks/_harness.py, carried
PROFILE="-m benchmarks.perf.cvar_profile --size paper --calls 10 --rounds 30"
(cd $P && PYTHONPATH=$P run parent 100 $PROFILE --configs four_reductions:block=1024 --out $D/parent)
PYTHONPATH=$PWD run packed 100 $PROFILE --configs two_reductions:block=1024 --out $D/packed
(cd $P && PYTHONPATH=$P run parent2 100 $PROFILE --configs four_reductions:block=1024 --out $D/parent2)
export PYTHONPATH=$PWD
run large 100 -m benchmarks.perf.cvar_large --size paper --repeats 20 --out $D/large
run batched 120 -m benchmarks.perf.cvar_batched --size paper --repeats 10 \
  --shapes 10000x1000 1000x100000 100x1000000 1x10000 --methods tailjax.cvar_large torch.topk --out $D/batched
run exact 60 -m benchmarks.perf.radix_exact --out $D/exact
cd $OUT && tar czf block_tail.tar.gz block_tail && rm -rf block_tail
