#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_bracket_counts.sh SECONDS
# (repository root; nothing needs carrying). One row of 1e8 float32: a kernel-by-kernel profile of
# the whole call (benchmarks.perf.cvar_profile) with the XLA and the Pallas threshold counts; the
# stages alone (bracket, compaction pass, the histogram and the radix finish); cvar_large with
# each finish (radix with 2^12 and 2^16 bins) and each count backend; the Pallas-counted search
# with 3 rounds of 32 and 2 of 256 thresholds at 2^18 and 2^20 subsamples. On an H200 also the current defaults' table (as
# run_current_default.sh). Steps past the call's end are skipped. Writes $OUT/bracket_counts.tar.gz.
T=$1; END=$(($(date +%s) + T))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/bracket_counts; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H > $D/commit.txt 2>/dev/null
git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
S="-m benchmarks.perf.cvar_tuning --size paper --methods compact --blocks 2048 --warps 4 --widths 5 --repeats 20"
run profile 100 -m benchmarks.perf.cvar_profile --size paper --count-backends xla pallas --out $D/profile
run stages 80 $S --parts stages --finishes histogram radix --out $D/stages
if grep -q H200 $D/gpu.txt; then
  run large 120 -m benchmarks.perf.cvar_large --size paper --repeats 20 --out $D/large
  run batched 150 -m benchmarks.perf.cvar_batched --size paper --repeats 10 \
    --shapes 10000x1000 1000x100000 100x1000000 1x10000 --methods tailjax.cvar_large torch.topk --out $D/batched
fi
run finishes 200 $S --parts sweep --finishes histogram radix --bins 4096 65536 --count-backends xla pallas --out $D/finishes
run search 110 $S --parts sweep --finishes radix --bins 65536 --brackets search --count-backends pallas \
  --searches 3x32 2x256 --sample-sizes 262144 1048576 --out $D/search
cd $OUT && tar czf bracket_counts.tar.gz bracket_counts && rm -rf bracket_counts
