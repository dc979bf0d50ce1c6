#!/usr/bin/env bash
# The robot-facing set-up of docs/ROBOT.md: Python 3.10 + cyclonedds 0.10.x, the DDS version the
# G1 runs. Creates ./.venv-robot310 and runs the DDS wire tests there, including the exchange with
# a CycloneDDS 0.10.2 peer (far-unitree-sdk), which the cyclonedds 11 wheel of the main venv
# cannot do. Skips (with a message) where no Python 3.10 is found.
set -euo pipefail
cd "$(dirname "$0")/.."

PY310=${PYTHON310:-}
if [ -z "$PY310" ]; then
  for c in python3.10 "$HOME/.pyenv/versions/3.10"*/bin/python3.10; do
    if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then PY310=$c; break; fi
  done
fi
if [ -z "$PY310" ]; then
  echo "robot_py310: no Python 3.10 found (set PYTHON310); the cyclonedds 0.10 wire tests did not run" >&2
  exit 0
fi
if [ ! -x .venv-robot310/bin/python ]; then
  "$PY310" -m venv .venv-robot310
fi
.venv-robot310/bin/python -m pip install --quiet --upgrade pip
.venv-robot310/bin/python -m pip install --quiet "cyclonedds==0.10.5" numpy pyyaml pytest pytest-timeout far-unitree-sdk
.venv-robot310/bin/python -m pip install --quiet --no-deps unitree-sdk2py-dimos
PYTHONPATH=. .venv-robot310/bin/python -m pytest -q -p no:cacheprovider \
  tests/robot/test_dds_far_peer.py tests/robot/test_dds_crc.py tests/robot/test_dds_messages.py
