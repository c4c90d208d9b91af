#!/bin/bash
# usage: CORES=4-15 [VARIANTS="after before"] bash benchmarks/results/gen_dfl_energy_layers/run_energy.sh SECONDS
# The energy cells of the reduced Table 1 (protocol paper-text, the settings of
# gen_dfl_table1_v2_paper_text/run_table1.sh), 5 seeds, degrees 2 and 8, once with the
# decision layers of this tree ("after") and once with those of commit ba4c1ca, before the
# float32 scaling of tailjax.layers.scaling ("before", carried in .whl/layers_before). On the
# lent GPU host's CPU cores (JAX_PLATFORMS=cpu), pinned to CORES; .whl/dev312 carried.
# Writes $OUT/energy.tar.gz with one JSON and log per (variant, seed).
T=$1
[ -d /tmp/site/jaxopt ] || python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
rm -rf /tmp/before && mkdir -p /tmp/before && cp -r tailjax benchmarks /tmp/before/
rm /tmp/before/tailjax/layers/*.py && cp .whl/layers_before/*.py /tmp/before/tailjax/layers/
SET="budget=None dim=50 n_train=200 n_test=40 K=32 K_eval=64 Kq=64 steps=300 proxy_steps=400 eval_samples=10000 \
baseline_lrs=(0.01,0.1) baseline_predictors=('linear','mlp') baseline_max_epochs=200 baseline_patience=5 \
methods=('gen_dfl','nll_flow','mse','spo+')"
D=$OUT/energy; mkdir -p $D
for variant in ${VARIANTS:-after before}; do
  root=$PWD; [ $variant = before ] && root=/tmp/before
  for s in 0 1 2 3 4; do
    (cd $root && JAX_PLATFORMS=cpu PYTHONPATH=/tmp/site:$root taskset -c ${CORES:-0-15} timeout $T \
      python3 -m benchmarks.seeds.gen_dfl --size small --protocol paper-text --only table1 --problems energy \
      --degs 2 8 --first-seed $s --seeds 1 --out $D/${variant}_s$s --set $SET > $D/${variant}_s$s.log 2>&1) &
  done
done
wait
cd $OUT && tar czf energy.tar.gz energy && rm -rf energy
