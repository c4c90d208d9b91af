#!/bin/bash
# One lent-H200 call (issues 15, 18). usage: bash benchmarks/results/run_device_call_clock2.sh SECONDS
# GPU + CPU cores 0-3: the importance-sampling wall clock's other two methods at paper size (RA
# with IS as written on the GPU, SAA by HiGHS on the CPU), Gaussian and t side by side. Host CPU
# cores 4-15: the six other Gen-DFL baselines under protocol paper-code, portfolio, degrees 4 and 8.
T=$1
[ -d /tmp/site/jaxopt ] || python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $OUT/gpu.txt
for d in 4 8; do
  (CORES=4-15 DEGS=$d TAG=deg${d}_portfolio_baselines PROBS=portfolio METHODS="('nce','map','pairwise','listwise','dfl','dfl+')" \
    bash benchmarks/results/gen_dfl_table1_v2_paper_text/run_table1.sh paper-code $((T - 25))) &
done
for r in gaussian t; do
  taskset -c $([ $r = t ] && echo 2-3 || echo 0-1) timeout $((T - 20)) python3 -m benchmarks.seeds.importance_sampling \
    --size paper --parts clock --returns $r --clock-methods "SAA HiGHS" "RA-IS as written" \
    --grid-from benchmarks/results/importance_sampling_h200_paper/clock_start.json \
    --out $OUT/is_clock2_$r > $OUT/is_clock2_$r.log 2>&1 &
done
wait
tar czf /tmp/results.tar.gz -C $OUT . && rm -rf $OUT/* && mv /tmp/results.tar.gz $OUT/
