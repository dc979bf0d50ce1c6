"""The robot side as the G1's onboard computer installs it: `pip install lara-g1`, no training stack.

scripts/robot_py310.sh runs this module in a Python 3.10 venv holding the base install only
(LARA_BASE_INSTALL=1), against a lara-serve started from the main venv (LARA_SERVER_PYTHON). It
runs in the main venv as well, where the check of what is installed is skipped.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lara_g1.core.embodiment import load_embodiment
from lara_g1.lara.policies import policy_for_task
from lara_g1.runtime.client import PolicyClient
from tests.helpers.installs import NOT_IN_BASE
from tests.helpers.serve import lara_serve

BASE_ONLY = os.environ.get("LARA_BASE_INSTALL") == "1"
SERVER_PYTHON = os.environ.get("LARA_SERVER_PYTHON", sys.executable)
BIN = Path(sys.executable).parent


@pytest.mark.skipif(not BASE_ONLY, reason="checks the base-only venv of scripts/robot_py310.sh")
def test_the_base_install_holds_no_training_export_or_sim_stack():
    listed = subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze"], capture_output=True,
                            text=True, check=True).stdout.lower()
    names = {line.split("==")[0].replace("_", "-") for line in listed.splitlines()}
    assert "lara-g1" in names
    assert not names & set(NOT_IN_BASE)
    assert not {n for n in names if n.startswith(("torch", "onnx", "nvidia-"))}
    for module in NOT_IN_BASE:
        assert importlib.util.find_spec(module) is None, module


@pytest.mark.parametrize("command", [["lara-robot", "--help"], ["lara-robot", "run", "--help"],
                                     ["lara-teleop", "--help"], ["lara-teleop", "record", "--help"]])
def test_robot_side_commands_start(command):
    r = subprocess.run([str(BIN / command[0]), *command[1:]], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: " + command[0])


@pytest.fixture(scope="module")
def server_address():
    """The bundled pick-and-place policy served by lara-serve (ort, one thread) of the main venv."""
    with lara_serve(policy_for_task("pick_place"), "ort", args=["--threads", "1"], python=SERVER_PYTHON) as (_, address):
        yield address


def test_client_round_trip_against_the_main_venvs_server(server_address):
    emb = load_embodiment("g1")
    with PolicyClient(server_address, timeout_s=5.0) as client:
        meta = client.metadata()
        assert meta["embodiment"] == emb.name and meta["joint_names"] == list(emb.joint_names)
        (camera, (h, w)), = meta["cameras"].items()
        image = np.full((h, w, 3), 128, np.uint8)
        result = client.infer(emb.default_pose.astype(np.float32), {camera: image})
    assert result.actions.shape == (meta["action_horizon"], emb.dim)
    assert np.all(np.isfinite(result.actions))
    assert np.all(result.actions >= emb.lower - 1e-6) and np.all(result.actions <= emb.upper + 1e-6)


def test_control_loop_drives_the_fake_robot_from_the_main_venvs_server(server_address):
    """The robot side's whole control path (client, chunk scheduler, safety filter) in this install:
    the motors are the fake robot, the policy is lara-serve in another process and venv."""
    from lara_g1.robot.control import ControlLoop
    from lara_g1.robot.safety import StopReason
    from tests.fakes.camera import StaticCamera
    from tests.fakes.robot import FakeRobot
    from tests.helpers.control import EMB, PATIENT, client_infer, fast_config

    robot = FakeRobot(EMB.default_pose.copy())
    client, infer = client_infer(server_address, timeout_s=2.0)
    cfg = fast_config(**PATIENT)
    try:
        result = ControlLoop(robot, StaticCamera(), infer, EMB, cfg).run(duration_s=2.5)
    finally:
        client.close()
    assert result.reason is StopReason.END_OF_DURATION and result.estop is None
    qs = np.stack([s.q for s in robot.sent])
    assert len(qs) > 100 and np.all(np.isfinite(qs))
    assert np.all(qs >= EMB.lower - 1e-6) and np.all(qs <= EMB.upper + 1e-6)
    assert result.infer_rtt_ms_p50 is not None           # chunks came back from the server
