#!/bin/bash
S=$1
cd "$(git rev-parse --show-toplevel)"
SET="budget=None dim=50 n_train=200 n_test=40 K=32 K_eval=64 Kq=64 steps=300 proxy_steps=400 eval_samples=10000 baseline_lrs=(0.01,0.1) baseline_predictors=('linear','mlp') baseline_max_epochs=200 baseline_patience=5 methods=('gen_dfl','nll_flow','mse','spo+')"
for prob in portfolio knapsack shortest_path; do
  /usr/bin/time -f "%e s" timeout 1500 .venv/bin/python -m benchmarks.seeds.gen_dfl --size small --protocol paper-text --only table1 \
    --problems $prob --degs 2 --first-seed $S --seeds 1 --out $OUT/${prob}_s$S --set $SET > $OUT/${prob}_s$S.log 2>&1
done
