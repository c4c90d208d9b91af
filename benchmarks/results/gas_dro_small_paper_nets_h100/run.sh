#!/bin/bash
# One lent-GPU call (issue 16). usage: [PARTS="carbon corruptions"] [TAG=corruptions] \
#   bash benchmarks/results/gas_dro_small_paper_nets_h100/run.sh SECONDS
# (repository root on the device; carry .whl/dev312, the Python 3.12 wheels of ../shared/wheels/gpu-cp312,
# and .data/carbon.tar.gz, made by `tar czf .data/carbon.tar.gz -C ../shared/data carbon_intensity`).
# The carbon table (and the other PARTS) under the paper protocol at --size small_paper_nets (the small
# size's budgets, the paper's LSTM (128, 64) and 1-D UNet noise network), seeds 0-4, one process per
# seed sharing the GPU. Writes $OUT/runs${TAG:+_$TAG}.tar.gz.
T=$1
PARTS=${PARTS:-carbon}
mkdir -p .data && tar xzf .data/carbon.tar.gz -C .data
python3 -m pip install -q --no-deps --no-index --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
# five processes share the card: each may grow to 17 % of it (as in run_split.sh)
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false XLA_PYTHON_CLIENT_MEM_FRACTION=0.17
R=runs${TAG:+_$TAG}; D=$OUT/$R; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H > $D/commit.txt 2>/dev/null; git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
for s in 0 1 2 3 4; do
  taskset -c $((3 * s))-$((3 * s + 2)) timeout $T python3 -m benchmarks.seeds.gas_dro --size small_paper_nets \
    --protocols paper --parts $PARTS --first-seed $s --seeds 1 --data .data --compile-cache none \
    --out $D/seed$s > $D/seed$s.log 2>&1 &
done
wait
cd $OUT && tar czf $R.tar.gz $R && rm -rf $R
