#!/usr/bin/env bash
# The README's main command: installs what it needs, then runs the demo (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export MUJOCO_GL=${MUJOCO_GL:-egl}
exec lara-demo "$@"
