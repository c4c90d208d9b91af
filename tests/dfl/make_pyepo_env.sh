#!/usr/bin/env bash
# Build .venv-pyepo: the Python 3.11 environment in which tests/dfl/pyepo_reference.py runs
# PyEPO 2.2.7 itself (its data generators and its own optimisation models), so that
# tests/dfl/test_pyepo_equivalence.py compares tailjax with PyEPO instead of skipping.
#
#   bash tests/dfl/make_pyepo_env.sh            # creates ./.venv-pyepo (idempotent)
#   PYEPO_VENV=/tmp/v bash tests/dfl/make_pyepo_env.sh
#
# Contents: a CPU build of torch 2.13.0 (never a CUDA one: the +cpu wheel is pinned through a
# constraint), pyepo 2.2.7, OR-Tools (PyEPO's ort models: shortest path, knapsack and its
# relaxation), Pyomo + PySCIPOpt (PyEPO's Pyomo portfolio, a quadratically constrained
# programme, through Pyomo's scip_direct interface), numpy, scipy. Where OR-Tools does not
# install, pyomo + highspy serve the linear models instead.
#
# No Python 3.11 on the machine, or no CPU torch wheel reachable: a message and exit 0 (the
# equivalence tests then skip, naming this script). Set PYEPO_TORCH_INDEX to an index that
# serves torch==2.13.0+cpu where neither this machine's wheel folder nor the default indexes
# do.
set -euo pipefail

cd "$(dirname "$0")/../.."
VENV="${PYEPO_VENV:-.venv-pyepo}"
TORCH="torch==2.13.0+cpu"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import pyepo, torch, numpy, scipy" 2>/dev/null; then
    echo "make_pyepo_env: $VENV is ready"
    exit 0
fi

is311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }
PY=""
for cand in /root/.pyenv/versions/3.11.7/bin/python3.11 "$(command -v python3.11 || true)" \
            "$(command -v python3 || true)"; do
    if [ -n "$cand" ] && [ -x "$cand" ] && is311 "$cand"; then PY="$cand"; break; fi
done
if [ -z "$PY" ]; then
    echo "make_pyepo_env: no Python 3.11 found (python3.11 or python3 = 3.11): $VENV not built;"
    echo "  the PyEPO equivalence tests will skip."
    exit 0
fi

rm -rf "$VENV"
"$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
CONSTRAINT="$VENV/pyepo-constraints.txt"
echo "$TORCH" > "$CONSTRAINT"
EXTRA=()
if [ -n "${PYEPO_TORCH_INDEX:-}" ]; then EXTRA=(--extra-index-url "$PYEPO_TORCH_INDEX"); fi

if ! "${PIP[@]}" "${EXTRA[@]}" -c "$CONSTRAINT" "$TORCH"; then
    echo "make_pyepo_env: no CPU torch wheel ($TORCH) reachable: $VENV not built (set"
    echo "  PYEPO_TORCH_INDEX); the PyEPO equivalence tests will skip."
    rm -rf "$VENV"
    exit 0
fi
"${PIP[@]}" -c "$CONSTRAINT" "pyepo==2.2.7" numpy scipy "pyomo==6.10.1" "pyscipopt==6.3.0"
if ! "${PIP[@]}" -c "$CONSTRAINT" ortools; then
    echo "make_pyepo_env: OR-Tools did not install; using pyomo + highspy for the linear models"
    "${PIP[@]}" -c "$CONSTRAINT" highspy
fi
"$VENV/bin/python" - <<'EOF'
import pyepo, torch
assert "+cpu" in torch.__version__ or not torch.cuda.is_available(), torch.__version__
print(f"make_pyepo_env: pyepo {pyepo.__version__}, torch {torch.__version__}")
EOF
