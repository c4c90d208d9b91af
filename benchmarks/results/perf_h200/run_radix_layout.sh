#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_radix_layout.sh SECONDS
# (repository root; nothing needs carrying). After radix_nan_h100/ (rows of 64 values: wrong E(v)
# and NaN counts): is it the width, the rows per program, or a partial last program? Normal rows
# through the key search's kernel 20 times each, for rows of 64 values with 8 to 128 rows a program
# and with a batch that the programs divide, rows of 16 and 32 values, and rows of 65 to 16384
# values in batches that leave the last program partial (the layouts "auto" uses).
T=$1; END=$(( $(date +%s) + T ))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/radix_layout; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
source benchmarks/results/perf_h200/_call.sh
run layout $((T - 30)) -m benchmarks.perf.radix_exact --no-default --out $D/exact --repeat \
  100000x64:7 99968x64:7 100000x64:7:64 100000x64:7:32 100000x64:7:16 100000x64:7:8 \
  100000x32:4 100000x16:2 2049x64:7 2048x64:7 \
  99999x65:7 100000x128:13 100001x100:11 30001x200:21 12345x300:31 7777x600:61 3333x1500:151 \
  1001x3000:301 999x5000:501 77x16384:1639
cd $OUT && tar czf radix_layout.tar.gz radix_layout && rm -rf radix_layout
