#!/bin/bash
# Table 1 cells on the CPU cores of a lent GPU machine (issue 15), beside whatever uses its GPU.
# usage: bash benchmarks/results/gen_dfl_paper_cpu/run_device_cells.sh SECONDS PROTOCOL PROBLEM METHOD FIRST_CORE DEG:SEED ...
# (repository root on the device; carry .whl/lite (jaxopt, distrax) and .runs/dro_cells, the
# cells of earlier calls: after each call `rm -rf .runs/dro_cells && mkdir -p .runs && tar xzf FILES_AT/dro_cells.tar.gz -C .runs`.)
# One single-threaded CPU process per cell, on cores FIRST_CORE, FIRST_CORE + 1, ...:
# `--size paper --only table1 --degs DEG --first-seed SEED --seeds 1 --resume` into
# .runs/dro_cells/<PROTOCOL>_<PROBLEM>_<METHOD>_deg<DEG>_seed<SEED>, stopped 30 s before SECONDS.
# A cell cut short keeps its finished settings (OUT/partial/) for the next call. The cells'
# gen_dfl.json files are sources of `benchmarks.seeds.gen_dfl_table1` as FILE::METHOD.
# The checkpoints resume only on a machine that computes the cell's data statistics to the same
# bits: the 2-core sandbox refused those of an H200 host (the Diff-DRO covariance differed in its
# last digits), and there a knapsack paper-text Diff-DRO cell did not finish in 530 s.
T=$1 PROTOCOL=$2 PROBLEM=$3 METHOD=$4 CORE=$5; shift 5
python3 -m pip install -q --no-deps --no-index --target /tmp/site .whl/lite/*.whl > /dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 JAX_PLATFORMS=cpu OPENBLAS_NUM_THREADS=1 \
  XLA_FLAGS='--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1'
R=.runs/dro_cells; mkdir -p $R
{ date -u; lscpu | grep "Model name"; python3 -c "import jax; print('jax', jax.__version__)"; } > $R/machine_$(date +%s).txt
for cell in "$@"; do
  deg=${cell%%:*} seed=${cell#*:}
  name=${PROTOCOL}_${PROBLEM}_${METHOD}_deg${deg}_seed${seed}
  taskset -c $CORE timeout $((T - 30)) python3 -m benchmarks.seeds.gen_dfl --size paper --only table1 \
    --protocol $PROTOCOL --problems $PROBLEM --methods $METHOD --degs $deg --first-seed $seed --seeds 1 \
    --resume --out $R/$name >> $R/$name.log 2>&1 &
  CORE=$((CORE + 1))
done
wait
tar czf $OUT/dro_cells.tar.gz -C .runs dro_cells
