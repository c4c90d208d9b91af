#!/bin/bash
# usage: bash benchmarks/results/perf_h200/run_tfft_images.sh SECONDS
# The class-conditional image TFFT benchmark at --size small with 20 s per arm, seeds 0-2, one
# process per seed on four of the lent host's CPU cores each (cores 4-15, JAX_PLATFORMS=cpu;
# the GPU ran the peers2 timing beside it). Writes $OUT/tfft_images.tar.gz.
T=$1; D=$OUT/tfft_images; mkdir -p $D
for s in 0 1 2; do
  lo=$((4 + 4 * s)); hi=$((lo + 3))
  JAX_PLATFORMS=cpu PYTHONPATH=/tmp/site:$PWD taskset -c $lo-$hi timeout $T python3 -m benchmarks.seeds.tfft_images \
    --size small --budget 20 --first-seed $s --seeds 1 --out $D/seed$s > $D/seed$s.log 2>&1 &
done
wait
cd $OUT && tar czf tfft_images.tar.gz tfft_images && rm -rf tfft_images
