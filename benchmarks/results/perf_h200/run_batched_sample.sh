#!/bin/bash
# One lent-GPU call (issue 19), prepared for the next session, not yet run. usage:
#   bash benchmarks/results/perf_h200/run_batched_sample.sh SECONDS
# (repository root; nothing needs carrying). For (1000, 1e5) and (100, 1e6) float32 (and 1 x 1e8, 4 x 2.5e7 for the kernel and the auto bracket), where
# torch.topk still wins at tails 1e-3 and 1e-2: the search with the Pallas count kernel
# (count_backend="pallas", not yet timed) against the XLA counts and the sorted subsample;
# cvar_large's default (sorted subsamples) with smaller subsamples per row (a cheaper sort, a
# wider bracket), stage by stage; the single-row check's cost with conditionals and custom calls
# in XLA's command buffers; then the batched table against torch.topk in the same process.
# Writes $OUT/batched_sample.tar.gz.
T=$1; END=$(($(date +%s) + T))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/batched_sample; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
run kernel 240 -m benchmarks.perf.cvar_bracket --size paper --shapes 100x1000000 1000x100000 1x100000000 4x25000000 \
  --variants two-level "(J, m)" Pallas sort --repeats 10 --out $D
XLA_FLAGS="--xla_gpu_enable_command_buffer=+CONDITIONAL,+CUSTOM_CALL --xla_gpu_graph_min_graph_size=1" \
  run cond_graphs 50 -m benchmarks.perf.cvar_tuning --size paper --parts cond --out $D/cond_graphs
run rows1000 80 -m benchmarks.perf.cvar_tuning --size paper --parts sweep --rows 1000 --methods compact \
  --finishes histogram sort --blocks 2048 --warps 4 --sample-sizes 1024 2048 4096 8192 --widths 5 --out $D/rows1000
run rows100 80 -m benchmarks.perf.cvar_tuning --size paper --parts sweep --rows 100 --methods compact \
  --finishes histogram sort --blocks 2048 --warps 4 --sample-sizes 8192 16384 32768 65536 --widths 5 --out $D/rows100
run batched 80 -m benchmarks.perf.cvar_batched --size paper --shapes 100x1000000 1000x100000 \
  --methods tailjax.cvar_large torch.topk --out $D
cd $OUT && tar czf batched_sample.tar.gz batched_sample && rm -rf batched_sample
