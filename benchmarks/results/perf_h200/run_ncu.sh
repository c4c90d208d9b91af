#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_ncu.sh SECONDS
# (repository root; nothing needs carrying). Nsight Compute on the kernels of cvar_large for one
# row of 1e8 float32 (the compaction pass, the subsample gather, the floor's read): sections and
# per-SASS-instruction stalls of the pass; then the current defaults' timings (large, batched).
T=$1; END=$(( $(date +%s) + T ))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/ncu; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H > $D/commit.txt 2>/dev/null; git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1); echo "ncu: $NCU" >> $D/calls.log
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
ncu_run() {  # NAME LIMIT NCU-ARGS...
  local name=$1 limit=$2; shift 2
  timeout $limit $NCU --clock-control none "$@" python3 -m benchmarks.perf.cvar_ncu > $D/$name.csv 2> $D/$name.err
  echo "$name rc=$? $(date +%T)" >> $D/calls.log
}
ncu_run sections 150 -k 'regex:^_kernel$|gather|^input_reduce_fusion$' --section SpeedOfLight \
  --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section WarpStateStats \
  --section SchedulerStats --section ComputeWorkloadAnalysis --csv --page details
ncu_run source 120 -k 'regex:^_kernel$' --section SourceCounters --section WarpStateStats \
  --csv --page source --print-source sass
run large 110 -m benchmarks.perf.cvar_large --size paper --repeats 20 --out $D/large
run batched 140 -m benchmarks.perf.cvar_batched --size paper --repeats 10 \
  --shapes 10000x1000 1000x100000 100x1000000 1x10000 --methods tailjax.cvar_large torch.topk --out $D/batched
cd $OUT && tar czf ncu.tar.gz ncu && rm -rf ncu
