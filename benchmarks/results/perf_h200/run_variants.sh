#!/bin/bash
# One lent-GPU call (issue 19). usage: bash benchmarks/results/perf_h200/run_variants.sh SECONDS
# (repository root; nothing needs carrying). cvar_large on one row of 1e8 float32 under named
# configurations (the subsample read in runs of 32 values, with the Pallas counts of at least 1024
# programs, with a smaller block, with the radix finish), profiled and timed interleaved with the floor; Nsight Compute
# on the compaction pass and the floor's read (when time is left); the defaults on two batch shapes.
T=$1; END=$(( $(date +%s) + T ))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/variants; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
git log -1 --format=%H > $D/commit.txt 2>/dev/null; git diff HEAD --stat > $D/diff_stat.txt 2>/dev/null
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
# "default" was the default of the call (variants_h200/); spelled out, as the defaults have since
# become runs_counts_1024x2
OLD=block=2048,num_warps=4
run profile 250 -m benchmarks.perf.cvar_profile --size paper --calls 10 --rounds 30 \
  --configs default:sample_run=1,count_backend=xla,$OLD runs:sample_run=32,count_backend=xla,$OLD \
  runs_counts:sample_run=32,count_backend=pallas,$OLD \
  runs_counts_1024x2:sample_run=32,count_backend=pallas,block=1024,num_warps=2 \
  runs_counts_radix:sample_run=32,count_backend=pallas,finish=radix,bins=65536,$OLD --out $D/profile
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
left=$((END - $(date +%s) - 100))
if [ -n "$NCU" ] && [ $left -gt 30 ]; then
  timeout $((left < 90 ? left : 90)) $NCU --clock-control none -k 'regex:^_kernel$|^input_reduce_fusion$' \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
    --section WarpStateStats --section SchedulerStats --csv --page details \
    python3 -m benchmarks.perf.cvar_ncu > $D/ncu.csv 2> $D/ncu.err
  echo "ncu rc=$? $(date +%T)" >> $D/calls.log
else echo "ncu skipped ($NCU, $left s)" >> $D/calls.log; fi
run batched 80 -m benchmarks.perf.cvar_batched --size paper --repeats 10 \
  --shapes 1000x100000 100x1000000 --methods tailjax.cvar_large torch.topk --out $D/batched
cd $OUT && tar czf variants.tar.gz variants && rm -rf variants
