#!/bin/bash
# One lent-H200 call (issue 19), nothing else on the machine. usage:
#   bash benchmarks/results/perf_h200/run_hist_unet.sh SECONDS
# (repository root, .whl/dev312 carried). In order, each with what is left of SECONDS:
# cvar_large's stages with the histogram finish and the sort finish (cvar_tuning), the synced
# table against torch.topk and the floor (cvar_large), the batched shapes (cvar_batched), the
# PyTorch UNet peer (eager and torch.compile, float32 and bf16 autocast), then JAX's UNet
# variants bf16 and plain. Writes $OUT/hist_unet.tar.gz.
T=$1; END=$(($(date +%s) + T))
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/hist_unet; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H >> $D/gpu.txt
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
run tuning 130 -m benchmarks.perf.cvar_tuning --size paper --parts sweep --blocks 2048 --warps 4 \
  --sample-sizes 262144 1048576 --widths 5 --finishes histogram sort --out $D
run cvar_large 80 -m benchmarks.perf.cvar_large --size paper --tail-probs 0.001 0.01 0.1 --out $D
run batched 90 -m benchmarks.perf.cvar_batched --size paper --tail-probs 0.001 0.01 0.1 --out $D
run unet_torch 240 -m benchmarks.perf.adjoint_matching --size paper --part unet-torch --torch-modes eager compile --out $D
run unet_jax 150 -m benchmarks.perf.adjoint_matching --size paper --part unet --unet-variants bf16 plain --out $D
nvidia-smi --query-gpu=name,memory.used --format=csv >> $D/gpu.txt
cd $OUT && tar czf hist_unet.tar.gz hist_unet && rm -rf hist_unet
