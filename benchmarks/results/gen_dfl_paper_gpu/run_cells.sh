#!/bin/bash
# One lent-GPU call (issue 15). usage: bash benchmarks/results/gen_dfl_paper_gpu/run_cells.sh SECONDS PROTOCOL PROBLEM DEG:SEED ...
# (repository root; carry .whl/lite). Diff-DRO Table 1 cells at paper size, one process per
# cell, all sharing the one GPU, each stopped SECONDS - 30 s after the start; every cell's
# folder (gen_dfl.json, log, and partial/ with the settings' checkpoints for --resume) comes
# back in $OUT/cells.tar.gz.
T=$1 PROTOCOL=$2 PROBLEM=$3; shift 3
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/lite/*.whl > /dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/cells; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
lscpu | grep "Model name" >> $D/gpu.txt
for cell in "$@"; do
  deg=${cell%:*} seed=${cell#*:}; name=${PROBLEM}_deg${deg}_seed${seed}
  timeout $((T - 30)) python3 -m benchmarks.seeds.gen_dfl --size paper --only table1 --protocol $PROTOCOL \
    --problems $PROBLEM --methods diff-dro --degs $deg --first-seed $seed --seeds 1 --resume \
    --out $D/$name > $D/$name.log 2>&1 &
done
wait
cd $OUT && tar czf cells.tar.gz cells && rm -rf cells
