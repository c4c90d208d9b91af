#!/bin/bash
# One lent-H200 call (issue 13 and 18): the energy cells with this tree's layers on host CPU
# cores 4-15, and on the GPU the float32/float64 decision-layer check and the importance-
# sampling headline and grid at paper size. usage: bash benchmarks/results/run_device_call1.sh SECONDS
T=$1
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false
(CORES=4-15 VARIANTS=after bash benchmarks/results/gen_dfl_energy_layers/run_energy.sh $((T - 20))) &
(taskset -c 0-1 timeout $((T - 30)) python3 -m benchmarks.perf.decision_layer --out $OUT/decision_layer_gpu \
  > $OUT/decision_layer_gpu.log 2>&1) &
(taskset -c 2 timeout $((T - 30)) python3 -m benchmarks.seeds.importance_sampling --size paper --parts variance \
  --out $OUT/is_variance > $OUT/is_variance.log 2>&1) &
(taskset -c 3 timeout $((T - 30)) python3 -m benchmarks.seeds.importance_sampling --size paper --parts grid \
  --out $OUT/is_grid > $OUT/is_grid.log 2>&1) &
wait
nvidia-smi --query-gpu=name,memory.used --format=csv > $OUT/gpu.txt
