#!/bin/bash
# One lent-H200 call (issue 19): the UNet adjoint-matching step at 24.8M parameters, batch 256,
# 20 steps, JAX's two rematerialised variants and the PyTorch twin under torch.compile (float32
# and bf16 autocast) in the same call, nothing else on the machine.
# usage: bash benchmarks/results/perf_h200/run_unet_same_run.sh SECONDS  (.whl/dev312 carried)
T=$1; END=$(($(date +%s) + T))
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/dev312/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
D=$OUT/unet_same_run; mkdir -p $D
left() { echo $((END - $(date +%s) - 10)); }
timeout $(( $(left) / 2 )) python3 -m benchmarks.perf.adjoint_matching --size paper --part unet-torch --torch-modes compile \
  --out $D > $D/unet_torch.log 2>&1; echo "torch rc=$?" >> $D/calls.log
timeout $(left) python3 -m benchmarks.perf.adjoint_matching --size paper --part unet --unet-variants "remat + bf16" remat \
  --out $D > $D/unet_jax.log 2>&1; echo "jax rc=$?" >> $D/calls.log
cd $OUT && tar czf unet_same_run.tar.gz unet_same_run && rm -rf unet_same_run
