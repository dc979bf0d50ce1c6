"""Operator -> G1: one tracking sample to a 28-D joint target (arms by IK, hands, head).

The calibration (:class:`OperatorCalibration`) is captured while the operator holds the robot's
calibration pose (``configs/kinematics/retarget.yaml``) and looks straight ahead. It fixes the operator's heading in the tracker's world
frame, the neutral head pitch and the wrist poses. Afterwards, with ``R_h`` the heading rotation:

- arm target position  = robot hand position in the calibration pose + scale * R_h^T (wrist - wrist_0)
- arm target rotation  = (R_h^T  R_wrist R_wrist_0^T  R_h) @ robot hand rotation in that pose
- head yaw / pitch     = the head's viewing direction in the operator frame, relative to neutral
- hands                = :class:`lara_g1.teleop.retarget.hands.HandRetargeter`

so the tracker's wrist-frame conventions cancel out and only relative motion reaches the robot.
Arms are solved by :class:`lara_g1.teleop.retarget.arm_ik.ArmIK`, warm-started from the previous frame.

Untracked hands (``TrackingSample.left_tracked``/``right_tracked`` False: the tracker does not see
the hand, and its wrist pose means nothing): the calibration takes only samples with both hands
tracked, and afterwards an untracked hand's arm and fingers hold their last command. When the hand
is seen again its arm rejoins smoothly: the hand target moves from where the held arm is to the
tracked target over ``arm.rejoin_s`` (smoothstep), so the arm never jumps to a hand that
reappears elsewhere.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from lara_g1.core.config import ConfigModel, config_dataclass, config_path, load_config
from lara_g1.core.embodiment import Embodiment, load_embodiment
from lara_g1.core.errors import ConfigError, LaraError
from lara_g1.robot.kinematics import ArmChain, axis_angle_matrix, load_arm_chains, rotation_log
from lara_g1.teleop.retarget.arm_ik import ArmIK, IKResult
from lara_g1.teleop.retarget.hands import HandRetargeter
from lara_g1.teleop.sources.base import TrackingSample

SIDES = ("left", "right")


class RetargetError(LaraError, ValueError):
    pass


class RetargetConfigError(RetargetError, ConfigError):
    """A retarget config (``configs/kinematics/retarget.yaml``) that is missing or invalid."""


@config_dataclass
class ArmRetarget(ConfigModel):
    motion_scale: float = Field(gt=0.0, le=3.0)   # robot hand travel per operator wrist travel
    max_iters: int = Field(ge=1)                  # IK iterations per frame and arm
    max_delta: float = Field(gt=0.0)              # rad: largest IK change per frame and joint
    rot_weight: float = Field(gt=0.0)             # m per rad: orientation vs position in the IK error
    rejoin_s: float = Field(0.5, ge=0.0, le=3.0)  # s: an arm whose hand is seen again moves over to it


@config_dataclass
class HeadRetarget(ConfigModel):
    yaw_gain: float
    pitch_gain: float


@config_dataclass
class RetargetConfig(ConfigModel):
    """``configs/kinematics/retarget.yaml``: the human side of teleop and its mapping to the G1."""

    config_error = RetargetConfigError

    arm: ArmRetarget
    head: HeadRetarget
    hands: dict[str, Any]        # human hand features per Inspire actuator (HandRetargeter checks them)
    tracking_timeout_s: float = Field(0.1, gt=0.0)

    @classmethod
    def load(cls, path: str | Path | None = None) -> RetargetConfig:
        """The bundled ``configs/kinematics/retarget.yaml``, or the file at ``path``."""
        p = Path(path) if path is not None else config_path("kinematics/retarget.yaml")
        return load_config(cls, p, kind="retarget config")


def _heading_and_pitch(forward: np.ndarray) -> tuple[float, float]:
    """Yaw of a viewing direction about world z, and its pitch (positive: looking down)."""
    return (float(np.arctan2(forward[1], forward[0])),
            float(np.arctan2(-forward[2], np.hypot(forward[0], forward[1]))))


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def _interpolate_pose(A: np.ndarray, B: np.ndarray, s: float) -> np.ndarray:
    """The pose ``s`` (0..1) of the way from ``A`` to ``B`` (straight line, shortest rotation)."""
    T = np.eye(4)
    T[:3, 3] = A[:3, 3] + s * (B[:3, 3] - A[:3, 3])
    rv = rotation_log(A[:3, :3].T @ B[:3, :3])
    angle = float(np.linalg.norm(rv))
    T[:3, :3] = A[:3, :3] @ (axis_angle_matrix(rv / angle, s * angle) if angle > 1e-12 else np.eye(3))
    return T


def _mean_rotation(Rs: list[np.ndarray]) -> np.ndarray:
    """The chordal mean of rotations (projection of their sum onto SO(3))."""
    U, _, Vt = np.linalg.svd(np.sum(Rs, axis=0))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


@dataclass
class OperatorCalibration:
    heading: float                 # rad, operator's facing direction about world z
    head_pitch: float              # rad, neutral head pitch (positive: looking down)
    wrists: dict                   # side -> 4x4 wrist pose (world) in the calibration pose

    @classmethod
    def from_samples(cls, samples: list[TrackingSample]) -> "OperatorCalibration":
        """Average a short stretch of samples (the operator holding the calibration pose).

        Only samples with both hands tracked count: an untracked hand's wrist pose is no pose."""
        good = [s for s in samples if s.is_finite() and all(s.tracked(side) for side in SIDES)]
        if not good:
            raise RetargetError("calibration needs at least one valid tracking sample with both hands "
                                "tracked")
        fwd = np.mean([s.head[:3, 0] for s in good], axis=0)
        heading, pitch = _heading_and_pitch(fwd)
        wrists = {}
        for side in SIDES:
            poses = [getattr(s, f"{side}_wrist") for s in good]
            T = np.eye(4)
            T[:3, :3] = _mean_rotation([P[:3, :3] for P in poses])
            T[:3, 3] = np.mean([P[:3, 3] for P in poses], axis=0)
            wrists[side] = T
        return cls(heading, pitch, wrists)

    def to_dict(self) -> dict:
        return {"heading": self.heading, "head_pitch": self.head_pitch,
                "wrists": {k: v.tolist() for k, v in self.wrists.items()}}

    @classmethod
    def from_dict(cls, raw: dict) -> "OperatorCalibration":
        try:
            wrists = {s: np.asarray(raw["wrists"][s], dtype=np.float64).reshape(4, 4) for s in SIDES}
            return cls(float(raw["heading"]), float(raw["head_pitch"]), wrists)
        except (KeyError, TypeError, ValueError) as exc:
            raise RetargetError(f"malformed calibration: {exc!r}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "OperatorCalibration":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise RetargetError(f"cannot read calibration {path}: {exc}") from None


@dataclass
class RetargetResult:
    q: np.ndarray                  # float32 [dim] joint target, embodiment layout
    ik: dict                       # side -> IKResult


class Retargeter:
    """``retarget(sample) -> RetargetResult``; call :meth:`calibrate` first."""

    def __init__(self, embodiment: Embodiment | None = None, config: RetargetConfig | None = None,
                 chains: dict[str, ArmChain] | None = None):
        self.emb = embodiment or load_embodiment("g1")
        self.config = config or RetargetConfig.load()
        self.chains = chains or load_arm_chains()
        self.hands = HandRetargeter.from_config(self.config.hands)
        self.default = self.emb.default_pose.astype(np.float64)
        self._slices = {side: self.emb.group(f"{side}_arm").slice for side in SIDES}
        # The calibration pose (the IK's rest posture) is the embodiment's default pose: the one
        # ready pose every episode starts from, recorded or run by a policy.
        self.pose0 = self.default.copy()
        self._hand_slices = {side: self.emb.group(f"{side}_hand").slice for side in SIDES}
        self._head = self.emb.group("head").slice
        self.ik = {side: ArmIK(self.chains[side], rest=self.pose0[self._slices[side]],
                               rot_weight=self.config.arm.rot_weight) for side in SIDES}
        self.home = {side: self.chains[side].fk(self.pose0[self._slices[side]]) for side in SIDES}
        self.calibration: OperatorCalibration | None = None
        self._q_arm = {side: self.pose0[self._slices[side]].copy() for side in SIDES}
        self._q_hand = {side: self.pose0[self._hand_slices[side]].copy() for side in SIDES}
        self._held = dict.fromkeys(SIDES, False)          # the hand was untracked: arm held
        self._rejoin: dict[str, tuple[float, np.ndarray] | None] = dict.fromkeys(SIDES)

    def calibrate(self, samples: list[TrackingSample] | OperatorCalibration) -> OperatorCalibration:
        cal = samples if isinstance(samples, OperatorCalibration) else OperatorCalibration.from_samples(samples)
        self.calibration = cal
        return cal

    def reset(self, q: np.ndarray | None = None) -> None:
        """Warm-start the arms from ``q`` (e.g. the measured pose), the calibration pose if None."""
        src = self.pose0 if q is None else np.asarray(q, dtype=np.float64)
        for side in SIDES:
            self._q_arm[side] = self.chains[side].clip(src[self._slices[side]])
            self._q_hand[side] = src[self._hand_slices[side]].copy()
            if self._rejoin[side] is not None:          # a rejoin restarts from the new pose
                self._rejoin[side] = (self._rejoin[side][0], self.chains[side].fk(self._q_arm[side]))

    def hand_target(self, sample: TrackingSample, side: str) -> np.ndarray:
        """The arm target for a tracked hand: :meth:`arm_target`, eased in from the held arm's
        hand pose for ``arm.rejoin_s`` after the hand was seen again."""
        target = self.arm_target(sample, side)
        if self._held[side]:                            # seen again: rejoin from where the arm is
            self._held[side] = False
            if self.config.arm.rejoin_s > 0:
                self._rejoin[side] = (sample.timestamp, self.chains[side].fk(self._q_arm[side]))
        rejoin = self._rejoin[side]
        if rejoin is None:
            return target
        s = (sample.timestamp - rejoin[0]) / self.config.arm.rejoin_s
        if s >= 1.0:
            self._rejoin[side] = None
            return target
        return _interpolate_pose(rejoin[1], target, _smoothstep(s))

    def arm_target(self, sample: TrackingSample, side: str) -> np.ndarray:
        """The robot hand pose (torso frame) that the sample's wrist asks for."""
        cal = self.calibration
        Rh = axis_angle_matrix([0, 0, 1], cal.heading)
        W, W0, E0 = getattr(sample, f"{side}_wrist"), cal.wrists[side], self.home[side]
        T = np.eye(4)
        T[:3, 3] = E0[:3, 3] + self.config.arm.motion_scale * (Rh.T @ (W[:3, 3] - W0[:3, 3]))
        T[:3, :3] = (Rh.T @ W[:3, :3] @ W0[:3, :3].T @ Rh) @ E0[:3, :3]
        return T

    def head_target(self, sample: TrackingSample) -> np.ndarray:
        cal = self.calibration
        Rh = axis_angle_matrix([0, 0, 1], cal.heading)
        yaw, pitch = _heading_and_pitch(Rh.T @ sample.head[:3, 0])
        d = self.default[self._head]
        return np.array([d[0] + self.config.head.yaw_gain * yaw,
                         d[1] + self.config.head.pitch_gain * (pitch - cal.head_pitch)])

    def __call__(self, sample: TrackingSample) -> RetargetResult | None:
        """The joint target for ``sample``; None for a sample with non-finite values.

        ``ik`` holds the tracked sides only: an untracked hand's arm and fingers hold."""
        if self.calibration is None:
            raise RetargetError("retargeting needs a calibration first (Retargeter.calibrate)")
        if not sample.is_finite():
            return None
        q = self.pose0.copy()
        results: dict[str, IKResult] = {}
        for side in SIDES:
            if sample.tracked(side):
                res = self.ik[side].solve(self.hand_target(sample, side), self._q_arm[side],
                                          max_iters=self.config.arm.max_iters,
                                          max_delta=self.config.arm.max_delta)
                self._q_arm[side] = res.q
                results[side] = res
                self._q_hand[side] = np.asarray(self.hands(getattr(sample, f"{side}_hand"), side), np.float64)
            else:
                self._held[side] = True
                self._rejoin[side] = None
            q[self._slices[side]] = self._q_arm[side]
            q[self._hand_slices[side]] = self._q_hand[side]
        q[self._head] = self.head_target(sample)
        return RetargetResult(self.emb.clip(q).astype(np.float32), results)
