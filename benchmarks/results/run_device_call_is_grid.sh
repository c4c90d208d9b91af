#!/bin/bash
# One lent-H200 call (issues 15, 18). usage: bash benchmarks/results/run_device_call_is_grid.sh SECONDS [DEGS]
# GPU: the importance-sampling grid cells and wall clocks still missing at paper size, four
# processes side by side, each resuming from its checkpoint in benchmarks/results/
# importance_sampling_h200_paper/grid2/NAME (carried back in the archive):
#   g3: Gaussian 1e-3, every method, then its clock (20 keys per n);
#   t3: Student-t 1e-3, SAA and self-structuring, then its clock (20 keys per n);
#   t2: Student-t 1e-2, self-structuring, then the clock's "RA-IS as written" (50 keys);
#   a4: part (a) at 1e-4, both laws, every method.
# Host CPU cores 6-15: the six other Gen-DFL baselines under protocol paper-text, portfolio, at DEGS.
T=$1
[ -d /tmp/site/jaxopt ] || python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $OUT/gpu.txt
git log -1 --format=%H > $OUT/commit.txt
for d in ${2:-2 4}; do
  (CORES=6-15 DEGS=$d TAG=deg${d}_portfolio_baselines PROBS=portfolio METHODS="('nce','map','pairwise','listwise','dfl','dfl+')" \
    bash benchmarks/results/gen_dfl_table1_v2_paper_text/run_table1.sh paper-text $((T - 25))) &
done
SRC=benchmarks/results/importance_sampling_h200_paper/grid2
CLOCK=benchmarks/results/importance_sampling_h200_paper/clock_start.json
job() {  # NAME CORES ARGS...
  local name=$1 cores=$2; shift 2
  mkdir -p $OUT/$name && cp -r $SRC/$name/. $OUT/$name/ 2>/dev/null
  taskset -c $cores timeout $((T - 20)) python3 -m benchmarks.seeds.importance_sampling --size paper --resume \
    --out $OUT/$name "$@" >> $OUT/$name/run.log 2>&1
  echo "$(date +%T) $name rc=$?" >> $OUT/$name/run.log
}
job g3 0-1 --parts grid clock --returns gaussian --tail-probs 1e-3 --clock-reps 20 &
job t3 2-3 --parts grid clock --returns t --tail-probs 1e-3 --methods saa self_structuring --clock-reps 20 &
job t2 4 --parts grid clock --returns t --tail-probs 1e-2 --methods self_structuring --clock-methods "RA-IS as written" \
  --grid-from $CLOCK &
job a4 5 --parts grid --tail-probs 1e-4 &
wait
tar czf /tmp/results.tar.gz -C $OUT . && rm -rf $OUT/* && mv /tmp/results.tar.gz $OUT/
