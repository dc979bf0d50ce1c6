"""SafetyFilter rules on an explicit clock, against a robot double that records every send (its
joints stay put; the test stamps its state)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from lara_g1.core.embodiment import load_embodiment
from lara_g1.robot.control import ControlConfig
from lara_g1.robot.safety import (
    EStop,
    EStopSource,
    Phase,
    SafetyConfig,
    SafetyConfigError,
    SafetyFilter,
    SafetyStateError,
    StopReason,
)
from tests.fakes import FakeRobot

EMB = load_embodiment("g1")
CFG = ControlConfig.load("default").safety
PERIOD = 1.0 / CFG.command_hz


def still_robot(q0: np.ndarray) -> FakeRobot:
    """The motors: joints fixed at ``q0``, the state's stamp set by the test (``robot.stamp = t``)."""
    return FakeRobot(q0, follow=False, stamp=0.0)


def make(q0=None, **cfg_overrides):
    q0 = EMB.default_pose.copy() if q0 is None else q0
    robot = still_robot(q0)
    cfg = SafetyConfig.from_dict({**{k: getattr(CFG, k) for k in CFG.__dataclass_fields__}, **cfg_overrides})
    return robot, SafetyFilter(EMB, cfg, robot)


def run_steps(f: SafetyFilter, robot: FakeRobot, targets, t0: float = 0.0):
    """Step at the command rate with fresh state; return the times used."""
    times = []
    for i, q in enumerate(targets):
        t = t0 + (i + 1) * PERIOD
        robot.stamp = t
        f.step(q, t)
        times.append(t)
    return times


def test_ramp_in_starts_at_the_measured_pose_and_reaches_the_target():
    q0 = EMB.default_pose.copy()
    q0[EMB.group("left_arm").slice] += np.float32(0.3)
    robot, f = make(q0)
    f.start(q0, now=0.0)
    target = EMB.default_pose.copy()
    target[EMB.group("right_arm").slice] += np.float32(0.5)
    q, blend = f.step(target, now=0.0)
    np.testing.assert_allclose(robot.sent[0].q, q0, atol=1e-6)
    assert robot.sent[0].blend == 0.0 and blend == 0.0
    n = int(CFG.ramp_in_s * CFG.command_hz)
    run_steps(f, robot, [target] * (n + 5))
    # the first commands stay near the measured pose, blend rises monotonically to 1
    early = robot.sent[1].q
    assert np.max(np.abs(early - q0)) < 0.01
    blends = [s.blend for s in robot.sent]
    assert all(b2 >= b1 for b1, b2 in zip(blends, blends[1:]))
    assert blends[-1] == 1.0 and f.phase is Phase.RUN
    np.testing.assert_allclose(robot.sent[-1].q, target, atol=1e-5)


def test_limits_and_step_clamp_hold_for_adversarial_chunks():
    robot, f = make()
    f.start(EMB.default_pose, now=0.0)
    rng = np.random.default_rng(0)
    n = int(CFG.ramp_in_s * CFG.command_hz) + 200
    # wild targets: far outside the limits, jumping sign every step
    targets = [rng.uniform(-50, 50, EMB.dim).astype(np.float32) for _ in range(n)]
    run_steps(f, robot, targets)
    sent = np.stack([s.q for s in robot.sent])
    assert np.all(sent >= EMB.lower - 1e-6) and np.all(sent <= EMB.upper + 1e-6)
    max_step = CFG.max_step(EMB)
    steps = np.abs(np.diff(np.concatenate([EMB.default_pose[None], sent]), axis=0))
    assert np.all(steps <= max_step + 1e-6)
    counts = f.interventions
    assert counts["joint_limit"] == n and counts["step_clamp"] > 0


def test_hand_and_head_have_their_own_rate():
    robot, f = make()
    f.start(EMB.default_pose, now=0.0)
    n = int(CFG.ramp_in_s * CFG.command_hz)
    run_steps(f, robot, [EMB.default_pose] * n)
    target = EMB.default_pose.copy()
    hand, head, arm = EMB.group("left_hand").slice, EMB.group("head").slice, EMB.group("left_arm").slice
    target[hand] = 0.0
    target[head] = EMB.upper[head]
    target[arm] = EMB.upper[arm]
    before = robot.sent[-1].q
    run_steps(f, robot, [target], t0=n * PERIOD)
    moved = np.abs(robot.sent[-1].q - before)
    np.testing.assert_allclose(moved[hand], CFG.max_velocity["left_hand"] * PERIOD, rtol=1e-4)
    np.testing.assert_allclose(moved[head], CFG.max_velocity["head"] * PERIOD, rtol=1e-4)
    assert np.all(moved[arm] <= CFG.max_velocity["left_arm"] * PERIOD + 1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_command_never_reaches_the_robot(bad):
    robot, f = make()
    f.start(EMB.default_pose, now=0.0)
    good = EMB.default_pose.copy()
    good[0] = 0.4
    n = int(CFG.ramp_in_s * CFG.command_hz) + 50
    run_steps(f, robot, [good] * n)
    held = robot.sent[-1].q.copy()
    poisoned = good.copy()
    poisoned[3] = 1.2
    poisoned[20] = bad
    run_steps(f, robot, [poisoned] * 5, t0=n * PERIOD)
    sent = np.stack([s.q for s in robot.sent])
    assert np.all(np.isfinite(sent))
    # the whole command is rejected: even its finite joint 3 is not followed
    for s in robot.sent[-5:]:
        np.testing.assert_array_equal(s.q, held)
        assert s.blend == 1.0
    assert f.interventions["non_finite"] == 5


def test_wrong_shape_command_is_rejected_and_counted():
    robot, f = make()
    f.start(EMB.default_pose, now=0.0)
    f.step(np.zeros(EMB.dim + 1, np.float32), PERIOD)
    assert f.interventions["malformed"] == 1
    np.testing.assert_allclose(robot.sent[-1].q, EMB.default_pose)


def test_stale_state_holds_then_fades_to_zero_and_stops_sending():
    robot, f = make()
    f.start(EMB.default_pose, now=0.0)
    n = int(CFG.ramp_in_s * CFG.command_hz) + 10
    target = EMB.default_pose.copy()
    target[7] = 0.5
    times = run_steps(f, robot, [target] * n)
    t_last_state = times[-1]
    robot.stamp = t_last_state            # rt/lowstate stops arriving
    moving = target.copy()
    log = []
    t = t_last_state
    while f.active and t < t_last_state + 5.0:
        t += PERIOD
        moving[7] += 0.01                     # the source keeps commanding motion
        q, blend = f.step(moving, t)
        log.append((t, q.copy(), blend))
    assert f.stopped
    hold_from = next(t for t, q, b in log if t - t_last_state > CFG.state_timeout_s)
    held = [q for t, q, b in log if t >= hold_from]
    for q in held:
        np.testing.assert_array_equal(q, held[0])   # holds the pose, follows nothing
    blends = [b for t, q, b in log]
    assert all(b2 <= b1 for b1, b2 in zip(blends, blends[1:]))
    t_zero = next(t for t, q, b in log if b == 0.0)
    assert t_zero - t_last_state <= 3.0
    assert f.interventions["stale_state"] == 1
    # once faded out nothing more is sent
    count = len(robot.sent)
    f.step(target, t + 1.0)
    assert len(robot.sent) == count


def test_stale_commands_hold_within_timeout_and_recover_before_the_fade():
    robot, f = make()
    f.start(EMB.default_pose, now=0.0)
    n = int(CFG.ramp_in_s * CFG.command_hz) + 10
    times = run_steps(f, robot, [EMB.default_pose] * n)
    t_cmd = times[-1]
    t = t_cmd
    phases = []
    # no new command, fresh state: hold after command_timeout_s
    while t < t_cmd + CFG.command_timeout_s + 0.05:
        t += PERIOD
        robot.stamp = t
        f.step(None, t)
        phases.append((t, f.phase))
    hold_at = next(t for t, p in phases if p is Phase.HOLD)
    assert CFG.command_timeout_s < hold_at - t_cmd <= CFG.command_timeout_s + PERIOD + 1e-9
    assert f.blend == 1.0
    # fresh commands within hold_s: resume
    t += PERIOD
    robot.stamp = t
    f.step(EMB.default_pose, t)
    assert f.phase is Phase.RUN
    assert [e.kind for e in f.events][-2:] == ["stale_command", "resumed"]


def test_estop_from_another_thread_fades_out_latched():
    robot, f = make()
    f.start(EMB.default_pose, now=0.0)
    run_steps(f, robot, [EMB.default_pose] * 300)
    t0 = 300 * PERIOD
    th = threading.Thread(target=f.estop, args=(EStopSource.DASHBOARD,))
    th.start()
    th.join()
    t = t0
    blends = []
    while f.active:
        t += PERIOD
        robot.stamp = t
        blends.append(f.step(EMB.default_pose, t)[1])
    assert blends[-1] == 0.0
    assert t - t0 <= CFG.fade_s + 2 * PERIOD
    assert f.interventions["estop"] == 1
    assert f.fade_reason is StopReason.ESTOP and f.estop_latch.source is EStopSource.DASHBOARD
    assert f.fade_detail == "e-stop: dashboard"                  # what a person reads
    assert f.snapshot()["fade_reason"] == "e-stop" and f.snapshot()["estop"] == "dashboard"
    with pytest.raises(SafetyStateError, match="e-stop engaged") as info:
        SafetyFilter(EMB, f.config, robot, estop=f.estop_latch).start(EMB.default_pose)
    assert not isinstance(info.value, ValueError)     # a state of the world, not a bad value


def test_context_manager_fades_out_on_exception():
    robot, f = make()
    with pytest.raises(RuntimeError), f:
        f.start(EMB.default_pose)
        for _ in range(5):
            robot.stamp = float("inf")      # never stale in real time
            f.step(EMB.default_pose)
        raise RuntimeError("control loop crashed")
    assert f.stopped
    assert robot.sent[-1].blend == 0.0
    assert f.interventions["fade_out"] == 1
    assert f.fade_reason is StopReason.ERROR and f.fade_detail == "exit on RuntimeError"


def test_shared_estop_latch_reaches_every_filter():
    latch = EStop()
    robot = still_robot(EMB.default_pose)
    f = SafetyFilter(EMB, CFG, robot, estop=latch)
    f.start(EMB.default_pose, now=0.0)
    run_steps(f, robot, [EMB.default_pose] * 50)
    latch.trigger(EStopSource.KEYBOARD)
    robot.stamp = 0.6
    f.step(EMB.default_pose, 0.6)
    assert f.phase is Phase.FADE and f.fade_reason is StopReason.ESTOP and latch.source is EStopSource.KEYBOARD
    assert 0.0 < robot.sent[-1].blend < 0.3


def test_step_before_start_and_bad_start_pose_are_refused():
    robot, f = make()
    with pytest.raises(SafetyStateError, match="before start"):
        f.step(EMB.default_pose, 0.0)
    bad = EMB.default_pose.copy()
    bad[2] = np.nan
    with pytest.raises(SafetyStateError, match="non-finite"):
        f.start(bad)
    assert robot.sent == []


@pytest.mark.parametrize("override, match", [
    ({"ramp_in_s": 0.2}, "ramp_in_s"),
    ({"fade_s": 5.0}, "fade_s"),
    ({"command_timeout_s": 1.0}, "command_timeout_s"),
    ({"command_hz": 50}, "command_hz"),
    ({"bogus": 1}, "unknown"),
])
def test_bad_safety_settings_are_named(override, match):
    with pytest.raises(SafetyConfigError, match=match):
        make(**override)


def test_max_velocity_must_cover_every_joint_group():
    cfg = SafetyConfig.from_dict({"max_velocity": {"left_arm": 1.0}})
    with pytest.raises(SafetyConfigError, match="missing"):
        SafetyFilter(EMB, cfg, still_robot(EMB.default_pose))


def test_safety_config_loads_by_name_for_every_command_source():
    assert SafetyConfig.load("default") == CFG
    with pytest.raises(SafetyConfigError, match="no control config named"):
        SafetyConfig.load("nope")


def test_each_watchdog_condition_is_counted_as_it_begins():
    robot, f = make()
    f.start(EMB.default_pose, now=0.0)
    n = int(CFG.ramp_in_s * CFG.command_hz) + 10
    times = run_steps(f, robot, [EMB.default_pose] * n)
    t = times[-1]
    for _ in range(int(0.3 / PERIOD)):                  # commands stop; state still fresh
        t += PERIOD
        robot.stamp = t
        f.step(None, t)
    assert f.phase is Phase.HOLD and f.interventions == {"stale_command": 1}
    t_state = t
    while f.active:                                     # now the state stops too
        t += PERIOD
        f.step(None, t)
    assert f.interventions["stale_state"] == 1 and f.interventions["stale_command"] == 1
    assert f.fade_reason is StopReason.STALE_STATE
    assert t - t_state <= 3.0
