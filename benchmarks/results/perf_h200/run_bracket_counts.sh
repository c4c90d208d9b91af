#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_bracket_counts.sh SECONDS
# (repository root; nothing needs carrying). One row of 1e8 float32: the subsample search with the
# Pallas threshold counts against the XLA counts (2^18 and 2^20 subsamples, 2 and 3 rounds of 32),
# the sorted subsample at 2^18 and 2^19, the default with and without its exactness check, and a
# kernel-by-kernel profile of the whole call (benchmarks.perf.cvar_profile) with both counts; on an
# H200 also the current defaults' table (as run_current_default.sh). Steps past the call's end are skipped.
# Writes $OUT/bracket_counts.tar.gz.
T=$1; END=$(($(date +%s) + T))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/bracket_counts; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H > $D/commit.txt 2>/dev/null
git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
S="-m benchmarks.perf.cvar_tuning --size paper --parts sweep --methods compact --finishes histogram --blocks 2048 --widths 5 --repeats 20"
run profile 100 -m benchmarks.perf.cvar_profile --size paper --count-backends xla pallas --out $D/profile
if grep -q H200 $D/gpu.txt; then
  run large 120 -m benchmarks.perf.cvar_large --size paper --repeats 20 --out $D/large
  run batched 150 -m benchmarks.perf.cvar_batched --size paper --repeats 10 \
    --shapes 10000x1000 1000x100000 100x1000000 1x10000 --methods tailjax.cvar_large torch.topk --out $D/batched
fi
run search 220 $S --brackets search --count-backends pallas xla --searches 2x32 3x32 --sample-sizes 262144 1048576 --out $D/search
run sort 90 $S --brackets sort --sample-sizes 262144 524288 --out $D/sort
run cond 90 -m benchmarks.perf.cvar_tuning --size paper --parts cond --repeats 20 --out $D/cond
cd $OUT && tar czf bracket_counts.tar.gz bracket_counts && rm -rf bracket_counts
