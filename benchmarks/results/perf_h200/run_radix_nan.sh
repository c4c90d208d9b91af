#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_radix_nan.sh SECONDS
# (repository root; nothing needs carrying). run_radix_cap.sh's timing of 10000 x 64 at tail 0.1
# returned NaN from the key search (short="radix"; "auto" takes top_k there): the default exactness
# cases again, then normal rows of that and other shapes through the kernel 20 times each (is a
# disagreement deterministic, and which output is wrong?), then that timing again.
T=$1; END=$(( $(date +%s) + T ))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/radix_nan; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
source benchmarks/results/perf_h200/_call.sh
run exact 200 -m benchmarks.perf.radix_exact --out $D/exact --repeat 10000x64:7 100000x64:7 2049x64:7 10000x65:7 \
  10000x128:13 10000x1000:101 1000x10000:1001 100x16384:1639 10000x64:1 10000x64:64
run batched 100 -m benchmarks.perf.cvar_batched --size paper --shapes 10000x64 10000x128 10000x1000 --tail-probs 0.1 0.01 \
  --shorts radix --methods "tailjax.cvar_large" --repeats 20 --out $D/batched
cd $OUT && tar czf radix_nan.tar.gz radix_nan && rm -rf radix_nan
