#!/bin/bash
# One lent-GPU call (issue 19), nothing else on the machine. usage (repository root, no carry):
#   bash benchmarks/results/perf_h200/run_hist_probe.sh
# Whether the key-histogram pass counts on this GPU (benchmarks/perf/histogram_probe.py, with
# cvar_large timed by method against the floor), then the batched 1e2 x 1e6 shape at tail 0.1.
# Writes $OUT/hist_probe.tar.gz.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/hist_probe; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H >> $D/gpu.txt
timeout 200 python3 -m benchmarks.perf.histogram_probe --out $D > $D/probe.log 2>&1; echo "probe rc=$?" >> $D/calls.log
timeout 100 python3 -m benchmarks.perf.cvar_batched --size paper --shapes 100x1000000 --tail-probs 0.1 --out $D \
  > $D/batched.log 2>&1; echo "batched rc=$?" >> $D/calls.log
cd $OUT && tar czf hist_probe.tar.gz hist_probe && rm -rf hist_probe
