#!/bin/bash
# One lent-GPU call (issue 19), nothing else on the machine. usage:
#   bash benchmarks/results/perf_h200/run_bracket.sh SECONDS
# (repository root; nothing needs carrying). The subsample bracket of cvar_large per batch shape:
# its layouts of the threshold counts against the sorted-subsample bracket, alone and in the
# whole call (benchmarks/perf/cvar_bracket.py). Writes $OUT/bracket.tar.gz.
T=$1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/bracket; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
python3 -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__)" >> $D/gpu.txt
timeout $((T - 10)) python3 -m benchmarks.perf.cvar_bracket --size paper --repeats 10 --out $D > $D/bracket.log 2>&1
echo "bracket rc=$? $(date +%T)" >> $D/calls.log
cd $OUT && tar czf bracket.tar.gz bracket && rm -rf bracket
