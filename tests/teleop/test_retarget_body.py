"""Arm and head retargeting relative to the operator's calibration."""
from __future__ import annotations

import numpy as np
import pytest

from lara_g1.core.embodiment import load_embodiment
from lara_g1.robot.kinematics import axis_angle_matrix, load_arm_chains
from lara_g1.teleop.retarget.retargeter import OperatorCalibration, Retargeter, RetargetError
from lara_g1.teleop.sources import SyntheticSource


def _pose(R=np.eye(3), p=(0, 0, 0)):  # noqa: B008
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, p
    return T


@pytest.fixture()
def setup():
    t = [0.0]
    src = SyntheticSource(heading=1.1, clock=lambda: t[0])
    src.connect()
    neutral = src.latest()
    retarget = Retargeter()
    retarget.calibrate([neutral])
    return retarget, neutral


def test_calibration_pose_maps_to_robot_calibration_pose(setup):
    retarget, neutral = setup
    res = retarget(neutral)
    emb = load_embodiment("g1")
    np.testing.assert_allclose(res.q[:14], retarget.pose0[:14], atol=1e-3)
    np.testing.assert_allclose(res.q[emb.group("head").slice], emb.default_pose[26:28], atol=1e-6)
    assert all(r.converged for r in res.ik.values())


def test_wrist_motion_moves_the_robot_hand_in_the_operator_frame(setup):
    retarget, neutral = setup
    chains = load_arm_chains()
    heading = retarget.calibration.heading
    forward_world = axis_angle_matrix([0, 0, 1], heading) @ np.array([1.0, 0, 0])
    sample = neutral
    for k in range(1, 11):                     # the right wrist moves 10 cm forward over 10 frames
        sample = type(neutral)(**{**neutral.__dict__})
        sample.right_wrist = neutral.right_wrist.copy()
        sample.right_wrist[:3, 3] += 0.01 * k * forward_world
        res = retarget(sample)
    right = chains["right"].fk(res.q[7:14].astype(float))
    left = chains["left"].fk(res.q[0:7].astype(float))
    moved = right[:3, 3] - retarget.home["right"][:3, 3]
    np.testing.assert_allclose(moved, [0.1 * retarget.config.arm.motion_scale, 0, 0], atol=2e-3)
    np.testing.assert_allclose(left[:3, 3], retarget.home["left"][:3, 3], atol=1e-3)


def test_wrist_rotation_rotates_the_robot_hand(setup):
    retarget, neutral = setup
    heading = retarget.calibration.heading
    Rh = axis_angle_matrix([0, 0, 1], heading)
    turn = Rh @ axis_angle_matrix([0, 0, 1], 0.4) @ Rh.T      # 0.4 rad about the vertical
    sample = type(neutral)(**{**neutral.__dict__})
    sample.left_wrist = neutral.left_wrist.copy()
    sample.left_wrist[:3, :3] = turn @ neutral.left_wrist[:3, :3]
    for _ in range(5):
        res = retarget(sample)
    R = load_arm_chains()["left"].fk(res.q[0:7].astype(float))[:3, :3]
    expected = axis_angle_matrix([0, 0, 1], 0.4) @ retarget.home["left"][:3, :3]
    np.testing.assert_allclose(R, expected, atol=5e-3)


def test_head_yaw_and_pitch(setup):
    retarget, neutral = setup
    Rh = axis_angle_matrix([0, 0, 1], retarget.calibration.heading)
    sample = type(neutral)(**{**neutral.__dict__})
    sample.head = neutral.head.copy()
    sample.head[:3, :3] = Rh @ axis_angle_matrix([0, 0, 1], 0.3) @ axis_angle_matrix([0, 1, 0], 0.2)
    q = retarget(sample).q
    np.testing.assert_allclose(q[26:28], [0.3, 0.2], atol=1e-5)   # yaw left, pitch down


def test_bad_samples_and_missing_calibration(setup):
    retarget, neutral = setup
    bad = type(neutral)(**{**neutral.__dict__})
    bad.left_wrist = neutral.left_wrist.copy()
    bad.left_wrist[0, 3] = np.inf
    assert retarget(bad) is None
    with pytest.raises(RetargetError, match="calibration"):
        Retargeter()(neutral)


def test_calibration_round_trip(setup, tmp_path):
    retarget, neutral = setup
    path = tmp_path / "cal.json"
    retarget.calibration.save(path)
    cal = OperatorCalibration.load(path)
    assert cal.heading == pytest.approx(retarget.calibration.heading)
    np.testing.assert_allclose(cal.wrists["left"], retarget.calibration.wrists["left"])
