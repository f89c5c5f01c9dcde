#!/usr/bin/env bash
# Issue 15's GPU checks in one run (at most ~8 minutes on a GPU), one JSON report:
#   damt bench step (default, original, --compile) on pipeline.yaml; measured peak memory at
#   batch 2 for each gradient checkpointing setting against `damt bench memory`'s prediction; a
#   20-step `damt train` on a synthetic cohort started by torchrun --nproc_per_node 1.
#
#   bash scripts/gpu-check.sh [OUT_DIR]          # report: OUT_DIR/gpu_check.json (default gpu_check_out)
#   DAMT_GPU_CHECK_CPU=1 bash scripts/gpu-check.sh OUT_DIR   # the tiny CPU path (CI); also taken without CUDA
#
# A GPU machine that lacks DAMT's packages (monai, nibabel, zarr, ...) gets them from wheels in
# $DAMT_WHEELS (default .whl/, made as docs/benchmarks.md says); nothing is fetched from a network.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
OUT_DIR=${1:-gpu_check_out}
WHEELS=${DAMT_WHEELS:-.whl}
NEEDED="import monai, einops, nibabel, zarr, numcodecs, tensorstore, dask.distributed, radiomics, SimpleITK, yaml, tqdm, pandas, pyarrow, tensorboard"
if ! "$PY" -c "$NEEDED" 2>/dev/null; then
  if compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "gpu-check: installing the missing packages from $WHEELS" >&2
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/damt-site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/damt-site${PYTHONPATH:+:$PYTHONPATH}
    "$PY" -c "$NEEDED" || { echo "gpu-check: still missing a package after the install" >&2; exit 2; }
  else
    echo "gpu-check: DAMT's packages are missing and there are no wheels in $WHEELS (docs/benchmarks.md)" >&2
    exit 2
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
CPU_FLAG=()
[ "${DAMT_GPU_CHECK_CPU:-0}" = 1 ] && CPU_FLAG=(--cpu)
exec "$PY" scripts/gpu_check.py --out "$OUT_DIR" "${CPU_FLAG[@]}"
