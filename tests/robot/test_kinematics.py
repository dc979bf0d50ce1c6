"""G1 arm kinematics: the YAML chain against an independent MuJoCo model, Jacobian, limits, errors."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from lara_g1.core.config import config_path
from lara_g1.core.embodiment import load_embodiment
from lara_g1.robot.kinematics import KinematicsError, load_arm_chains, load_head_mount, load_inspire_hand, rotation_log


@pytest.fixture(scope="module")
def chains():
    return load_arm_chains()


def _mjcf_from_chain(chain) -> str:
    """An MJCF of the chain written straight from the YAML numbers; MuJoCo does the geometry."""
    body_open, body_close = "", ""
    for j in chain.joints:
        pos = " ".join(map(repr, j.xyz))
        euler = " ".join(map(repr, j.rpy))
        axis = " ".join(repr(float(a)) for a in j.axis)
        body_open += (f'<body name="{j.name}" pos="{pos}" euler="{euler}">'
                      f'<joint name="{j.name}" axis="{axis}"/>'
                      f'<geom type="sphere" size="0.01" mass="0.1"/>')
        body_close += "</body>"
    ee_pos = " ".join(map(repr, chain.ee_xyz))
    ee_euler = " ".join(map(repr, chain.ee_rpy))
    site = f'<site name="ee" pos="{ee_pos}" euler="{ee_euler}"/>'
    # URDF rpy = rotations about the FIXED x, then y, then z axes: MuJoCo's extrinsic "XYZ".
    return (f'<mujoco><compiler angle="radian" eulerseq="XYZ"/><worldbody>'
            f'{body_open}{site}{body_close}</worldbody></mujoco>')


@pytest.mark.parametrize("side", ["left", "right"])
def test_fk_matches_mujoco(chains, side):
    mujoco = pytest.importorskip("mujoco")
    chain = chains[side]
    model = mujoco.MjModel.from_xml_string(_mjcf_from_chain(chain))
    data = mujoco.MjData(model)
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.uniform(chain.lower, chain.upper)
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        T = chain.fk(q)
        np.testing.assert_allclose(T[:3, 3], data.site_xpos[0], atol=1e-9)
        np.testing.assert_allclose(T[:3, :3], data.site_xmat[0].reshape(3, 3), atol=1e-9)


def test_zero_pose_geometry(chains):
    left, right = chains["left"].fk(np.zeros(7)), chains["right"].fk(np.zeros(7))
    # Upper arm hangs down, forearm points forward: hands in front of the torso, below the shoulder.
    assert left[0, 3] > 0.2 and right[0, 3] > 0.2
    assert left[1, 3] > 0.1 and right[1, 3] < -0.1
    np.testing.assert_allclose(left[:3, 3] * [1, -1, 1], right[:3, 3], atol=2e-4)


def test_mirrored_configuration_gives_mirrored_pose(chains):
    # Mirror through the x-z plane: pitch and elbow joints keep their sign, roll and yaw flip.
    flip = np.array([1, -1, -1, 1, -1, 1, -1])
    rng = np.random.default_rng(2)
    for _ in range(10):
        q = rng.uniform(-0.8, 0.8, 7)
        pl, pr = chains["left"].fk(q)[:3, 3], chains["right"].fk(q * flip)[:3, 3]
        np.testing.assert_allclose(pl * [1, -1, 1], pr, atol=5e-4)


@pytest.mark.parametrize("side", ["left", "right"])
def test_jacobian_matches_finite_differences(chains, side):
    chain = chains[side]
    q = np.random.default_rng(3).uniform(chain.lower, chain.upper)
    T, J = chain.fk_and_jacobian(q)
    eps = 1e-6
    for i in range(7):
        dq = np.zeros(7)
        dq[i] = eps
        T2 = chain.fk(q + dq)
        np.testing.assert_allclose((T2[:3, 3] - T[:3, 3]) / eps, J[:3, i], atol=1e-5)
        np.testing.assert_allclose(rotation_log(T2[:3, :3] @ T[:3, :3].T) / eps, J[3:, i], atol=1e-5)


def test_limits_and_names_come_from_the_embodiment(chains):
    emb = load_embodiment("g1")
    for side in ("left", "right"):
        g = emb.group(f"{side}_arm")
        assert chains[side].joint_names == emb.joint_names[g.slice]
        np.testing.assert_array_equal(chains[side].lower, emb.lower[g.slice].astype(float))
        np.testing.assert_array_equal(chains[side].upper, emb.upper[g.slice].astype(float))


def test_rotation_log_near_pi():
    for axis in (np.array([1.0, 0, 0]), np.array([0, 0.6, 0.8]), np.array([-0.48, 0.6, 0.64])):
        angle = np.pi - 1e-7
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        R = np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K
        v = rotation_log(R)
        assert abs(np.linalg.norm(v) - angle) < 1e-5
        assert abs(abs(v @ axis) / np.linalg.norm(v) - 1) < 1e-5


def test_bad_chain_file_is_named(tmp_path):
    raw = yaml.safe_load(config_path("kinematics/g1_arms.yaml").read_text())
    joints = raw["arms"]["left"]["joints"]
    joints[0], joints[1] = joints[1], joints[0]
    bad = tmp_path / "arms.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(KinematicsError, match="left_arm joints in order"):
        load_arm_chains(bad)
    raw = yaml.safe_load(config_path("kinematics/g1_arms.yaml").read_text())
    raw["arms"]["right"]["joints"][2]["axis"] = [0, 0, 0]
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(KinematicsError, match="zero axis"):
        load_arm_chains(bad)


def test_head_mount_pitch_looks_down_and_yaw_turns_left():
    head = load_head_mount()
    fwd0 = head.camera_pose(0.0, 0.0)[:3, 0]
    fwd_down = head.camera_pose(0.0, 0.3)[:3, 0]
    fwd_left = head.camera_pose(0.5, 0.0)[:3, 0]
    assert fwd_down[2] < fwd0[2]
    assert fwd_left[1] > 0.2
    np.testing.assert_array_equal(head.lower, load_embodiment("g1").lower[26:28].astype(float))


def test_inspire_normalisation_round_trip():
    hand = load_inspire_hand()
    assert [a.joint for a in hand.actuators] == ["pinky", "ring", "middle", "index", "thumb_bend",
                                                 "thumb_rotation"]
    for act in hand.actuators:
        assert act.normalise(act.open) == pytest.approx(1.0)
        assert act.normalise(act.closed) == pytest.approx(0.0)
        assert act.normalise(act.angle(0.3)) == pytest.approx(0.3)
