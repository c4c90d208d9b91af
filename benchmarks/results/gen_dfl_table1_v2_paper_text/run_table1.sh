#!/bin/bash
# usage: [PROBS="..."] [DEGS="2 8"] [CORES=0-15] [TAG=...] [METHODS="('nce','map')"] [LAYERS_HEAD=1] run_table1.sh PROTOCOL SECONDS
# On the lent GPU host (its python3 3.12 image), from the repository root, with .whl/dev312 holding
# the wheels of dm-tree, gast, decorator, distrax, jaxopt and tfp-nightly for Python 3.12 (carried),
# and, with LAYERS_HEAD=1, .whl/layers_head the committed tailjax/layers files. Writes
# $OUT/PROTOCOL[_TAG].tar.gz with one folder and log per (problem, seed).
P=$1; T=$2
[ -d /tmp/site/jaxopt ] || python3 -m pip install -q --no-deps --no-index --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
if [ "$LAYERS_HEAD" = 1 ]; then cp .whl/layers_head/*.py tailjax/layers/ && rm -f tailjax/layers/scaling.py; fi
export PYTHONPATH=/tmp/site:$PWD JAX_PLATFORMS=cpu
SET="budget=None dim=50 n_train=200 n_test=40 K=32 K_eval=64 Kq=64 steps=300 proxy_steps=400 eval_samples=10000 \
baseline_lrs=(0.01,0.1) baseline_predictors=('linear','mlp') baseline_max_epochs=200 baseline_patience=5 \
methods=${METHODS:-('gen_dfl','nll_flow','mse','spo+')}"
D=$P${TAG:+_$TAG}; mkdir -p $OUT/$D
for prob in ${PROBS:-portfolio knapsack shortest_path}; do
  for s in 0 1 2 3 4; do
    taskset -c ${CORES:-0-15} timeout $T python3 -m benchmarks.seeds.gen_dfl --size small --protocol $P --only table1 --problems $prob \
      --degs ${DEGS:-2 8} --first-seed $s --seeds 1 --out $OUT/$D/${prob}_s$s --set $SET > $OUT/$D/${prob}_s$s.log 2>&1 &
  done
done
wait
cd $OUT && tar czf $D.tar.gz $D && rm -rf $D
