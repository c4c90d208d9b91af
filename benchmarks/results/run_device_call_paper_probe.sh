#!/bin/bash
# One lent-GPU call (issues 15, 16): what one paper-size cell costs, and its numbers.
# usage (repository root on the device, .whl/dev312 and .data carried: .data holds ../shared/data/carbon_intensity): bash benchmarks/results/run_device_call_paper_probe.sh SECONDS
# Side by side on the one GPU, two host cores each: Gen-DFL Table 1 at paper size (every method of
# the size), degree 2, seed 0, per problem and protocol; GAS-DRO at paper size, protocol paper,
# seed 0, ML and GAS-DRO at one grid point. Writes $OUT/paper_probe.tar.gz (logs and JSONs).
T=$1
[ -d /tmp/site/jaxopt ] || python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
D=$OUT/paper_probe; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H >> $D/gpu.txt
c=0
for proto in paper-code paper-text; do
  for prob in portfolio knapsack shortest_path; do
    (taskset -c $c-$((c + 1)) timeout $((T - 20)) python3 -m benchmarks.seeds.gen_dfl --size paper --protocol $proto \
      --only table1 --problems $prob --degs 2 --seeds 1 --out $D/gen_dfl_${proto}_$prob > $D/gen_dfl_${proto}_$prob.log 2>&1
     rc=$?; echo "$(date +%T) gen_dfl $proto $prob rc=$rc" >> $D/calls.log) &
    c=$((c + 2))
  done
done
(taskset -c 12-13 timeout $((T - 20)) python3 -m benchmarks.seeds.gas_dro --size paper --seeds 1 --protocols paper \
  --parts carbon --methods ML GAS-DRO --lams 0.5 --deltas 0.001 --lrs 1e-3 --data .data \
  --out $D/gas_dro_paper > $D/gas_dro_paper.log 2>&1
 rc=$?; echo "$(date +%T) gas_dro rc=$rc" >> $D/calls.log) &
wait
nvidia-smi --query-gpu=name,memory.used --format=csv >> $D/gpu.txt
cd $OUT && tar czf paper_probe.tar.gz paper_probe && rm -rf paper_probe
