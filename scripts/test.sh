#!/usr/bin/env bash
# The README's test command: installs what it needs, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/robot_py310.sh
. .venv/bin/activate
ruff check .                   # the lint gate (pyproject.toml [tool.ruff])
export MUJOCO_GL=${MUJOCO_GL:-egl}
exec python -m pytest -q "$@"
