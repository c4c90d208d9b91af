#!/bin/bash
# One lent-GPU call (issue 19), nothing else on the machine. usage:
#   bash benchmarks/results/perf_h200/run_cond_unet.sh SECONDS [UNET_VARIANT...]
# (repository root, .whl/dev312 carried). In order, each with what is left of SECONDS:
# cvar_large against its selection without the exactness check (lax.cond), with XLA's default
# command buffers and with conditionals in them; a subsample/bracket sweep; then the UNet
# adjoint-matching step in the named variants (default bf16: no remat). Writes $OUT/cond_unet.tar.gz.
T=$1; shift; VARIANTS=${@:-bf16}; END=$(($(date +%s) + T))
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/cond_unet; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $D/gpu.txt
python3 -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__)" >> $D/gpu.txt
source benchmarks/results/perf_h200/_call.sh  # run NAME LIMIT ARGS...
run cond 60 -m benchmarks.perf.cvar_tuning --size paper --parts cond --out $D/default
XLA_FLAGS=--xla_gpu_enable_command_buffer=+CONDITIONAL run cond_cmdbuf 60 -m benchmarks.perf.cvar_tuning \
  --size paper --parts cond --out $D/cmdbuf
run sweep 130 -m benchmarks.perf.cvar_tuning --size paper --parts sweep --methods compact --finishes histogram \
  --blocks 2048 --warps 4 --sample-sizes 65536 262144 1048576 --widths 4 5 --searches 2x32 3x16 --out $D
run unet 600 -m benchmarks.perf.adjoint_matching --size paper --part unet --unet-variants $VARIANTS --out $D
nvidia-smi --query-gpu=name,memory.used --format=csv >> $D/gpu.txt
cd $OUT && tar czf cond_unet.tar.gz cond_unet && rm -rf cond_unet
