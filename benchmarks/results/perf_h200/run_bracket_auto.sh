#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_bracket_auto.sh SECONDS
# (repository root; nothing needs carrying). The default bracket is "auto" (search one row, sort
# a batch's subsamples): the batched table with the default and both brackets against torch.topk
# in one process, one row of 1e8 included; then the 1e4 x 1e3 row against every sort-based peer.
# Writes $OUT/bracket_auto.tar.gz.
T=$1; END=$(($(date +%s) + T))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/bracket_auto; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H > $D/commit.txt 2>/dev/null
git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
run batched 150 -m benchmarks.perf.cvar_batched --size paper --repeats 10 \
  --shapes 1000x100000 100x1000000 4x25000000 1x100000000 \
  --methods tailjax.cvar_large torch.topk --brackets search sort --out $D
run small_rows 60 -m benchmarks.perf.cvar_batched --size paper --repeats 10 --shapes 10000x1000 \
  --methods tailjax.cvar_large tailjax.risk.cvar jnp.sort lax.top_k torch.topk --out $D/small_rows
cd $OUT && tar czf bracket_auto.tar.gz bracket_auto && rm -rf bracket_auto
