#!/bin/bash
# One lent-H200 call (issues 15, 18). usage: bash benchmarks/results/run_device_call_is_dfl.sh SECONDS
# GPU, side by side: self-structuring's grid parts (b), (c) for Student-t at 1e-3, resumed from
# importance_sampling_h200_paper/grid2/t3 (cores 0-1), and the wall clock of "RA-IS as written" for
# Student-t at 1e-2 (cores 2-3). Host cores 4-15: Diff-DRO cells of Gen-DFL Table 1 under protocol
# paper-text (degree 8 shortest path ran on the sandbox), a queue of (degree, problem, seed) taken
# in order by 12 workers; a worker starts a cell only while MIN_LEFT seconds remain, so none is cut.
T=$1; MIN_LEFT=${MIN_LEFT:-360}; END=$(($(date +%s) + T))
[ -d /tmp/site/jaxopt ] || python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $OUT/gpu.txt
git log -1 --format=%H > $OUT/commit.txt
SRC=benchmarks/results/importance_sampling_h200_paper
mkdir -p $OUT/t3 && cp -r $SRC/grid2/t3/. $OUT/t3/
(taskset -c 0-1 timeout $((T - 20)) python3 -m benchmarks.seeds.importance_sampling --size paper --resume --out $OUT/t3 \
  --parts grid clock --returns t --tail-probs 1e-3 --methods saa self_structuring --clock-reps 20 >> $OUT/t3/run.log 2>&1
 echo "$(date +%T) t3 rc=$?" >> $OUT/t3/run.log) &
(taskset -c 2-3 timeout $((T - 20)) python3 -m benchmarks.seeds.importance_sampling --size paper --out $OUT/t2_clock \
  --parts clock --returns t --tail-probs 1e-2 --clock-methods "RA-IS as written" --clock-reps 50 \
  --grid-from $SRC/clock_start.json > $OUT/t2_clock.log 2>&1
 echo "$(date +%T) t2 clock rc=$?" >> $OUT/t2_clock.log) &
SET="budget=None dim=50 n_train=200 n_test=40 K=32 K_eval=64 Kq=64 steps=300 proxy_steps=400 eval_samples=10000 \
baseline_lrs=(0.01,0.1) baseline_predictors=('linear','mlp') baseline_max_epochs=200 baseline_patience=5 methods=('diff-dro',)"
QUEUE=${QUEUE:-"4:portfolio:2 4:portfolio:4 $(for d in 6 8; do for p in portfolio knapsack $([ $d = 6 ] && echo shortest_path); do
  for s in 0 1 2 3 4; do echo -n "$d:$p:$s "; done; done; done)"}
cell() {  # DEG:PROBLEM:SEED
  IFS=: read d p s <<< "$1"
  local left=$((END - $(date +%s))) dir=$OUT/dfl/paper_text/deg$d
  [ $left -lt $MIN_LEFT ] && { echo "$(date +%T) skipped $1 ($left s left)" >> $OUT/dfl/queue.log; return; }
  mkdir -p $dir
  JAX_PLATFORMS=cpu timeout $((left - 15)) python3 -m benchmarks.seeds.gen_dfl --size small --protocol paper-text --only table1 \
    --problems $p --degs $d --first-seed $s --seeds 1 --out $dir/${p}_s$s --set $SET > $dir/${p}_s$s.log 2>&1
  echo "$(date +%T) $1 rc=$? started with $left s left" >> $OUT/dfl/queue.log
}
export -f cell; export END OUT SET MIN_LEFT
mkdir -p $OUT/dfl
echo $QUEUE | tr ' ' '\n' | grep . | taskset -c 4-15 xargs -P 12 -I{} bash -c 'cell {}'
wait
tar czf /tmp/results.tar.gz -C $OUT . && rm -rf $OUT/* && mv /tmp/results.tar.gz $OUT/
