#!/bin/bash
# One lent-H200 call (issues 15, 17/19, 18). usage: bash benchmarks/results/run_device_call_unet_clock.sh SECONDS
# GPU (CPU cores 0-3): the UNet adjoint-matching variants bf16 and plain at 25M parameters and
# batch 256, alone; then the importance-sampling wall clock at paper size (RA with IS on the GPU
# against SAA by HiGHS on the CPU), Gaussian and t side by side. Host CPU cores 4-15: the six
# other Gen-DFL baselines under protocol paper-code at degrees 4 and 6 (knapsack, shortest path).
T=$1
[ -d /tmp/site/jaxopt ] || python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $OUT/gpu.txt
(CORES=4-15 DEGS="4 6" TAG=deg46_baselines PROBS="knapsack shortest_path" \
  METHODS="('nce','map','pairwise','listwise','dfl','dfl+')" \
  bash benchmarks/results/gen_dfl_table1_v2_paper_text/run_table1.sh paper-code $((T - 25))) &
taskset -c 0-3 timeout 170 python3 -m benchmarks.perf.adjoint_matching --size paper --part unet \
  --unet-variants bf16 plain --out $OUT/am > $OUT/am_unet.log 2>&1
echo "$(date +%T) unet rc=$?"
left=$((T - SECONDS - 20))
for r in gaussian t; do
  taskset -c $([ $r = t ] && echo 2-3 || echo 0-1) timeout $left python3 -m benchmarks.seeds.importance_sampling \
    --size paper --parts clock --returns $r --grid-from benchmarks/results/importance_sampling_h200_paper/clock_start.json \
    --out $OUT/is_clock_$r > $OUT/is_clock_$r.log 2>&1 &
done
wait
tar czf /tmp/results.tar.gz -C $OUT . && rm -rf $OUT/* && mv /tmp/results.tar.gz $OUT/
