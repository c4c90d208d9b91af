#!/bin/bash
# The second call of block_tail_h100/ (the same warm H100, right after run_block_tail.sh), run inline
# with `carry: [".parent"]`: each tree's profile twice more with 100 interleaved rounds, then the
# key search's exactness cases with a longer limit (they were cut at 60 s in call1).
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false; D=$OUT/block_tail2; mkdir -p $D; P=$PWD/.parent
nvidia-smi --query-gpu=name --format=csv > $D/gpu.txt
PR="-m benchmarks.perf.cvar_profile --size paper --calls 10 --rounds 100"
for i in 1 2; do
  (cd $P && PYTHONPATH=$P timeout 80 python3 $PR --configs four_reductions:block=1024 --out $D/parent$i > $D/parent$i.log 2>&1)
  PYTHONPATH=$PWD timeout 80 python3 $PR --configs two_reductions:block=1024 --out $D/packed$i > $D/packed$i.log 2>&1
done
PYTHONPATH=$PWD timeout 200 python3 -m benchmarks.perf.radix_exact --out $D/exact > $D/exact.log 2>&1; echo exact rc=$? >> $D/calls.log
cd $OUT && tar czf block_tail2.tar.gz block_tail2
