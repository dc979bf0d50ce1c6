"""A synthetic operator: smooth head, wrist and finger motion for tests, demos and CI.

The operator stands facing an arbitrary world heading, holds the neutral calibration pose until
the first :meth:`SyntheticSource.next_episode`, starts every episode in that pose (the calibration pose, hands open, looking ahead), moves the wrists on
smooth Lissajous paths within reach, opens and closes the hands, looks around a little, and returns
to neutral before the scripted episode end. Samples come on a fixed ``rate_hz`` grid of the clock.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from lara_g1.robot.kinematics import axis_angle_matrix
from lara_g1.teleop.sources.base import TrackingSample, TrackingSource
from lara_g1.teleop.sources.hand_model import hand_skeleton

# Neutral pose in the operator's body frame (x forward, y left, z up, origin between the feet).
NEUTRAL_HEAD = np.array([0.0, 0.0, 1.60])
NEUTRAL_WRIST = {"left": np.array([0.30, 0.20, 1.05]), "right": np.array([0.30, -0.20, 1.05])}
RAMP_S = 1.2          # ramp from / back to neutral at the start / end of a scripted episode


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def _pose(R: np.ndarray, p: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, p
    return T


class SyntheticSource(TrackingSource):
    name = "synthetic"

    def __init__(self, *, rate_hz: float = 90.0, episode_s: float | None = None,
                 amplitude_m: float = 0.06, heading: float = 0.6, seed: int = 0,
                 clock: Callable[[], float] = time.monotonic):
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        if episode_s is not None and episode_s <= 0:
            raise ValueError(f"episode_s must be > 0, got {episode_s}")
        self.rate_hz, self.episode_s, self.amplitude = float(rate_hz), episode_s, float(amplitude_m)
        self._clock = clock
        rng = np.random.default_rng(seed)
        self._freq = rng.uniform(0.15, 0.35, (2, 3))          # Hz, per arm and axis
        self._phase = rng.uniform(0, 2 * np.pi, (2, 3))
        self._grip_period = rng.uniform(2.5, 4.0, 2)          # s, per hand
        # World frame: the operator faces `heading` (rad about z) from an arbitrary origin.
        self._world_R = axis_angle_matrix([0, 0, 1], heading)
        self._world_p = np.array([1.5, -0.7, 0.0])
        self._t0: float | None = None
        self._episode_t0: float | None = None     # None: holding the neutral pose (calibration)
        self.episodes_started = 0

    def connect(self, timeout_s: float = 10.0) -> None:
        self._t0 = self._clock()
        self._episode_t0 = None

    def next_episode(self) -> None:
        if self._t0 is None:
            self.connect()
        self._episode_t0 = self._tick(self._clock() - self._t0)
        self.episodes_started += 1

    def _tick(self, t: float) -> float:
        return np.floor(t * self.rate_hz) / self.rate_hz

    def sample_at(self, t_episode: float) -> tuple[dict, bool]:
        """The operator's pose ``t_episode`` seconds into an episode, in the body frame."""
        env = _smoothstep(t_episode / RAMP_S)
        ended = False
        if self.episode_s is not None:
            env *= _smoothstep((self.episode_s - t_episode) / RAMP_S)
            ended = t_episode >= self.episode_s
        poses = {}
        for k, side in enumerate(("left", "right")):
            w = 2 * np.pi * self._freq[k]
            offset = self.amplitude * env * np.sin(w * t_episode + self._phase[k]) * np.array([1.0, 0.8, 1.0])
            twist = 0.25 * env * np.sin(w[::-1] * t_episode)
            R = axis_angle_matrix([1, 0, 0], twist[0]) @ axis_angle_matrix([0, 1, 0], twist[1]) \
                @ axis_angle_matrix([0, 0, 1], twist[2])
            poses[f"{side}_wrist"] = _pose(R, NEUTRAL_WRIST[side] + offset)
            grip = env * 0.5 * (1 - np.cos(2 * np.pi * t_episode / self._grip_period[k]))
            poses[f"{side}_hand"] = hand_skeleton(side, (grip,) * 4, thumb_bend=grip, thumb_opposition=grip)
        yaw = 0.3 * env * np.sin(2 * np.pi * 0.2 * t_episode)
        pitch = 0.15 * env * np.sin(2 * np.pi * 0.13 * t_episode)   # positive: looking down
        poses["head"] = _pose(axis_angle_matrix([0, 0, 1], yaw) @ axis_angle_matrix([0, 1, 0], pitch),
                              NEUTRAL_HEAD)
        return poses, ended

    def latest(self) -> TrackingSample | None:
        if self._t0 is None:
            return None
        t = self._tick(self._clock() - self._t0)
        poses, ended = self.sample_at(0.0 if self._episode_t0 is None else t - self._episode_t0)
        W = _pose(self._world_R, self._world_p)
        return TrackingSample(
            timestamp=self._t0 + t, head=W @ poses["head"], left_wrist=W @ poses["left_wrist"],
            right_wrist=W @ poses["right_wrist"], left_hand=poses["left_hand"],
            right_hand=poses["right_hand"], episode_end=ended)

    def status(self) -> dict:
        return {"source": self.name, "rate_hz": self.rate_hz, "episode_s": self.episode_s}
