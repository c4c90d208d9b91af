#!/bin/bash
# usage: [CORES=0-3] bash benchmarks/results/perf_h200/run_perf.sh PART   (PART = kernels | peers | peers2 | layer | select)
# On the lent GPU host (its python3 3.12 image with jax, flax, optax, chex, torch), from the
# repository root, with .whl/dev312 (jaxopt, distrax and their needs) and .whl/peers (pyepo,
# mpax, ortools and their needs) carried. Writes $OUT/PART.tar.gz with every JSON, plot and log.
# CORES pins the benchmarks to those CPU cores (the peers part ran beside CPU jobs on the others).
set -u
PART=$1
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl .whl/peers/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
D=$OUT/$PART; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
python3 -c "import jax, torch; print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__)" >> $D/gpu.txt 2>&1
run() { local name=$1 limit=$2; shift 2; echo "== $name"; taskset -c ${CORES:-0-15} timeout $limit python3 "$@" --out $D > $D/$name.log 2>&1; echo "$name rc=$? $(date +%T)"; }
if [ "$PART" = kernels ]; then
  run cvar_batched 170 -m benchmarks.perf.cvar_batched --size paper --tail-probs 0.001 0.01 0.1
  run cvar_scaling 170 -m benchmarks.perf.cvar_large --size paper --scaling --tail-probs 0.01
  run dfl_training 220 -m benchmarks.perf.dfl_training --size paper --layer-scaling
elif [ "$PART" = select ]; then  # cvar_large with the batched pass and sorted buffer; the UNet rows
  run cvar_large 100 -m benchmarks.perf.cvar_large --size paper --tail-probs 0.001 0.01 0.1
  run cvar_scaling 150 -m benchmarks.perf.cvar_large --size paper --scaling --tail-probs 0.01
  run adjoint_matching_unet 270 -m benchmarks.perf.adjoint_matching --size paper --part unet
elif [ "$PART" = layer ]; then  # the decision layer against K and d after the precision fix
  run layer_scaling 200 -m benchmarks.perf.dfl_training --size paper --layer-scaling \
    --skip tailjax pyepo-jax-mpax pyepo-torch-ortools layer
elif [ "$PART" = peers2 ]; then  # the adjoint-matching rows that peers' time limit cut
  run adjoint_matching 420 -m benchmarks.perf.adjoint_matching --size paper --part mlp --models 1 2
else
  run dfl_layer 110 -m benchmarks.perf.dfl_training --size paper --layer-scaling \
    --skip tailjax pyepo-jax-mpax pyepo-torch-ortools
  run adjoint_matching 260 -m benchmarks.perf.adjoint_matching --size paper --part mlp
  run gas_dro 180 -m benchmarks.perf.gas_dro --size paper --skip-full-run
fi
cd $OUT && tar czf $PART.tar.gz $PART && rm -rf $PART
