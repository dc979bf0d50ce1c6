"""G1 arm and head-mount kinematics, loaded from ``configs/kinematics/*.yaml``.

The YAML files are the single source of the arm geometry (joint origins, axes, hand mount, taken
from Unitree's g1_29dof URDF) and of the head camera mount; joint limits come from the embodiment
(``configs/embodiment/g1.yaml``). Teleop's inverse kinematics and the simulated G1's MuJoCo model
both read the chains from here.

Conventions: URDF. A joint's origin ``xyz``/``rpy`` places the joint frame in its parent link's
frame (``R = Rz(yaw) Ry(pitch) Rx(roll)``); the joint rotates its child about ``axis`` given in the
joint frame. Poses are 4x4 homogeneous float64 matrices in the chain's base frame (``torso_link``:
x forward, y left, z up). The Jacobian is the geometric one at the end effector: rows 0:3 linear
velocity, rows 3:6 angular velocity, both in the base frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from lara_g1.core.config import ConfigModel, config_dataclass, config_path, load_config
from lara_g1.core.embodiment import Embodiment, load_embodiment
from lara_g1.core.errors import ConfigError


class KinematicsError(ConfigError):
    """A kinematics file that does not describe a valid chain."""


# ----------------------------------------------------------------------------- small SE(3) helpers
def rpy_matrix(rpy) -> np.ndarray:
    """URDF roll-pitch-yaw to a rotation matrix: Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def make_transform(xyz=(0.0, 0.0, 0.0), rpy=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rpy_matrix(rpy)
    T[:3, 3] = np.asarray(xyz, dtype=float)
    return T


def _skew(v: np.ndarray) -> np.ndarray:
    x, y, z = v
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def axis_angle_matrix(axis, angle: float) -> np.ndarray:
    """Rotation by ``angle`` about the unit ``axis`` (Rodrigues)."""
    K = _skew(np.asarray(axis, dtype=float))
    return np.eye(3) + np.sin(angle) * K + (1.0 - np.cos(angle)) * (K @ K)


def rotation_log(R: np.ndarray) -> np.ndarray:
    """The rotation vector (axis * angle, angle in [0, pi]) of a rotation matrix [..., 3, 3]."""
    R = np.asarray(R, dtype=float)
    trace = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2]
    angle = np.arccos(np.minimum(np.maximum((trace - 1.0) * 0.5, -1.0), 1.0))
    vee = np.empty(R.shape[:-1])
    vee[..., 0] = R[..., 2, 1] - R[..., 1, 2]
    vee[..., 1] = R[..., 0, 2] - R[..., 2, 0]
    vee[..., 2] = R[..., 1, 0] - R[..., 0, 1]
    sin_angle = np.sin(angle)
    small = angle < 1e-6
    scale = np.where(small, 0.5, angle / (2.0 * np.where(small, 1.0, sin_angle)))
    out = vee * scale[..., None]
    near_pi = angle > np.pi - 1e-4
    if np.any(near_pi):
        # Near pi the antisymmetric part vanishes: take the axis from the symmetric part.
        for idx in zip(*np.nonzero(near_pi)) if R.ndim > 2 else [()]:
            B = (R[idx] + np.eye(3)) * 0.5
            i = int(np.argmax(np.diag(B)))
            axis = B[:, i] / np.sqrt(max(B[i, i], 1e-12))
            if vee[idx] @ axis < 0:
                axis = -axis
            out[idx] = axis / np.linalg.norm(axis) * angle[idx]
    return out


def rotation_angle(R: np.ndarray) -> float:
    """The angle (rad) of a rotation matrix."""
    return float(np.arccos(np.clip((np.trace(R) - 1.0) * 0.5, -1.0, 1.0)))


# ----------------------------------------------------------------------------- chains
@dataclass(frozen=True)
class Joint:
    name: str              # the embodiment joint name (e.g. left_shoulder_pitch)
    urdf_name: str         # the joint's name in Unitree's URDF/MJCF (e.g. left_shoulder_pitch_joint)
    parent: str            # parent link name
    origin: np.ndarray     # 4x4, joint frame in the parent link frame
    axis: np.ndarray       # unit 3-vector in the joint frame
    xyz: tuple             # the origin as written in the file (for model generators)
    rpy: tuple


class ArmChain:
    """A serial chain of revolute joints from the base frame to an end-effector frame."""

    def __init__(self, side: str, joints: list[Joint], ee: np.ndarray, ee_name: str,
                 lower: np.ndarray, upper: np.ndarray, base_frame: str,
                 ee_xyz: tuple = (0.0, 0.0, 0.0), ee_rpy: tuple = (0.0, 0.0, 0.0)):
        self.side = side
        self.joints = tuple(joints)
        self.ee = np.asarray(ee, dtype=float)
        self.ee_name = ee_name
        self.ee_xyz, self.ee_rpy = tuple(ee_xyz), tuple(ee_rpy)
        self.base_frame = base_frame
        self.lower = np.asarray(lower, dtype=float)
        self.upper = np.asarray(upper, dtype=float)
        n = len(self.joints)
        # Per joint, origin @ R(axis, q) = A + sin(q) B + (1 - cos(q)) C, precomputed so that one
        # forward pass is a few vectorised ops plus n 4x4 products.
        self._A = np.stack([j.origin for j in self.joints])
        self._B = np.zeros((n, 4, 4))
        self._C = np.zeros((n, 4, 4))
        for i, j in enumerate(self.joints):
            K = _skew(j.axis)
            self._B[i, :3, :3] = j.origin[:3, :3] @ K
            self._C[i, :3, :3] = j.origin[:3, :3] @ (K @ K)
        self._axes = np.stack([j.axis for j in self.joints])

    @property
    def dof(self) -> int:
        return len(self.joints)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    def _check(self, q) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        if q.shape[-1:] != (self.dof,):
            raise ValueError(f"{self.side} arm: expected {self.dof} joint angles (last axis), "
                             f"got shape {q.shape}")
        return q

    def joint_frames(self, q) -> np.ndarray:
        """Frames of the joints' child links, [..., dof, 4, 4], in the base frame.

        ``q`` is [dof] or a batch [..., dof] (the IK runs several restarts as one batch).
        """
        q = self._check(q)
        s, c = np.sin(q)[..., None, None], (1.0 - np.cos(q))[..., None, None]
        local = self._A + s * self._B + c * self._C
        frames = np.empty_like(local)
        T = local[..., 0, :, :]
        frames[..., 0, :, :] = T
        for i in range(1, self.dof):
            T = T @ local[..., i, :, :]
            frames[..., i, :, :] = T
        return frames

    def fk(self, q) -> np.ndarray:
        """End-effector pose ([..., 4, 4]) in the base frame."""
        return self.joint_frames(q)[..., -1, :, :] @ self.ee

    def fk_and_jacobian(self, q) -> tuple[np.ndarray, np.ndarray]:
        """End-effector pose [..., 4, 4] and geometric Jacobian [..., 6, dof], from one pass."""
        frames = self.joint_frames(q)
        T = frames[..., -1, :, :] @ self.ee
        # Joint axes in the base frame ([..., 3, dof]) and the lever arms to the end effector.
        a = np.einsum("...nij,nj->...in", frames[..., :3, :3], self._axes)
        r = T[..., :3, 3, None] - np.swapaxes(frames[..., :3, 3], -1, -2)
        J = np.empty(a.shape[:-2] + (6, self.dof))
        J[..., 0, :] = a[..., 1, :] * r[..., 2, :] - a[..., 2, :] * r[..., 1, :]
        J[..., 1, :] = a[..., 2, :] * r[..., 0, :] - a[..., 0, :] * r[..., 2, :]
        J[..., 2, :] = a[..., 0, :] * r[..., 1, :] - a[..., 1, :] * r[..., 0, :]
        J[..., 3:, :] = a
        return T, J

    def jacobian(self, q) -> np.ndarray:
        return self.fk_and_jacobian(q)[1]

    def clip(self, q) -> np.ndarray:
        return np.clip(np.asarray(q, dtype=float), self.lower, self.upper)

    def within_limits(self, q, tol: float = 1e-9) -> bool:
        q = np.asarray(q, dtype=float)
        return bool(np.all(q >= self.lower - tol) and np.all(q <= self.upper + tol))


@dataclass(frozen=True)
class HeadMount:
    """The 2-DoF pan/tilt head mount and the camera on it (frames in the torso frame)."""

    yaw: Joint
    pitch: Joint
    camera: np.ndarray        # 4x4, camera (link convention: x = viewing direction) on the pitch link
    camera_name: str
    camera_xyz: tuple
    camera_rpy: tuple
    lower: np.ndarray         # [yaw, pitch] limits from the embodiment
    upper: np.ndarray

    def camera_pose(self, yaw: float, pitch: float) -> np.ndarray:
        """Camera pose in the torso frame, link convention (x forward along the optical axis, z up)."""
        T = self.yaw.origin @ _rot4(self.yaw.axis, yaw)
        T = T @ self.pitch.origin @ _rot4(self.pitch.axis, pitch)
        return T @ self.camera


# Link convention (x = optical axis, y left, z up) to the OpenCV camera convention (z = optical
# axis, x right, y down) and to MuJoCo's camera convention (looks along -z, y up, x right):
# pose_cv = pose_link @ LINK_TO_OPENCV, pose_mujoco = pose_link @ LINK_TO_MUJOCO.
LINK_TO_OPENCV = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0],
                           [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
LINK_TO_MUJOCO = np.array([[0.0, 0.0, -1.0, 0.0], [-1.0, 0.0, 0.0, 0.0],
                           [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def _rot4(axis, angle) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = axis_angle_matrix(axis, angle)
    return T


# ----------------------------------------------------------------------------- loading
KIND = "kinematics"
Vec3 = tuple[float, float, float]


@config_dataclass
class _JointSpec(ConfigModel):
    """A URDF joint: origin ``xyz``/``rpy`` in the parent link frame, rotation ``axis``."""

    joint: str                 # the embodiment joint name
    urdf: str | None = None    # the URDF's name (default: ``joint``)
    parent: str = ""
    xyz: Vec3
    rpy: Vec3
    axis: Vec3

    @model_validator(mode="after")
    def _axis_is_not_zero(self) -> _JointSpec:
        if np.linalg.norm(self.axis) < 1e-9:
            raise ValueError(f"joint {self.joint!r} has a zero axis")
        return self

    def build(self) -> Joint:
        axis = np.asarray(self.axis)
        return Joint(name=self.joint, urdf_name=self.urdf or self.joint, parent=self.parent,
                     origin=make_transform(self.xyz, self.rpy), axis=axis / np.linalg.norm(axis),
                     xyz=self.xyz, rpy=self.rpy)


@config_dataclass
class _Frame(ConfigModel):
    """A fixed frame on a link (an end effector, a camera, the torso in the pelvis)."""

    name: str | None = None
    parent: str = ""
    xyz: Vec3
    rpy: Vec3


@config_dataclass
class _ArmSpec(ConfigModel):
    group: str                 # the embodiment joint group; ``joints`` are its joints, in order
    joints: list[_JointSpec]
    ee: _Frame


@config_dataclass
class _Arms(ConfigModel):
    left: _ArmSpec
    right: _ArmSpec


@config_dataclass
class _ArmsFile(ConfigModel):
    """``configs/kinematics/g1_arms.yaml``."""

    config_error = KinematicsError

    name: str = ""
    base_frame: str = "torso_link"
    torso_in_pelvis: _Frame | None = None
    arms: _Arms


@config_dataclass
class _HeadFile(ConfigModel):
    """``configs/kinematics/g1_head.yaml``."""

    config_error = KinematicsError

    base_frame: str = "torso_link"
    joints: list[_JointSpec] = Field(min_length=2, max_length=2)   # yaw, pitch
    camera: _Frame


def load_arm_chains(path: str | Path | None = None, embodiment: str = "g1") -> dict[str, ArmChain]:
    """The G1 arm chains, ``{"left": ArmChain, "right": ArmChain}``, from ``configs/kinematics``."""
    if path is None:
        return dict(_bundled_arm_chains(embodiment))
    return _arm_chains(Path(path), load_embodiment(embodiment))


@lru_cache(maxsize=None)
def _bundled_arm_chains(embodiment: str) -> tuple:
    chains = _arm_chains(config_path("kinematics/g1_arms.yaml"), load_embodiment(embodiment))
    return tuple(chains.items())


def _arm_chains(path: Path, embodiment: Embodiment) -> dict[str, ArmChain]:
    """An arms file, validated, and checked against the embodiment."""
    spec = load_config(_ArmsFile, path, kind=KIND)
    chains = {}
    for side in ("left", "right"):
        arm: _ArmSpec = getattr(spec.arms, side)
        where = f"{path}: arms.{side}"
        try:
            group = embodiment.group(arm.group)
        except KeyError as exc:
            raise KinematicsError(f"{where}.group: {exc.args[0]}") from None
        joints = [j.build() for j in arm.joints]
        expected = list(embodiment.joint_names[group.slice])
        got = [j.name for j in joints]
        if got != expected:
            raise KinematicsError(f"{where}.joints: {got} must be the embodiment's "
                                  f"{group.name} joints in order: {expected}")
        chains[side] = ArmChain(
            side=side, joints=joints, ee=make_transform(arm.ee.xyz, arm.ee.rpy),
            ee_name=arm.ee.name or f"{side}_ee",
            lower=embodiment.lower[group.slice].astype(float),
            upper=embodiment.upper[group.slice].astype(float),
            base_frame=spec.base_frame, ee_xyz=arm.ee.xyz, ee_rpy=arm.ee.rpy)
    return chains


def torso_in_pelvis(path: str | Path | None = None) -> np.ndarray:
    """The torso_link pose in the pelvis frame at zero waist angles (for whole-body models)."""
    p = Path(path) if path is not None else config_path("kinematics/g1_arms.yaml")
    tp = load_config(_ArmsFile, p, kind=KIND).torso_in_pelvis
    if tp is None:
        raise KinematicsError(f"{p}: torso_in_pelvis: missing (xyz and rpy)")
    return make_transform(tp.xyz, tp.rpy)


def load_head_mount(path: str | Path | None = None, embodiment: str = "g1") -> HeadMount:
    """The head pan/tilt mount and camera from ``configs/kinematics/g1_head.yaml``."""
    p = Path(path) if path is not None else config_path("kinematics/g1_head.yaml")
    spec = load_config(_HeadFile, p, kind=KIND)
    emb = load_embodiment(embodiment)
    yaw, pitch = (j.build() for j in spec.joints)
    group = emb.group("head")
    expected = list(emb.joint_names[group.slice])
    if [yaw.name, pitch.name] != expected:
        raise KinematicsError(f"{p}: joints: head joints must be {expected}, got {[yaw.name, pitch.name]}")
    cam = spec.camera
    return HeadMount(yaw=yaw, pitch=pitch, camera=make_transform(cam.xyz, cam.rpy),
                     camera_name=cam.name or "head", camera_xyz=cam.xyz, camera_rpy=cam.rpy,
                     lower=emb.lower[group.slice].astype(float),
                     upper=emb.upper[group.slice].astype(float))


@config_dataclass
class InspireActuator(ConfigModel):
    joint: str      # pinky, ring, middle, index, thumb_bend, thumb_rotation
    open: float     # joint angle (rad) at normalised value 1
    closed: float   # joint angle (rad) at normalised value 0

    @model_validator(mode="after")
    def _has_a_range(self) -> InspireActuator:
        if self.open == self.closed:
            raise ValueError(f"actuator {self.joint!r} has open == closed")
        return self

    def normalise(self, angle):
        """Joint angle (rad) -> 0..1 (1 = open), clipped."""
        return np.clip((self.closed - np.asarray(angle, dtype=float)) / (self.closed - self.open), 0.0, 1.0)

    def angle(self, value):
        """0..1 (1 = open) -> joint angle (rad)."""
        return self.closed - np.clip(np.asarray(value, dtype=float), 0.0, 1.0) * (self.closed - self.open)


@dataclass(frozen=True)
class InspireHand:
    actuators: tuple[InspireActuator, ...]   # in the embodiment's hand order
    geometry: dict                           # palm / fingers / thumb: the sim's simplified model


@config_dataclass
class _InspireFile(ConfigModel):
    """``configs/kinematics/inspire_hand.yaml``: the actuators, and the sim's finger geometry
    (read by :mod:`lara_g1.robot.sim`)."""

    config_error = KinematicsError

    actuators: tuple[InspireActuator, ...]
    palm: dict[str, Any] | None = None
    fingers: list[dict[str, Any]] | None = None
    thumb: dict[str, Any] | None = None


def load_inspire_hand(path: str | Path | None = None, embodiment: str = "g1") -> InspireHand:
    """Inspire actuator ranges (and the sim's simplified finger geometry), in embodiment order."""
    p = Path(path) if path is not None else config_path("kinematics/inspire_hand.yaml")
    spec = load_config(_InspireFile, p, kind=KIND)
    emb = load_embodiment(embodiment)
    group = emb.group("left_hand")
    expected = [n[len("left_hand_"):] for n in emb.joint_names[group.slice]]
    got = [a.joint for a in spec.actuators]
    if got != expected:
        raise KinematicsError(f"{p}: actuators must be {expected} in order, got {got}")
    geometry = {k: getattr(spec, k) for k in ("palm", "fingers", "thumb") if getattr(spec, k) is not None}
    return InspireHand(actuators=spec.actuators, geometry=geometry)
