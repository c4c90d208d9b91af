#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_current_default.sh SECONDS
# (repository root; nothing needs carrying). The library's current defaults on whichever GPU comes
# (the H200 had not run them): one row of 1e8 float32 profiled and timed interleaved with the
# floor (two processes), against torch.topk, the batched shapes of the issue, time against n,
# and the key search's exactness cases.
T=$1; END=$(( $(date +%s) + T ))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/current_default; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
for i in 1 2; do
  run profile$i 60 -m benchmarks.perf.cvar_profile --size paper --calls 10 --rounds 100 --configs default:block=1024 --out $D/profile$i
done
run large 100 -m benchmarks.perf.cvar_large --size paper --repeats 20 --out $D/large
run batched 150 -m benchmarks.perf.cvar_batched --size paper --repeats 10 \
  --shapes 10000x1000 1000x100000 100x1000000 1x10000 --methods tailjax.cvar_large torch.topk --out $D/batched
run scaling 150 -m benchmarks.perf.cvar_large --size paper --scaling --tail-probs 0.01 --out $D/scaling
run exact 130 -m benchmarks.perf.radix_exact --out $D/exact
cd $OUT && tar czf current_default.tar.gz current_default && rm -rf current_default
