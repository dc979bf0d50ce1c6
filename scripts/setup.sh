#!/usr/bin/env bash
# Creates (or updates) ./.venv with everything lara-g1 needs on a fresh machine.
# The pinned CPU torch goes in first: a bare `torch` requirement can pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install --quiet "torch==${LARA_TORCH_VERSION:-2.13.0}"
python -m pip install --quiet -e ".[all]"
# unitree_sdk2py (the robot extra) for the tests that compare our DDS messages and CRC with it;
# --no-deps: the package declares opencv-python but never imports it.
python -m pip install --quiet --no-deps unitree-sdk2py-dimos
# avp-stream (the teleop extra) for the Vision Pro tests against the real package. --no-deps: it
# declares opencv-python (the GUI build: it would overwrite opencv-python-headless's cv2), matplotlib,
# flask, gdown and more that it never imports for hand tracking; importing it needs only these.
python -m pip install --quiet grpcio aiortc scipy requests
python -m pip install --quiet --no-deps "avp-stream>=2.50,<3"

# System packages: MuJoCo's offscreen renderer (EGL + Mesa) and headless Chromium for the
# dashboard tests. Installed only where missing and only when we may (root with apt).
need=()
ldconfig -p 2>/dev/null | grep -q "libEGL.so.1" || need+=(libegl1)
ldconfig -p 2>/dev/null | grep -q "libEGL_mesa" || need+=(libegl-mesa0 libgl1-mesa-dri)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing system packages: ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: missing system packages (${need[*]}); install them with your package manager" >&2
  fi
fi
