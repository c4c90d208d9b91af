#!/bin/bash
# One lent-GPU call (issue 16). usage:
#   bash benchmarks/results/gas_dro_small_paper_nets_h100/run_split.sh budget|capacity SECONDS SEED:VALUES ...
# (repository root on the device; carry .whl/dev312 and .data/carbon.tar.gz as run.sh says, or set WHL to
# another wheel folder: once the tracked tree passed 56 MiB, .whl/lite, the same wheels with tfp stripped
# to what distrax imports, kept tree and carry under the device's 64 MiB).
# The budget curve (Fig. 5) or Table 5 under the paper protocol at --size small_paper_nets, one process
# per SEED:VALUES job sharing the GPU, three CPU cores each; VALUES are comma-separated budget deltas
# (budget) or variants separated by "/" (capacity, e.g. 0:32,64,64,64/VAE). Five processes fit one
# H100; fifteen ran out of GPU memory (runs_budget_15procs/, an earlier version of this script).
# EXTRA holds more arguments for every process (e.g. EXTRA="--deltas 0.0006"). Writes $OUT/runs_$PART[_$TAG].tar.gz; merge with run.sh's seeds by `python -m benchmarks.seeds.gas_dro --merge`.
PART=$1 T=$2; shift 2
case $PART in
  budget) FLAG="--methods --budget-deltas"; SEP="," ;;
  capacity) FLAG="--capacity"; SEP="/" ;;
  *) echo "usage: $0 budget|capacity SECONDS SEED:VALUES ..."; exit 2 ;;
esac
mkdir -p .data && tar xzf .data/carbon.tar.gz -C .data
python3 -m pip install -q --no-deps --no-index --target /tmp/site ${WHL:-.whl/dev312}/*.whl >/dev/null 2>&1
# Each process may grow to its share of the card (JAX's default cap is 75 % for each): with five
# uncapped processes one ran out of memory instantiating a CUDA graph (runs_capacity_w32/job1.log).
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false \
  XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.85 / $#, 3))")
R=runs_$PART${TAG:+_$TAG}; D=$OUT/$R; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H > $D/commit.txt 2>/dev/null; git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
i=0
for job in "$@"; do
  s=${job%%:*}; values=${job#*:}
  taskset -c $((3 * i))-$((3 * i + 2)) timeout $T python3 -m benchmarks.seeds.gas_dro --size small_paper_nets \
    --protocols paper --parts $PART --first-seed $s --seeds 1 --data .data --compile-cache none \
    $FLAG ${values//$SEP/ } $EXTRA --out $D/job$i > $D/job$i.log 2>&1 &
  i=$((i + 1))
done
wait
cd $OUT && tar czf $R.tar.gz $R && rm -rf $R
