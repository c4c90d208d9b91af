#!/bin/bash
# One lent-GPU call of paper-size GAS-DRO runs that take several calls (issue 16).
# usage: bash benchmarks/results/gas_dro_paper/run_chunk.sh SECONDS SEED:PROTOCOL ...  [PARTS="carbon corruptions"]
# (repository root on the device; carry .whl/lite (jaxopt, distrax), .data/carbon.tar.gz (made by
# `tar czf .data/carbon.tar.gz -C ../shared/data carbon_intensity`) and .runs/gas_dro_paper, the
# runs of the earlier calls: after each call `mkdir -p .runs && tar xzf FILES_AT/runs.tar.gz -C .runs`;
# .runs/ is listed in .git/info/exclude.)
# One process per SEED:PROTOCOL sharing the GPU, `--size paper --resume` into
# .runs/gas_dro_paper/seed<S>_<protocol>, stopped 40 s before SECONDS: finished seeds and protocols
# stay in each run's gas_dro.json, finished fits in its partial/ (*.done records, *.best predictors);
# an unfinished fit's training state (*.ckpt, tens of MB for GAS-DRO) stays behind, so that fit
# starts again in the next call. Writes $OUT/runs.tar.gz; merge the runs by `gas_dro --merge`.
T=$1; shift
PARTS=${PARTS:-carbon}
mkdir -p .data && tar xzf .data/carbon.tar.gz -C .data
python3 -m pip install -q --no-deps --no-index --target /tmp/site .whl/lite/*.whl > /dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false \
  XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.85 / $#, 3))")
R=.runs/gas_dro_paper; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu_$(date +%s).txt
i=0
for job in "$@"; do
  s=${job%%:*} protocol=${job#*:}; name=seed${s}_$protocol
  taskset -c $((3 * i))-$((3 * i + 2)) timeout $((T - 40)) python3 -m benchmarks.seeds.gas_dro --size paper \
    --protocols $protocol --parts $PARTS --first-seed $s --seeds 1 --data .data --compile-cache none --resume \
    --out $R/$name >> $R/$name.log 2>&1 &
  i=$((i + 1))
done
wait
tar czf $OUT/runs.tar.gz --exclude='*.ckpt' --exclude='*.ckpt.tmp' -C .runs gas_dro_paper
