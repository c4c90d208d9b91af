#!/bin/bash
# One lent-GPU call (issue 19), nothing else on the machine. usage:
#   bash benchmarks/results/perf_h200/run_batched_stages.sh SECONDS
# (repository root; nothing needs carrying). Where the time of the batched CVaR goes: for
# (100, 1e6) and (1000, 1e5) float32, cvar_large against its selection without the exactness
# check, the stages (subsample bracket, compaction pass, finish), and the batched table against
# torch.topk; the single-row check cost again. Writes $OUT/batched_stages.tar.gz.
T=$1; END=$(($(date +%s) + T))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/batched_stages; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
python3 -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__)" >> $D/gpu.txt
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
for R in 100 1000; do
  run cond_rows$R 60 -m benchmarks.perf.cvar_tuning --size paper --parts cond --rows $R --out $D/rows$R
  run sweep_rows$R 70 -m benchmarks.perf.cvar_tuning --size paper --parts sweep --rows $R --methods compact \
    --finishes histogram sort --blocks 2048 --warps 4 --sample-sizes 1048576 --widths 5 --out $D/rows$R
done
run cond_rows1 50 -m benchmarks.perf.cvar_tuning --size paper --parts cond --out $D/rows1
run batched 100 -m benchmarks.perf.cvar_batched --size paper --shapes 100x1000000 1000x100000 \
  --tail-probs 0.001 0.01 0.1 --out $D
cd $OUT && tar czf batched_stages.tar.gz batched_stages && rm -rf batched_stages
