#!/bin/bash
# One lent-H200 call (issues 15, 18), after run_device_call_is_grid.sh. usage: bash THIS SECONDS
# GPU: the importance-sampling cells still missing at paper size, five processes side by side,
# resuming from benchmarks/results/importance_sampling_h200_paper/grid2/NAME:
#   t3: Student-t 1e-3, self-structuring's parts (b, c), then the clock at 1e-3 (20 keys per n);
#   t2: Student-t 1e-2, the clock's "RA-IS as written" (50 keys);
#   g3_fresh, g3_written, g3_highs: Gaussian 1e-3, one clock method each (20 keys per n), the
#   sample sizes from g3's grid.
# Host CPU cores 5-15: the six other Gen-DFL baselines under protocol paper-text, portfolio, degrees 6 and 8.
T=$1
[ -d /tmp/site/jaxopt ] || python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $OUT/gpu.txt
git log -1 --format=%H > $OUT/commit.txt
for d in 6 8; do
  (CORES=5-15 DEGS=$d TAG=deg${d}_portfolio_baselines PROBS=portfolio METHODS="('nce','map','pairwise','listwise','dfl','dfl+')" \
    bash benchmarks/results/gen_dfl_table1_v2_paper_text/run_table1.sh paper-text $((T - 25))) &
done
SRC=benchmarks/results/importance_sampling_h200_paper/grid2
job() {  # NAME CORES ARGS...
  local name=$1 cores=$2; shift 2
  mkdir -p $OUT/$name && cp -r $SRC/$name/. $OUT/$name/ 2>/dev/null
  taskset -c $cores timeout $((T - 20)) python3 -m benchmarks.seeds.importance_sampling --size paper --resume \
    --out $OUT/$name "$@" >> $OUT/$name/run.log 2>&1
  echo "$(date +%T) $name rc=$?" >> $OUT/$name/run.log
}
job t3 0 --parts grid clock --returns t --tail-probs 1e-3 --methods saa self_structuring --clock-reps 20 &
job t2 4 --parts grid clock --returns t --tail-probs 1e-2 --methods self_structuring --clock-methods "RA-IS as written" \
  --grid-from benchmarks/results/importance_sampling_h200_paper/clock_start.json &
i=1
for m in "RA-IS fresh" "RA-IS as written" "SAA HiGHS"; do
  name=g3_$(echo $m | awk '{print tolower($NF)}')
  job $name $i --parts clock --returns gaussian --tail-probs 1e-3 --clock-reps 20 --clock-methods "$m" \
    --grid-from $SRC/g3/checkpoint.json &
  i=$((i + 1))
done
wait
tar czf /tmp/results.tar.gz -C $OUT . && rm -rf $OUT/* && mv /tmp/results.tar.gz $OUT/
