#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_dtypes_layer.sh SECONDS
# (repository root; carry .whl/lite: jaxopt, distrax and their needs from ../shared/wheels/gpu-cp312).
# The rows of the performance table that the current-defaults call does not take: 1e8 values in
# bfloat16 and float64 (cvar_large against risk.cvar and the dtype's one-read floor; float64 in a
# process of its own), and the CVaR decision layer against jaxopt's BoxOSQP (K and d curves).
T=$1; END=$(( $(date +%s) + T ))
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/lite/*.whl > /dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/dtypes_layer; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
TUNE="-m benchmarks.perf.cvar_tuning --size paper --parts dtypes --repeats 20"
run dtypes 120 $TUNE --dtypes float32 bfloat16 --out $D/dtypes
JAX_ENABLE_X64=1 run float64 90 $TUNE --dtypes float64 --out $D/float64
run layer 200 -m benchmarks.perf.dfl_training --size paper --layer-scaling \
  --skip tailjax pyepo-jax-mpax pyepo-torch-ortools --out $D/layer
cd $OUT && tar czf dtypes_layer.tar.gz dtypes_layer && rm -rf dtypes_layer
