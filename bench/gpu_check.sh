#!/usr/bin/env bash
# The GPU check, in one command, on a machine with an NVIDIA GPU (docs/BENCHMARKS.md, "GPU check"):
#
#   bench/gpu_check.sh [extra bench/gpu_check.py arguments, e.g. --paper-backbone DIR]
#
# 1. refuses to run without an NVIDIA GPU (nvidia-smi) or without a CUDA build of torch in the venv;
# 2. installs the `trt` extra (tensorrt, cuda-python; pyproject.toml) into the existing venv, unless
#    tensorrt and cuda-python already import;
# 3. for the tiny, small, a random-weight full-size (paper) policy and GR00T N1.6's full-size head: exports ONNX, builds fp16
#    TensorRT engines on this GPU, checks torch (CUDA) / ONNX Runtime / TensorRT parity, measures
#    backbone / action head / total latency at batch 1 and 8, TensorRT with CUDA graphs on and off;
# 4. writes the table, with the GPU's name, into docs/BENCHMARKS.md (its gpu_check:cuda section).
#
# Environment: VENV (default .venv), OUT (default /tmp/lara-gpu-check: bundles, graphs, engines;
# the paper bundle needs ~15 GB of disk), PRESETS (default tiny,small,paper,gr00t_n16), BATCH (default 1,8),
# DOCS (default docs/BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${VENV:-.venv}
OUT=${OUT:-/tmp/lara-gpu-check}
PRESETS=${PRESETS:-tiny,small,paper,gr00t_n16}
BATCH=${BATCH:-1,8}
DOCS=${DOCS:-docs/BENCHMARKS.md}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1) \
        || [ -z "$GPU" ]; then
    echo "gpu_check.sh: no NVIDIA GPU found (nvidia-smi is missing or lists no GPU); this check needs one." >&2
    echo "  On a CPU-only machine: python bench/gpu_check.py --device cpu --engines torch,ort --presets tiny --out DIR" >&2
    exit 3
fi
echo "gpu_check.sh: GPU: $GPU"

if [ ! -f "$VENV/bin/activate" ]; then
    echo "gpu_check.sh: no virtual environment at $VENV (set VENV=...); see docs/INSTALL.md" >&2
    exit 2
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

if ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check.sh: torch $(python -c 'import torch; print(torch.__version__)') in $VENV cannot use the GPU" \
         "(a CPU build?). Install a CUDA build, e.g.: pip install torch==2.13.0 --index-url" \
         "https://download.pytorch.org/whl/cu128" >&2
    exit 3
fi

if python -c 'import tensorrt, cuda' >/dev/null 2>&1; then
    echo "gpu_check.sh: the trt extra is installed (tensorrt $(python -c 'import tensorrt; print(tensorrt.__version__)'))"
else
    echo "gpu_check.sh: installing the trt extra into $VENV"
    if ! python -m pip install -e ".[trt]"; then
        echo "gpu_check.sh: pip could not install the trt extra (tensorrt, cuda-python); without network access," \
             "install them from local wheels first" >&2
        exit 4
    fi
fi

mkdir -p "$OUT"
python bench/gpu_check.py --device cuda --engines torch,ort,trt --presets "$PRESETS" --batch "$BATCH" \
    --out "$OUT" --docs "$DOCS" --gpu-name "$GPU" "$@"
