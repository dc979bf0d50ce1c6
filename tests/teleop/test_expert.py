"""The scripted expert operator: its wrist poses retarget exactly onto the planned hand poses, and
driven through the retargeter it completes both simulated tasks (physics in-process, no DDS; the
DDS path is covered by tests/apps/test_loop.py)."""
from __future__ import annotations

import numpy as np
import pytest

from lara_g1.robot.g1 import G1Config
from lara_g1.robot.sim.world import SimWorld
from lara_g1.teleop.retarget.retargeter import Retargeter
from lara_g1.teleop.sources.base import TrackingError
from lara_g1.teleop.sources.expert import ExpertSource
from tests.fakes import FakeClock


def _scene(world: SimWorld):
    return lambda: world.status()["objects"]


def test_wrist_poses_retarget_onto_the_planned_hand_poses():
    world = SimWorld("pick_place", seed=3)
    clock = FakeClock(50.0)
    expert = ExpertSource("pick_place", _scene(world), clock=clock)
    expert.connect()
    retargeter = Retargeter()
    retargeter.calibrate([expert.latest()])
    rng = np.random.default_rng(0)
    for side in ("left", "right"):
        point = expert.home_point[side] + rng.uniform(-0.1, 0.1, 3)
        roll = float(rng.uniform(-1.0, 1.0))
        want = expert.hand_pose(side, point, roll)
        sample = expert.sample(dict.fromkeys(("left", "right"), point), dict.fromkeys(("left", "right"), roll),
                               {"left": 0.0, "right": 0.0})
        got = retargeter.arm_target(sample, side)
        np.testing.assert_allclose(got, want, atol=1e-9)
        # the planned grasp point is where the sim's grasp site sits in that hand pose
        np.testing.assert_allclose(got[:3, :3] @ expert.site_offset + got[:3, 3], point, atol=1e-9)


def test_the_plan_follows_the_scene_and_ends_the_episode():
    world = SimWorld("pick_place", seed=5)
    clock = FakeClock(50.0)
    expert = ExpertSource("pick_place", _scene(world), clock=clock)
    expert.connect()
    assert not expert.latest().episode_end            # holding the calibration pose
    expert.next_episode()
    tomato = np.asarray(world.status()["objects"]["tomato"]["pos"]) - expert.torso_pos
    grasp = expert.plan(world.status()["objects"])[2]  # down at the tomato
    np.testing.assert_allclose(grasp.point["right"], tomato)
    clock.t += expert.plan_s + 1.0
    assert expert.latest().episode_end


def test_unknown_task_or_scene_is_refused():
    with pytest.raises(TrackingError, match="simulated tasks"):
        ExpertSource("fold_laundry", dict)
    expert = ExpertSource("pour", lambda: {"tomato": {"pos": [0, 0, 0]}})
    with pytest.raises(TrackingError, match="no pose for 'bottle'"):
        expert.next_episode()


@pytest.mark.parametrize("task", ["pick_place", "pour"])
def test_expert_completes_the_task_through_the_retargeter(task):
    world = SimWorld(task, seed=7)
    emb = world.emb
    cfg = G1Config.load("sim")
    kp, kd = np.array(cfg.kp * 2), np.array(cfg.kd * 2)
    clock = FakeClock(50.0)
    expert = ExpertSource(task, _scene(world), clock=clock)
    expert.connect()
    retargeter = Retargeter()
    retargeter.calibrate([expert.latest()])
    retargeter.reset(world.joint_state()[0])
    expert.next_episode()
    steps = 0
    while True:
        sample = expert.latest()
        q = retargeter(sample).q
        world.set_arm_command(q[world.arm_idx], kp, kd, 1.0)
        world.set_hand_targets(q[emb.group("left_hand").slice], q[emb.group("right_hand").slice])
        world.step(5)
        clock.t += 5 * world.dt
        steps += 1
        if sample.episode_end or steps > 5000:
            break
    assert sample.episode_end
    stages = world.status()["stages"]
    assert all(stages.values()), stages


def _plan_states(expert: ExpertSource, objects: dict, rate_hz: float = 30.0) -> np.ndarray:
    """The planned operator state at ``rate_hz``: both grasp points (m), then rolls and grips
    scaled by 0.1 (so 1 rad of roll or a full grip counts as 10 cm)."""
    plan, plan_s = expert.timeline(objects)
    rows = []
    for x in np.arange(0.0, plan_s, 1.0 / rate_hz):
        point, roll, grip = expert._interpolate(plan, x)
        rows.append(np.concatenate([point["left"], point["right"],
                                    0.1 * np.array([roll["left"], roll["right"], grip["left"], grip["right"]])]))
    return np.array(rows)


def test_the_pour_plan_never_returns_to_a_state_it_passed_before_pouring():
    """A policy acts on the present frame and joint state only. Demonstrations that pass one state
    twice, once before the pour and once after it, teach two different next moves there; policies
    trained on such a plan (back through the lifted pose, then home) lifted and went home."""
    for seed in range(10):
        objects = SimWorld("pour", seed=seed).status()["objects"]
        states = _plan_states(ExpertSource("pour", lambda: objects), objects)  # noqa: B023
        roll = np.abs(states[:, 7])                                  # the right hand's (bottle's) roll
        before_pour = states[:np.argmax(roll > 0)]
        after_pour = states[np.nonzero(roll >= roll.max() - 1e-9)[0][-1] + 1:]
        gap = np.linalg.norm(before_pour[:, None] - after_pour[None], axis=-1).min()
        assert gap > 0.05, f"scene {seed}: the way back passes within {gap:.3f} of a state before the pour"


@pytest.mark.parametrize("task", ["pick_place", "pour"])
def test_explore_reaches_near_the_objects_varies_per_episode_and_ends_at_home(task):
    world = SimWorld(task, seed=2)
    objects = world.status()["objects"]
    expert = ExpertSource(task, _scene(world), motion="explore", seed=4, clock=FakeClock(50.0))
    anchors = [np.asarray(objects[name]["pos"]) - expert.torso_pos for name in objects]
    plans = []
    for _ in range(3):
        expert.next_episode()
        keys = [key for _, key in expert._plan]
        plans.append(keys)
        assert 3 + 2 <= len(keys) <= 6 + 2                          # start, 3..6 reaches, home
        for key in keys[1:-1]:
            for side in ("left", "right"):
                near = min(np.abs(key.point[side] - a)[:2].max() for a in anchors)
                at_home = np.allclose(key.point[side], expert.home_point[side])
                assert at_home or near <= 0.08 + 1e-9, (side, key.point[side])
        home = keys[-1]
        for side in ("left", "right"):
            np.testing.assert_allclose(home.point[side], expert.home_point[side])
            assert home.roll[side] == 0.0 and home.grip[side] == 0.0
    first = [np.concatenate([k.point["left"], k.point["right"]]) for k in plans[0]]
    second = [np.concatenate([k.point["left"], k.point["right"]]) for k in plans[1]]
    assert len(first) != len(second) or not np.allclose(first, second)   # a new plan per episode
    again = ExpertSource(task, _scene(world), motion="explore", seed=4, clock=FakeClock(50.0))
    again.next_episode()
    assert [k.point["right"].tolist() for _, k in again._plan] == [k.point["right"].tolist() for k in plans[0]]


def test_explore_is_not_the_task_instruction_and_refuses_discard_failed(tmp_path):
    from lara_g1.teleop import cli

    with pytest.raises(cli.CliError, match="nothing can fail"):
        cli.cmd_record(cli._parser().parse_args(
            ["record", "--source", "explore", "--robot", "sim", "--task", "pour", "--episodes", "1",
             "--out", str(tmp_path / "v"), "--discard-failed"]))
    with pytest.raises(ValueError, match="motion must be one of"):
        ExpertSource("pour", dict, motion="dance")
