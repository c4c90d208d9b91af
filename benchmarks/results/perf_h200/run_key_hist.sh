#!/bin/bash
# One lent-H200 call (issue 19), nothing else on the machine. usage:
#   bash benchmarks/results/perf_h200/run_key_hist.sh SECONDS
# (repository root; nothing needs carrying: tailjax.risk and these benchmarks import no wheel
# outside the device image). In order, each with what is left of SECONDS:
# cvar_large's stages with the key-histogram pass against the compaction pass (cvar_tuning),
# the synced table against torch.topk and the floor (cvar_large), float32/bfloat16 inputs,
# the batched 1e2 x 1e6 shape, float64 inputs, and the scaling curve against n.
# Writes $OUT/key_hist.tar.gz.
T=$1; END=$(($(date +%s) + T))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/key_hist; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H >> $D/gpu.txt
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
run tuning 150 -m benchmarks.perf.cvar_tuning --size paper --parts sweep --blocks 2048 4096 --warps 4 \
  --sample-sizes 262144 1048576 --widths 5 --methods histogram compact --finishes histogram --out $D
run cvar_large 90 -m benchmarks.perf.cvar_large --size paper --tail-probs 0.001 0.01 0.1 --out $D
run dtypes 60 -m benchmarks.perf.cvar_tuning --size paper --parts dtypes --dtypes float32 bfloat16 --out $D
run batched 90 -m benchmarks.perf.cvar_batched --size paper --shapes 100x1000000 --tail-probs 0.001 0.01 0.1 --out $D
JAX_ENABLE_X64=1 run dtypes64 50 -m benchmarks.perf.cvar_tuning --size paper --parts dtypes --dtypes float64 --out $D/f64
run scaling 120 -m benchmarks.perf.cvar_large --size paper --scaling --tail-probs 0.01 --out $D
nvidia-smi --query-gpu=name,memory.used --format=csv >> $D/gpu.txt
cd $OUT && tar czf key_hist.tar.gz key_hist && rm -rf key_hist
