"""A scripted expert operator for the simulated G1's tasks (pick_place, pour).

It plays the operator's part of teleoperation and nothing else: at the start of every episode it
reads the scene's privileged object poses (``SimControl.status()["objects"]``, randomised by the
simulator per reset seed), plans where the robot's grasp points should go and when the hands
close, and streams that as :class:`TrackingSample` s. Each planned hand pose is turned into the
operator wrist pose that :class:`lara_g1.teleop.retarget.Retargeter` maps back onto it (the inverse of
``Retargeter.arm_target`` under the calibration this operator holds before the first episode),
so retargeting IK, the safety filter, the G1 driver and the recorder run exactly as for a human.

Plans (torso frame: x forward, y left, z up; the hand keeps its calibration-pose orientation
except where stated):

- ``pick_place``: right hand above the tomato, down, close, lift, carry over the basket, lower,
  open, back to the calibration pose.
- ``pour``: right hand to the bottle and left hand to the cup, both close and lift; the cup is
  brought in front of the torso, the bottle beside it; the right hand rolls the bottle over the
  cup (the mouth above the cup's opening) and holds; then both hands, still holding, go straight
  to the calibration pose while the bottle rolls back upright on the way.

A policy sees one frame and the joint state, not the history, so no pose on the way back may
repeat one on the way there: where the demonstrations pass one state twice with two different
next moves, the policy cannot tell which is due. (An earlier pour plan went back through the
lifted pose before going home; policies trained on it lifted both objects and went straight home,
never pouring.)

``motion="explore"`` plays no task: random reaches of either hand or both around the task's
objects, with random rolls and grips, then back to the calibration pose. Its episodes are cheap
action-free video for the LAM's stage 1 (``lara-teleop record --source explore``): motion in the
task's scene that no demonstration contains, recorded through the same path.

Every plan ends at the calibration pose (the robot's ready pose), so every episode, and the reset
phase between two episodes, starts from there: as for a policy run (lara-robot goes to the ready
pose before the policy starts).

Motion between key poses is a smoothstep in position, roll and grip. The episode ends (the
sample's ``episode_end``) a moment after the plan's last key pose.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from lara_g1.robot.kinematics import axis_angle_matrix
from lara_g1.teleop.retarget.retargeter import SIDES, Retargeter
from lara_g1.teleop.sources.base import TrackingError, TrackingSample, TrackingSource
from lara_g1.teleop.sources.hand_model import hand_skeleton

# The expert operator's body frame = the tracker's world frame (heading 0), and its neutral pose.
NEUTRAL_HEAD = np.array([0.0, 0.0, 1.60])
NEUTRAL_WRIST = {"left": np.array([0.30, 0.20, 1.05]), "right": np.array([0.30, -0.20, 1.05])}
END_HOLD_S = 0.5          # the last key pose is held this long before the scripted episode end

TASKS = ("pick_place", "pour")
MOTIONS = ("task", "explore")
EXPLORE_KEYS = (3, 6)           # random key poses per explore episode (inclusive)


def explore_instruction(task: str) -> str:
    """What explore episodes are recorded under: not the task's words, since they are video of the
    scene, not demonstrations of the task."""
    return f"(no task) random reaches in the {task} scene"


@dataclass(frozen=True)
class Key:
    """One key pose: reached ``duration`` seconds after the previous one.

    Per side: the grasp point (torso frame, m), the hand's rotation about the torso x axis from
    its calibration-pose orientation (rad, right-handed), and the grip (0 open, 1 closed).
    """
    duration: float
    point: dict
    roll: dict
    grip: dict


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


class ExpertSource(TrackingSource):
    """``ExpertSource("pick_place", scene=lambda: sim_control.status()["objects"])``.

    ``scene()`` returns the world poses of the task's objects; ``torso_pos`` is the torso's
    position in that world frame (the simulated G1's torso is upright, fixed, unrotated).
    ``speed`` scales every key pose's duration (1 = the default pace). ``motion`` is ``"task"``
    (the task's plan) or ``"explore"`` (random reaches, seeded by ``seed`` and the episode count).
    """

    name = "expert"

    def __init__(self, task: str, scene: Callable[[], dict], *, torso_pos=None,
                 retargeter: Retargeter | None = None, rate_hz: float = 90.0, speed: float = 1.0,
                 motion: str = "task", seed: int = 0, clock: Callable[[], float] = time.monotonic):
        if task not in TASKS:
            raise TrackingError(f"the expert knows the simulated tasks {TASKS}, not {task!r}")
        if motion not in MOTIONS:
            raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
        if rate_hz <= 0 or speed <= 0:
            raise ValueError(f"rate_hz and speed must be > 0, got {rate_hz}, {speed}")
        from lara_g1.robot.sim.model import TORSO_HEIGHT, grasp_site_offset

        self.task, self._scene, self.motion, self.seed = task, scene, motion, int(seed)
        self.rate_hz, self.speed = float(rate_hz), float(speed)
        self._clock = clock
        self.torso_pos = np.array([0.0, 0.0, TORSO_HEIGHT] if torso_pos is None else torso_pos, float)
        self.site_offset = grasp_site_offset()
        rt = retargeter or Retargeter()
        self.scale = rt.config.arm.motion_scale
        self.home = {side: rt.home[side].copy() for side in SIDES}      # hand poses, calibration pose
        self.home_point = {side: self.home[side][:3, :3] @ self.site_offset + self.home[side][:3, 3]
                           for side in SIDES}
        self._wrist0 = {side: np.eye(4) for side in SIDES}
        for side in SIDES:
            self._wrist0[side][:3, 3] = NEUTRAL_WRIST[side]
        self._lock = threading.Lock()
        self._plan: list[tuple[float, Key]] | None = None    # (start time in the episode, key)
        self._episode_t0: float | None = None
        self._t0: float | None = None
        self.plan_s = 0.0
        self.episodes_started = 0

    # ------------------------------------------------------------------ TrackingSource
    def connect(self, timeout_s: float = 10.0) -> None:
        self._t0 = self._clock()

    def next_episode(self) -> None:
        """Read the scene and plan this episode (the recorder starts it)."""
        if self._t0 is None:
            self.connect()
        plan, plan_s = self.timeline(self._scene())
        with self._lock:
            self._plan, self.plan_s = plan, plan_s
            self._episode_t0 = self._tick(self._clock() - self._t0)
        self.episodes_started += 1

    def latest(self) -> TrackingSample | None:
        if self._t0 is None:
            return None
        t = self._tick(self._clock() - self._t0)
        with self._lock:
            plan, t_ep = self._plan, None if self._episode_t0 is None else t - self._episode_t0
        if plan is None or t_ep is None:
            point, roll, grip = dict(self.home_point), dict.fromkeys(SIDES, 0.0), dict.fromkeys(SIDES, 0.0)
            ended = False
        else:
            point, roll, grip = self._interpolate(plan, t_ep)
            ended = t_ep >= self.plan_s + END_HOLD_S
        sample = self.sample(point, roll, grip)
        sample.timestamp = self._t0 + t
        sample.episode_end = ended
        return sample

    def status(self) -> dict:
        return {"source": self.name, "task": self.task, "motion": self.motion, "plan_s": self.plan_s}

    # ------------------------------------------------------------------ planning
    def _tick(self, t: float) -> float:
        return np.floor(t * self.rate_hz) / self.rate_hz

    def _torso(self, objects: dict, name: str) -> np.ndarray:
        try:
            return np.asarray(objects[name]["pos"], dtype=float) - self.torso_pos
        except (KeyError, TypeError, ValueError) as exc:
            raise TrackingError(f"the scene reports no pose for {name!r} ({exc!r}); is lara-sim "
                                f"running the {self.task} task?") from None

    def plan(self, objects: dict) -> list[Key]:
        """Key poses for one episode from the objects' world poses."""
        if self.motion == "explore":
            return self._plan_explore(objects)
        return self._plan_pick_place(objects) if self.task == "pick_place" else self._plan_pour(objects)

    def timeline(self, objects: dict) -> tuple[list[tuple[float, Key]], float]:
        """The plan's key poses with their start times in the episode (s), and its length (s)."""
        timeline, t = [], 0.0
        for key in self.plan(objects):
            timeline.append((t, key))
            t += key.duration
        return timeline, t

    def _keys(self, steps: list[tuple[float, dict, dict, dict]]) -> list[Key]:
        """Fill unspecified sides from the previous key (start: calibration pose, open, no roll)."""
        point, roll, grip = dict(self.home_point), dict.fromkeys(SIDES, 0.0), dict.fromkeys(SIDES, 0.0)
        keys = []
        for duration, p, r, g in steps:
            point = {**point, **p}
            roll = {**roll, **r}
            grip = {**grip, **g}
            keys.append(Key(duration / self.speed, dict(point), dict(roll), dict(grip)))
        return keys

    def _plan_pick_place(self, objects: dict) -> list[Key]:
        from lara_g1.robot.sim.tasks import PickPlace

        tomato, basket = self._torso(objects, "tomato"), self._torso(objects, "basket")
        up = np.array([0.0, 0.0, 1.0])
        over_basket = basket + up * (PickPlace.BASKET_INNER[2] + PickPlace.TOMATO_R + 0.05)
        R = "right"
        return self._keys([
            (0.3, {}, {}, {}),
            (1.5, {R: tomato + 0.10 * up}, {}, {}),
            (0.8, {R: tomato}, {}, {}),
            (0.6, {}, {}, {R: 1.0}),
            (0.8, {R: tomato + 0.12 * up}, {}, {}),
            (1.8, {R: over_basket + 0.04 * up}, {}, {}),
            (0.6, {R: over_basket}, {}, {}),
            (0.5, {}, {}, {R: 0.0}),
            (0.6, {R: over_basket + 0.08 * up}, {}, {}),
            (1.4, {R: self.home_point[R]}, {}, {}),
        ])

    def _plan_pour(self, objects: dict) -> list[Key]:
        from lara_g1.robot.sim.tasks import Pour

        bottle, cup = self._torso(objects, "bottle"), self._torso(objects, "cup")
        up = np.array([0.0, 0.0, 1.0])
        L, R = "left", "right"
        (_, bottle_half), (_, cup_half) = Pour.BOTTLE, Pour.CUP
        # Where the cup is held for the pour, and where the bottle's centre goes so that, rolled by
        # `tilt` towards +y, its mouth (centre + axis * (half height + 3 cm), as the sim measures
        # it) sits 5 cm above the cup's opening.
        cup_at = np.array([0.36, 0.07, cup[2] + 0.12])
        tilt = np.deg2rad(80.0)
        axis = np.array([0.0, np.sin(tilt), np.cos(tilt)])
        mouth_at = cup_at + up * (cup_half + 0.05)
        bottle_at = mouth_at - axis * (bottle_half + 0.03)
        return self._keys([
            (0.3, {}, {}, {}),
            (1.6, {R: bottle + 0.10 * up, L: cup + 0.10 * up}, {}, {}),
            (0.8, {R: bottle, L: cup}, {}, {}),
            (0.6, {}, {}, {R: 1.0, L: 1.0}),
            (0.8, {R: bottle + 0.10 * up, L: cup + 0.10 * up}, {}, {}),
            (1.6, {R: bottle_at - 0.06 * axis, L: cup_at}, {}, {}),
            (0.8, {R: bottle_at}, {}, {}),
            (1.4, {}, {R: -tilt}, {}),
            (0.6, {}, {}, {}),
            (2.2, {R: self.home_point[R], L: self.home_point[L]}, {R: 0.0}, {}),
        ])

    def _plan_explore(self, objects: dict) -> list[Key]:
        """Random reaches near the task's objects (2 to 18 cm above their centres; each hand to the
        objects on its own side, so the arms do not cross), random rolls (±0.6 rad) and grips, then
        home: seeded by (seed, episode), so a dataset can be recorded again exactly."""
        from lara_g1.robot.sim.tasks import TASKS as SIM_TASKS

        rng = np.random.default_rng([self.seed, self.episodes_started])
        targets = [self._torso(objects, name) for name in SIM_TASKS[self.task].objects]
        steps: list[tuple[float, dict, dict, dict]] = [(0.3, {}, {}, {})]
        for _ in range(int(rng.integers(EXPLORE_KEYS[0], EXPLORE_KEYS[1] + 1))):
            sides = [SIDES[int(rng.integers(2))]] if rng.random() < 0.6 else list(SIDES)
            point, roll, grip = {}, {}, {}
            for side in sides:
                own = [t for t in targets if (t[1] > 0) == (side == "left")] or targets
                anchor = own[int(rng.integers(len(own)))]
                point[side] = anchor + rng.uniform([-0.06, -0.08, 0.02], [0.06, 0.08, 0.18])
                roll[side] = float(rng.uniform(-0.6, 0.6))
                grip[side] = float(rng.choice([0.0, 0.5, 1.0]))
            steps.append((float(rng.uniform(0.8, 1.6)), point, roll, grip))
        home = {side: self.home_point[side] for side in SIDES}
        steps.append((1.6, home, dict.fromkeys(SIDES, 0.0), dict.fromkeys(SIDES, 0.0)))
        return self._keys(steps)

    @staticmethod
    def _interpolate(plan: list[tuple[float, Key]], t: float) -> tuple[dict, dict, dict]:
        prev = plan[0][1]
        for start, key in plan:
            if t < start + key.duration:
                a = _smoothstep((t - start) / key.duration) if key.duration > 0 else 1.0
                return ({s: prev.point[s] + a * (key.point[s] - prev.point[s]) for s in SIDES},
                        {s: prev.roll[s] + a * (key.roll[s] - prev.roll[s]) for s in SIDES},
                        {s: prev.grip[s] + a * (key.grip[s] - prev.grip[s]) for s in SIDES})
            prev = key
        return dict(prev.point), dict(prev.roll), dict(prev.grip)

    # ------------------------------------------------------------------ operator poses
    def hand_pose(self, side: str, point: np.ndarray, roll: float) -> np.ndarray:
        """The robot hand (end-effector) pose, torso frame, that puts the grasp point at ``point``."""
        T = np.eye(4)
        T[:3, :3] = axis_angle_matrix([1, 0, 0], roll) @ self.home[side][:3, :3]
        T[:3, 3] = np.asarray(point, float) - T[:3, :3] @ self.site_offset
        return T

    def wrist_pose(self, side: str, hand: np.ndarray) -> np.ndarray:
        """The operator wrist pose that the retargeter maps onto ``hand`` (heading 0)."""
        E0, W0 = self.home[side], self._wrist0[side]
        W = np.eye(4)
        W[:3, 3] = W0[:3, 3] + (hand[:3, 3] - E0[:3, 3]) / self.scale
        W[:3, :3] = hand[:3, :3] @ E0[:3, :3].T @ W0[:3, :3]
        return W

    def sample(self, point: dict, roll: dict, grip: dict) -> TrackingSample:
        head = np.eye(4)
        head[:3, 3] = NEUTRAL_HEAD
        poses = {}
        for side in SIDES:
            poses[f"{side}_wrist"] = self.wrist_pose(side, self.hand_pose(side, point[side], roll[side]))
            g = float(grip[side])
            poses[f"{side}_hand"] = hand_skeleton(side, (g,) * 4, thumb_bend=g, thumb_opposition=g)
        return TrackingSample(timestamp=0.0, head=head, **poses)
