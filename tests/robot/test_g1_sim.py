"""G1Robot against the simulated G1 over real DDS on loopback (lara-sim as a subprocess)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from lara_g1.robot.dds import participant as dds
from lara_g1.robot.dds import topics
from lara_g1.robot.dds.crc import lowcmd_crc
from lara_g1.robot.dds.messages import LowCmd_
from lara_g1.robot.g1 import G1Config, G1ConfigError, G1Robot
from lara_g1.robot.sim.control import SimControl, SimControlError
from lara_g1.robot.sim.process import SimProcess
from tests.helpers.dds import fresh_domain

DOMAIN = fresh_domain()


@pytest.fixture(scope="module")
def sim():
    with SimProcess("pick_place", DOMAIN, render_size=None) as proc:
        yield proc


@pytest.fixture(scope="module")
def control(sim):
    return SimControl(DOMAIN)


@pytest.fixture(scope="module")
def robot(sim):
    r = G1Robot(G1Config.load("sim").replace(domain_id=DOMAIN))
    r.connect()
    r.wait_for_state(10.0)
    yield r
    r.disconnect()


def wait_until(predicate, timeout_s: float = 5.0, period_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period_s)
    return predicate()


def fresh_state(robot: G1Robot, after: float):
    return wait_until(lambda: (s := robot.read_state()) is not None and s.stamp > after and s)


def stream(robot: G1Robot, q: np.ndarray, seconds: float, blend: float = 1.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        robot.send(q, blend)
        time.sleep(0.01)


def test_state_arrives_in_the_embodiment_layout(robot, control):
    control.reset("pick_place", seed=0)
    s = fresh_state(robot, time.monotonic())
    emb = robot.emb
    assert s.q.shape == (emb.dim,) and s.q.dtype == np.float32
    np.testing.assert_allclose(s.q, emb.default_pose, atol=0.06)  # default arms, open hands, head 0
    assert robot.mode_machine == 5 and s.tick > 0


def test_commands_with_a_valid_crc_move_the_joints(robot, control):
    control.reset("pick_place", seed=0)
    before = control.status()["counters"]
    q = robot.emb.default_pose.copy()
    q[0], q[10], q[27] = -0.6, 1.4, 0.3   # left shoulder pitch, right elbow, head pitch
    stream(robot, q, 1.5)
    s = fresh_state(robot, time.monotonic())
    assert abs(s.q[0] - (-0.6)) < 0.1 and abs(s.q[10] - 1.4) < 0.1 and abs(s.q[27] - 0.3) < 0.05
    after = control.status()["counters"]
    assert after["commands"] > before["commands"]
    assert after["crc_rejected"] == before["crc_rejected"]


def test_a_wrong_crc_is_rejected_by_the_sim(robot, control):
    control.reset("pick_place", seed=0)
    before = control.status()["counters"]
    q = robot.emb.default_pose.copy()
    q[0] = -1.0
    writer = dds.writer(DOMAIN, topics.ARM_SDK, LowCmd_, "lo")
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        msg = robot.build_lowcmd(q, 1.0)
        assert msg.crc == lowcmd_crc(msg)
        msg.crc ^= 0x1
        writer.write(msg)
        time.sleep(0.01)
    s = fresh_state(robot, time.monotonic())
    assert abs(s.q[0] - robot.emb.default_pose[0]) < 0.1  # did not move towards -1 (gravity sags it ~0.05)
    after = control.status()["counters"]
    assert after["crc_rejected"] > before["crc_rejected"] + 10
    assert after["commands"] == before["commands"]


def test_a_left_hand_command_moves_the_left_hand(robot, control):
    control.reset("pick_place", seed=0)
    emb = robot.emb
    left, right = emb.group("left_hand").slice, emb.group("right_hand").slice
    q = emb.default_pose.copy()
    q[left] = 0.0
    stream(robot, q, 1.0)
    s = fresh_state(robot, time.monotonic())
    assert np.all(s.q[left] < 0.2), s.q[left]
    assert np.all(s.q[right] > 0.9), s.q[right]
    q[left], q[right] = 1.0, 0.0
    stream(robot, q, 1.0)
    s = fresh_state(robot, time.monotonic())
    assert np.all(s.q[left] > 0.9) and np.all(s.q[right] < 0.2)


def test_blend_weight_zero_leaves_the_arms_at_the_default_pose(robot, control):
    control.reset("pick_place", seed=0)
    q = robot.emb.default_pose.copy()
    q[7] = -1.0
    stream(robot, q, 1.0, blend=0.0)
    s = fresh_state(robot, time.monotonic())
    assert abs(s.q[7] - robot.emb.default_pose[7]) < 0.1


def test_send_refuses_bad_input_and_publishes_nothing(robot, control):
    before = control.status()["counters"]["commands"]
    q = robot.emb.default_pose.copy()
    q[3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        robot.send(q)
    with pytest.raises(ValueError, match="shape"):
        robot.send(q[:27])
    with pytest.raises(ValueError, match="blend"):
        robot.send(robot.emb.default_pose, blend=1.5)
    time.sleep(0.2)
    assert control.status()["counters"]["commands"] == before


def test_sim_control_reset_and_status(control):
    st = control.reset("pour", seed=3)
    assert st["task"] == "pour" and st["seed"] == 3
    assert st["stages"] == {"Grasp-Left": False, "Grasp-Right": False, "Full": False}
    assert control.status()["t"] >= 0.0
    with pytest.raises(SimControlError, match="unknown sim task"):
        control.reset("juggle")
    control.reset("pick_place", seed=0)


def test_stale_state_shows_in_the_stamp_after_the_sim_stops():
    domain = fresh_domain()
    with SimProcess("pick_place", domain, render_size=None) as proc:
        r = G1Robot(G1Config.load("sim").replace(domain_id=domain))
        r.connect()
        try:
            r.wait_for_state(10.0)
            assert proc.stop() == 0  # SIGINT: a clean shutdown
            stopped = time.monotonic()
            time.sleep(0.3)
            s = r.read_state()
            assert s is not None and s.stamp <= stopped
        finally:
            r.disconnect()


def test_config_validation():
    cfg = G1Config.load("sim")
    assert cfg.domain_id == 1 and cfg.interface == "lo"
    real = G1Config.load("real")
    assert real.domain_id == 0 and real.hands["variant"] == "dfx"
    with pytest.raises(G1ConfigError, match="gains.kp"):
        cfg.replace(kp=[80.0] * 6)
    with pytest.raises(G1ConfigError, match="overlap"):
        cfg.replace(arm_motors={"left_arm": 15, "right_arm": 20})
    with pytest.raises(G1ConfigError, match="blend_motor"):
        cfg.replace(blend_motor=16)


def test_lowcmd_sets_only_the_arm_motors_and_the_blend_weight(robot):
    q = robot.emb.default_pose.copy()
    q[:14] = np.linspace(-0.5, 0.5, 14)
    cmd = robot.build_lowcmd(q, 0.4)
    assert cmd.mode_machine == robot.mode_machine == 5
    cfg = robot.config
    for slot in range(35):
        m = cmd.motor_cmd[slot]
        if cfg.arm_motors["left_arm"] <= slot < cfg.arm_motors["left_arm"] + 7:
            k = slot - cfg.arm_motors["left_arm"]
            assert (m.mode, m.kp, m.kd) == (1, cfg.kp[k], cfg.kd[k])
            assert m.q == pytest.approx(q[k])
        elif cfg.arm_motors["right_arm"] <= slot < cfg.arm_motors["right_arm"] + 7:
            k = slot - cfg.arm_motors["right_arm"]
            assert (m.mode, m.kp, m.kd) == (1, cfg.kp[k], cfg.kd[k])
            assert m.q == pytest.approx(q[7 + k])
        elif slot == cfg.blend_motor:
            assert m.q == pytest.approx(0.4) and m.mode == 0 and m.kp == 0
        else:  # legs, waist, spare slots: untouched
            assert (m.mode, m.q, m.dq, m.tau, m.kp, m.kd) == (0, 0, 0, 0, 0, 0)
    assert cmd.crc == lowcmd_crc(cmd)


def test_non_finite_commands_with_a_valid_crc_are_rejected_by_the_sim(robot, control):
    control.reset("pick_place", seed=0)
    before = control.status()["counters"]
    writer = dds.writer(DOMAIN, topics.ARM_SDK, LowCmd_, "lo")
    msg = robot.build_lowcmd(robot.emb.default_pose, 1.0)
    msg.motor_cmd[15].q = float("nan")
    msg.crc = lowcmd_crc(msg)
    for _ in range(20):
        writer.write(msg)
        time.sleep(0.01)
    after = wait_until(lambda: (c := control.status()["counters"])["nonfinite_rejected"] > before["nonfinite_rejected"] and c)
    assert after["commands"] == before["commands"]
