#!/bin/bash
# One lent-GPU call of the paper-size Gen-DFL Figures 3-6 (issue 15), which take several calls.
# usage: bash benchmarks/results/gen_dfl_figures_paper/run_chunk.sh SECONDS SWEEP[:V,V,...] ...  [METHODS="..."]
# (repository root on the device; carry .whl/lite (jaxopt, distrax), .data/icon_energy for `energy`
# (`cp -r ../shared/data/icon_energy .data/`) and .runs/gen_dfl_figures, the
# runs of the earlier calls: after each call `rm -rf .runs/gen_dfl_figures && mkdir -p .runs && tar xzf FILES_AT/runs.tar.gz -C .runs`;
# .runs/ is listed in .git/info/exclude.)
# One process per SWEEP (sigma, dim, train_size, regret_weight, tail_prob, samples,
# decision_samples, or energy: ICON, with METHODS, every process's --methods), optionally
# restricted to the values V: `--size paper --seeds 5 --resume` into
# .runs/gen_dfl_figures/<SWEEP>[_<V>...], stopped 40 s before SECONDS. Every finished
# configuration (one sweep value and seed) is in that folder's gen_dfl.json; one cut short starts
# again in the next call. The processes share one persistent compilation cache (not sent back).
# Merge the runs by `python -m benchmarks.seeds.gen_dfl_collect OUT .runs/gen_dfl_figures/*/gen_dfl.json`.
T=$1; shift
python3 -m pip install -q --no-deps --no-index --target /tmp/site .whl/lite/*.whl > /dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false \
  XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.85 / $#, 3))")
R=.runs/gen_dfl_figures; mkdir -p $R
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; lscpu | grep "Model name"; } \
  > $R/machine_$(date +%s).txt
declare -A LISTS=([sigma]=sigmas [dim]=dims [train_size]=train_sizes [regret_weight]=regret_weights
                  [tail_prob]=tail_probs [samples]=Ks [decision_samples]=Ks)
i=0
for job in "$@"; do
  sweep=${job%%:*} values=; [[ $job == *:* ]] && values=${job#*:}
  name=$sweep${values:+_${values//,/_}}
  set_values=(); [[ -n $values ]] && set_values=(--set "${LISTS[$sweep]}=($values,)")
  taskset -c $((2 * i))-$((2 * i + 1)) timeout $((T - 40)) python3 -m benchmarks.seeds.gen_dfl --size paper \
    --only $sweep --seeds 5 "${set_values[@]}" ${METHODS:+--methods $METHODS} --data .data --compile-cache /tmp/jax_cache --resume \
    --out $R/$name >> $R/$name.log 2>&1 &
  i=$((i + 1))
done
wait
du -sh /tmp/jax_cache
tar czf $OUT/runs.tar.gz -C .runs gen_dfl_figures
