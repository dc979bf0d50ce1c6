#!/usr/bin/env bash
# The robot PC's install, checked: Python 3.10, the base install only (`pip install .`, a wheel, no
# torch, transformers, onnx, onnxruntime, mujoco or av) with cyclonedds 0.10.x, the DDS version the
# G1 runs (docs/ROBOT.md). Creates ./.venv-robot310 and runs there:
#   - the robot-side tests of the base install (tests/robot/test_base_install.py): `pip list`, the
#     CLIs, a client round trip and a control loop against a policy server of the main venv;
#   - the DDS wire tests, including the exchange with a CycloneDDS 0.10.2 peer (far-unitree-sdk),
#     which the cyclonedds 11 wheel of the main venv cannot do.
# Where no Python 3.10 is found it skips with a message, except in CI (CI=true), where it fails:
# these checks must run before anything lands.
set -euo pipefail
cd "$(dirname "$0")/.."

PY310=${PYTHON310:-}
if [ -z "$PY310" ]; then
  for c in python3.10 "$HOME/.pyenv/versions/3.10"*/bin/python3.10; do
    if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then PY310=$c; break; fi
  done
fi
if [ -z "$PY310" ]; then
  echo "robot_py310: no Python 3.10 found (set PYTHON310); the base-install and cyclonedds 0.10 tests did not run" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 0
fi
SERVER_PYTHON=${LARA_SERVER_PYTHON:-$PWD/.venv/bin/python}
if [ ! -x "$SERVER_PYTHON" ]; then
  echo "robot_py310: no main venv at .venv (run scripts/setup.sh first): its lara-serve answers the robot side" >&2
  exit 1
fi

if [ ! -x .venv-robot310/bin/python ]; then
  "$PY310" -m venv .venv-robot310
fi
R=.venv-robot310/bin/python
$R -m pip install --quiet --upgrade pip
# The base install from a wheel (not editable), as on the robot PC, plus the test tools. The wheel
# is built once; --force-reinstall puts this checkout's code in place of an earlier build of the
# same version.
WHEELS=$(mktemp -d)
trap 'rm -rf "$WHEELS"' EXIT
$R -m pip wheel --quiet --no-deps -w "$WHEELS" .
WHEEL=$(ls "$WHEELS"/lara_g1-*.whl)
$R -m pip install --quiet "$WHEEL" "cyclonedds==0.10.5" pytest pytest-timeout far-unitree-sdk
$R -m pip install --quiet --force-reinstall --no-deps "$WHEEL"
# unitree_sdk2py (the robot extra) to compare our DDS messages and CRC with; --no-deps: the package
# declares opencv-python but never imports it.
$R -m pip install --quiet --no-deps unitree-sdk2py-dimos
LARA_BASE_INSTALL=1 LARA_SERVER_PYTHON="$SERVER_PYTHON" $R -m pytest -q -p no:cacheprovider \
  tests/robot/test_base_install.py \
  tests/robot/test_dds_far_peer.py tests/robot/test_dds_crc.py tests/robot/test_dds_messages.py
