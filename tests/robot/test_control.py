"""The control loop end to end against a real PolicyServer (torch engine on a tiny random bundle,
real ZMQ client): ramp-in, limits and step clamp, NaN chunks, a camera stall, and the server going
away mid-run. The motors are a recording double (tests/fakes/robot.py, an ideal servo); its
timestamps are what the assertions read. (Stale robot state at this level:
tests/robot/test_control_sim.py, over DDS against lara-sim.)
"""
from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from lara_g1.robot.cameras.base import Frame
from lara_g1.robot.control import ControlConfig, ControlError, ControlLoop, Observation
from lara_g1.robot.safety import StopReason
from tests.fakes import FakeRobot, StaticCamera
from tests.helpers.control import EMB, PATIENT, client_infer, fast_config, run_in_thread, wait_running


def assert_sent_safe(robot: FakeRobot, cfg: ControlConfig, q0: np.ndarray) -> np.ndarray:
    qs = np.stack([s.q for s in robot.sent])
    assert np.all(np.isfinite(qs))
    assert np.all(qs >= EMB.lower - 1e-6) and np.all(qs <= EMB.upper + 1e-6)
    steps = np.abs(np.diff(np.concatenate([q0[None], qs]), axis=0))
    assert np.all(steps <= cfg.safety.max_step(EMB) + 1e-5)
    return qs


def test_policy_run_ramps_in_from_the_measured_pose_and_fades_out_at_the_end(server):
    q0 = EMB.default_pose.copy()
    q0[EMB.group("left_arm").slice] += np.float32(0.25)       # the robot starts off its default
    robot = FakeRobot(q0)
    client, infer = client_infer(server.address)
    cfg = fast_config(**PATIENT)
    loop = ControlLoop(robot, StaticCamera(), infer, EMB, cfg)
    try:
        result = loop.run(duration_s=1.5)
    finally:
        client.close()
    assert result.reason is StopReason.END_OF_DURATION and result.estop is None
    first = robot.sent[0]
    np.testing.assert_allclose(first.q, q0, atol=1e-6)          # the first command is the measured pose
    assert first.blend == 0.0
    assert_sent_safe(robot, cfg, q0)
    blends = [s.blend for s in robot.sent]
    ramp = [s.blend for s in robot.sent if s.time < first.time + cfg.safety.ramp_in_s]
    assert all(b2 >= b1 for b1, b2 in zip(ramp, ramp[1:]))
    assert max(blends) == 1.0 and blends[-1] == 0.0             # ran, then faded out on exit
    assert result.scheduler["chunks"] >= 5
    assert result.period_ms_p50 is not None and result.e2e_ms_p50 is not None
    assert result.interventions.get("fade_out") == 1


def test_adversarial_and_nan_chunks_never_reach_the_robot():
    robot = FakeRobot()
    rng = np.random.default_rng(1)
    calls = []

    def hostile_policy(obs: Observation) -> np.ndarray:
        calls.append(1)
        chunk = rng.uniform(-40, 40, (8, EMB.dim)).astype(np.float32)    # far past every limit
        if len(calls) % 3 == 0:
            chunk[rng.integers(0, 8), rng.integers(0, EMB.dim)] = np.nan
        if len(calls) % 5 == 0:
            chunk[:, 5] = np.inf
        time.sleep(0.02)
        return chunk

    cfg = fast_config(**PATIENT)
    loop = ControlLoop(robot, StaticCamera(), hostile_policy, EMB, cfg)
    result = loop.run(duration_s=1.5)
    assert_sent_safe(robot, cfg, EMB.default_pose)
    assert result.request_errors["bad_chunk"] > 0                     # NaN/inf chunks refused whole
    assert result.interventions["joint_limit"] > 0 and result.interventions["step_clamp"] > 0


def test_server_killed_mid_run_holds_within_200ms_and_fades_within_3s(engine):
    from lara_g1.runtime.server import PolicyServer

    srv = PolicyServer(engine, bind="tcp://127.0.0.1:*", seed=0).start()
    robot = FakeRobot()
    client, infer = client_infer(srv.address)
    cfg = ControlConfig.load("default")                          # the shipped watchdog settings
    loop = ControlLoop(robot, StaticCamera(), infer, EMB, dataclasses.replace(
        cfg, safety=dataclasses.replace(cfg.safety, ramp_in_s=1.0)))
    thread, box = run_in_thread(loop, 20.0)
    try:
        wait_running(loop, thread)
        time.sleep(0.3)
        # The server stops answering the moment stop() begins (its worker may take longer to
        # join), so stop it in the background and take the kill time from before the call.
        t_stop = time.monotonic()
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        thread.join(10.0)
        stopper.join(10.0)
    finally:
        client.close()
    assert not thread.is_alive()
    result = box["result"]
    assert result.reason is StopReason.STALE_COMMANDS
    before = [s.q for s in robot.sent if s.time < t_stop - 0.3]
    assert np.ptp(np.stack(before), axis=0).max() > 0            # the policy was moving the robot
    # the last sign of life: a reply already on its way when stop() began may still arrive
    assert loop.scheduler.last_received <= t_stop + 0.05
    t_kill = max(t_stop, loop.scheduler.last_received)
    held = [s for s in robot.sent if s.time >= t_kill + 0.2]
    assert held, "nothing was published after the server died"
    for s in held:                                               # holding from 200 ms after the kill
        np.testing.assert_array_equal(s.q, held[0].q)
    blends = [s.blend for s in held]
    assert all(b2 <= b1 for b1, b2 in zip(blends, blends[1:]))
    t_zero = next(s.time for s in robot.sent if s.time >= t_kill and s.blend == 0.0)
    assert t_zero - t_kill <= 3.0                                # faded out within 3 s
    assert robot.sent[-1].blend == 0.0 and robot.sent[-1].time == t_zero   # nothing after blend 0
    assert result.interventions["stale_command"] >= 1


class StallingCamera(StaticCamera):
    """Delivers frames until ``stall()``, then blocks like a camera whose cable came out."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = threading.Event()

    def read(self, timeout_s: float = 1.0) -> Frame:
        if self.stalled.is_set():
            time.sleep(timeout_s)
            raise TimeoutError("no frame")
        return super().read(timeout_s)


def test_camera_stall_stops_new_chunks_and_the_watchdog_fades_out():
    robot = FakeRobot()
    camera = StallingCamera()

    def policy(obs: Observation) -> np.ndarray:
        time.sleep(0.01)
        return np.repeat(obs.state[None], 8, axis=0)

    cfg = fast_config(fade_s=0.5)
    loop = ControlLoop(robot, camera, policy, EMB, cfg)
    thread, box = run_in_thread(loop, 20.0)
    wait_running(loop, thread)
    camera.stalled.set()
    t_stall = time.monotonic()
    thread.join(10.0)
    result = box["result"]
    assert result.reason is StopReason.STALE_COMMANDS
    assert result.request_errors.get("ControlError", 0) >= 1           # "the camera stalled"
    # new chunks stop once the newest frame is older than frame_max_age_s; then hold and fade
    limit = cfg.run.frame_max_age_s + cfg.safety.command_timeout_s + cfg.safety.hold_s + cfg.safety.fade_s
    assert robot.sent[-1].blend == 0.0 and robot.sent[-1].time - t_stall <= limit + 0.5


def test_the_policy_starts_from_the_ready_pose():
    """The arms go to the ready pose (the embodiment default, where demonstrations start) before
    the first request: the policy's first observation is that pose, whatever pose the arms were in."""
    start = EMB.default_pose.copy()
    start[:14] += 0.4                                   # arms away from the ready pose
    robot = FakeRobot(start)
    seen = []

    def policy(obs: Observation) -> np.ndarray:
        seen.append(obs.state.copy())
        return np.repeat(obs.state[None], 8, axis=0)

    cfg = fast_config(**PATIENT)
    result = ControlLoop(robot, StaticCamera(), policy, EMB, cfg).run(duration_s=0.5)
    assert result.reason is StopReason.END_OF_DURATION and seen
    np.testing.assert_allclose(robot.sent[0].q, start, atol=1e-6)        # the ramp starts where the arms are
    assert np.abs(seen[0] - EMB.default_pose).max() <= cfg.run.ready_tolerance
    assert_sent_safe(robot, cfg, start)


def test_ready_pose_not_reached_is_a_clear_error_and_fades_out():
    start = EMB.default_pose.copy()
    start[3] += 0.5                                      # left elbow off, and stuck there
    robot = FakeRobot(start, follow=False)              # records, but the arms do not move
    cfg = fast_config(**PATIENT)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, ready_timeout_s=1.5))
    with pytest.raises(ControlError, match="did not reach the ready pose within 1.5 s.*left_elbow is 0.500 off"):
        ControlLoop(robot, StaticCamera(), lambda obs: pytest.fail("the policy was asked"), EMB, cfg).run(5.0)
    assert robot.sent[-1].blend == 0.0                   # faded out


def test_start_at_ready_off_ramps_straight_to_the_policy():
    start = EMB.default_pose.copy()
    start[:14] += 0.4
    robot = FakeRobot(start)
    seen = []

    def policy(obs: Observation) -> np.ndarray:
        seen.append(obs.state.copy())
        return np.repeat(obs.state[None], 8, axis=0)

    cfg = fast_config(**PATIENT)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, start_at_ready=False))
    ControlLoop(robot, StaticCamera(), policy, EMB, cfg).run(duration_s=0.5)
    np.testing.assert_allclose(seen[0], start, atol=1e-6)
