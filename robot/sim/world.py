"""The simulated G1's physics: joint tracking, Inspire hands, head, grasping and task stages.

:class:`SimWorld` knows nothing about DDS; :mod:`lara_g1.robot.sim.bridge` feeds it the received
commands and publishes what it measures. Command semantics follow the robot:

- arms track ``q`` with the received per-joint kp/kd (MuJoCo position actuators whose gains
  are set every step, implicit integration); the arm_sdk blend weight ``w`` mixes the command
  with what the locomotion controller would hold (the default arm pose, kp 60 / kd 1.5):
  ``q* = w q + (1 - w) q_default``, same for the gains, so ``w = 0`` means the arms hold the
  default pose whatever ``q`` says;
- hands: 6 values per hand, 0..1 (1 = open), mapped through the Inspire actuator ranges onto
  the finger joints;
- head: yaw and pitch targets.

Grasping is simplified, honestly: when a hand closes (mean closure of the four fingers and the
thumb bend crosses 0.5) while a graspable object's centre is within reach of the hand's grasp
point, the object is attached rigidly to the palm (its free joint is driven kinematically) until
the hand opens again (closure below 0.3); then it is dynamic again and falls. Friction grasps
between capsule fingers are not simulated.
"""
from __future__ import annotations

import mujoco
import numpy as np

from lara_g1.core.embodiment import Embodiment, load_embodiment
from lara_g1.robot.kinematics import load_inspire_hand
from lara_g1.robot.sim.model import build_mjcf, hand_joint_names
from lara_g1.robot.sim.tasks import Task, make_task

HOLD_KP, HOLD_KD = 60.0, 1.5     # what the locomotion controller holds the arms with at weight 0
CLOSE_AT, OPEN_AT = 0.5, 0.3     # hand closure thresholds for attach / release
GRASP_REACH = 0.045              # grasp point to object surface distance that still grasps (m)
CLOSURE_FINGERS = ("pinky", "ring", "middle", "index", "thumb_bend")


class SimWorld:
    def __init__(self, task: str | Task = "pick_place", seed: int = 0, embodiment: str = "g1"):
        self.emb: Embodiment = load_embodiment(embodiment)
        self.task = make_task(task) if isinstance(task, str) else task
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(self.task.objects_xml(), embodiment))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.dt = float(m.opt.timestep)
        self.arm_idx = np.r_[np.arange(*self.emb.group("left_arm").slice.indices(self.emb.dim)),
                             np.arange(*self.emb.group("right_arm").slice.indices(self.emb.dim))]
        arm_names = [self.emb.joint_names[i] for i in self.arm_idx]
        self._arm_act = np.array([m.actuator(n).id for n in arm_names])
        self._arm_qadr = np.array([m.joint(n).qposadr[0] for n in arm_names])
        self._arm_vadr = np.array([m.joint(n).dofadr[0] for n in arm_names])
        head_names = self.emb.joint_names[self.emb.group("head").slice]
        self.head_idx = np.arange(*self.emb.group("head").slice.indices(self.emb.dim))
        self._head_act = np.array([m.actuator(n).id for n in head_names])
        self._head_qadr = np.array([m.joint(n).qposadr[0] for n in head_names])
        self._head_vadr = np.array([m.joint(n).dofadr[0] for n in head_names])
        self.inspire = load_inspire_hand(embodiment=embodiment)
        ratios = {f["joint"]: float(f["distal_ratio"]) for f in self.inspire.geometry["fingers"]}
        ratios["thumb_bend"] = float(self.inspire.geometry["thumb"]["distal_ratio"])
        self._hand: dict[str, list[tuple[list[int], list[float], int]]] = {}
        for side in ("left", "right"):
            acts = []
            for a, (name, joints) in zip(self.inspire.actuators, hand_joint_names(side).items()):
                if name != a.joint:
                    raise ValueError(f"Inspire actuator order {a.joint!r} does not match the sim hand's {name!r}")
                gains = [1.0, ratios.get(name, 1.0)][:len(joints)]
                acts.append(([m.actuator(j).id for j in joints], gains, m.joint(joints[0]).qposadr[0]))
            self._hand[side] = acts
        # Vectorised hand read-out: proximal joint of each actuator, its open/closed angles.
        self._hand_qadr = {side: np.array([qadr for _, _, qadr in acts]) for side, acts in self._hand.items()}
        self._open_angle = np.array([a.open for a in self.inspire.actuators])
        self._closed_angle = np.array([a.closed for a in self.inspire.actuators])
        names = [a.joint for a in self.inspire.actuators]
        self._closure_idx = np.array([names.index(f) for f in CLOSURE_FINGERS])
        self._grasp_site = {s: m.site(f"{s}_grasp").id for s in ("left", "right")}
        self._objects = {name: (m.joint(name).qposadr[0], m.joint(name).dofadr[0])
                         for name in self.task.graspable}
        self.attached: dict[str, tuple[str, np.ndarray]] = {}  # object -> (side, object-in-site 4x4)
        self._closed = {"left": False, "right": False}
        self.reset(seed)

    # ------------------------------------------------------------------ reset / commands
    def reset(self, seed: int = 0) -> None:
        mujoco.mj_resetData(self.model, self.data)
        self.seed = int(seed)
        self.attached.clear()
        self._closed = {"left": False, "right": False}
        default = self.emb.default_pose
        self.data.qpos[self._arm_qadr] = default[self.arm_idx]
        self.data.qpos[self._head_qadr] = default[self.head_idx]
        self.arm_q = default[self.arm_idx].astype(np.float64)
        self.arm_kp = np.full(len(self.arm_idx), HOLD_KP)
        self.arm_kd = np.full(len(self.arm_idx), HOLD_KD)
        self.blend = 0.0
        self.hand_target = {s: np.ones(6) for s in ("left", "right")}
        self.head_target = default[self.head_idx].astype(np.float64)
        for side in ("left", "right"):
            for (_acts, _gains, qadr), a in zip(self._hand[side], self.inspire.actuators):
                self.data.qpos[qadr] = a.angle(1.0)
        self.task.reset_stages()
        self.task.place(self, np.random.default_rng(self.seed))
        self._apply_controls()
        mujoco.mj_forward(self.model, self.data)

    def set_arm_command(self, q: np.ndarray, kp: np.ndarray, kd: np.ndarray, blend: float) -> None:
        """Arm targets in embodiment arm order (left 7, right 7) with gains and the blend weight."""
        self.arm_q, self.arm_kp, self.arm_kd = (np.asarray(v, dtype=np.float64) for v in (q, kp, kd))
        self.blend = float(np.clip(blend, 0.0, 1.0))

    def set_hand_targets(self, left: np.ndarray, right: np.ndarray) -> None:
        self.hand_target = {"left": np.clip(np.asarray(left, float), 0, 1),
                            "right": np.clip(np.asarray(right, float), 0, 1)}

    def set_head_target(self, q: np.ndarray) -> None:
        lo, hi = self.emb.lower[self.head_idx], self.emb.upper[self.head_idx]
        self.head_target = np.clip(np.asarray(q, float), lo, hi)

    def _apply_controls(self) -> None:
        m, d, w = self.model, self.data, self.blend
        default = self.emb.default_pose[self.arm_idx]
        q = w * self.arm_q + (1.0 - w) * default
        kp = w * self.arm_kp + (1.0 - w) * HOLD_KP
        kd = w * self.arm_kd + (1.0 - w) * HOLD_KD
        m.actuator_gainprm[self._arm_act, 0] = kp
        m.actuator_biasprm[self._arm_act, 1] = -kp
        m.actuator_biasprm[self._arm_act, 2] = -kd
        d.ctrl[self._arm_act] = q
        for side in ("left", "right"):
            for (acts, gains, _), a, v in zip(self._hand[side], self.inspire.actuators, self.hand_target[side]):
                angle = float(a.angle(v))
                for act, g in zip(acts, gains):
                    d.ctrl[act] = angle * g
        d.ctrl[self._head_act] = self.head_target

    # ------------------------------------------------------------------ stepping
    def step(self, n: int = 1) -> None:
        self._apply_controls()
        for _ in range(n):
            self._update_grasps()
            self._drive_attached()
            mujoco.mj_step(self.model, self.data)
        self._drive_attached()
        self.task.evaluate(self)

    @property
    def time(self) -> float:
        return float(self.data.time)

    # ------------------------------------------------------------------ measurements
    def hand_open(self, side: str) -> np.ndarray:
        """Measured 0..1 (1 = open) per actuator, from the proximal joint angles (the Inspire
        normalisation of robot.kinematics.InspireActuator, vectorised: it runs every step)."""
        angle = self.data.qpos[self._hand_qadr[side]]
        value = (self._closed_angle - angle) / (self._closed_angle - self._open_angle)
        return np.clip(value, 0.0, 1.0).astype(np.float32)

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(q, dq) in the embodiment layout (hands 0..1 with dq 0)."""
        q = np.zeros(self.emb.dim, dtype=np.float32)
        dq = np.zeros(self.emb.dim, dtype=np.float32)
        q[self.arm_idx] = self.data.qpos[self._arm_qadr]
        dq[self.arm_idx] = self.data.qvel[self._arm_vadr]
        q[self.emb.group("left_hand").slice] = self.hand_open("left")
        q[self.emb.group("right_hand").slice] = self.hand_open("right")
        q[self.head_idx] = self.data.qpos[self._head_qadr]
        dq[self.head_idx] = self.data.qvel[self._head_vadr]
        return q, dq

    def set_joint_positions(self, q: np.ndarray) -> None:
        """Teleport the arms and head to ``q`` (embodiment layout), e.g. for tests."""
        q = np.asarray(q, dtype=np.float64)
        self.data.qpos[self._arm_qadr] = q[self.arm_idx]
        self.data.qvel[self._arm_vadr] = 0.0
        self.data.qpos[self._head_qadr] = q[self.head_idx]
        mujoco.mj_forward(self.model, self.data)

    def closure(self, side: str) -> float:
        return float(1.0 - self.hand_open(side)[self._closure_idx].mean())

    def grasp_point(self, side: str) -> np.ndarray:
        return self.data.site_xpos[self._grasp_site[side]].copy()

    # ------------------------------------------------------------------ objects
    def free_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        qadr = self.model.joint(name).qposadr[0]
        return self.data.qpos[qadr:qadr + 3].copy(), self.data.qpos[qadr + 3:qadr + 7].copy()

    def set_free_pose(self, name: str, pos, quat=(1.0, 0.0, 0.0, 0.0)) -> None:
        qadr, vadr = self.model.joint(name).qposadr[0], self.model.joint(name).dofadr[0]
        self.data.qpos[qadr:qadr + 3] = pos
        self.data.qpos[qadr + 3:qadr + 7] = quat
        self.data.qvel[vadr:vadr + 6] = 0.0

    def static_body_pos(self, name: str) -> np.ndarray:
        return self.model.body(name).pos.copy()

    def set_static_body_pos(self, name: str, pos) -> None:
        self.model.body(name).pos[:] = pos

    def holder(self, obj: str) -> str | None:
        """The hand ("left"/"right") holding ``obj``, or None."""
        held = self.attached.get(obj)
        return held[0] if held else None

    def _site_pose(self, side: str) -> np.ndarray:
        sid = self._grasp_site[side]
        T = np.eye(4)
        T[:3, :3] = self.data.site_xmat[sid].reshape(3, 3)
        T[:3, 3] = self.data.site_xpos[sid]
        return T

    def _object_pose(self, name: str) -> np.ndarray:
        pos, quat = self.free_pose(name)
        T = np.eye(4)
        R = np.empty(9)
        mujoco.mju_quat2Mat(R, quat)
        T[:3, :3], T[:3, 3] = R.reshape(3, 3), pos
        return T

    def _update_grasps(self) -> None:
        for side in ("left", "right"):
            c = self.closure(side)
            if not self._closed[side] and c > CLOSE_AT:
                self._closed[side] = True
                self._try_attach(side)
            elif self._closed[side] and c < OPEN_AT:
                self._closed[side] = False
                for obj in [o for o, (s, _) in self.attached.items() if s == side]:
                    del self.attached[obj]

    def _try_attach(self, side: str) -> None:
        point = self.grasp_point(side)
        best, best_d = None, np.inf
        for obj, radius in self.task.graspable.items():
            if obj in self.attached:
                continue
            d = float(np.linalg.norm(self.free_pose(obj)[0] - point)) - radius
            if d < GRASP_REACH and d < best_d:
                best, best_d = obj, d
        if best is not None:
            self.attached[best] = (side, np.linalg.inv(self._site_pose(side)) @ self._object_pose(best))

    def _drive_attached(self) -> None:
        if not self.attached:
            return
        mujoco.mj_kinematics(self.model, self.data)
        for obj, (side, rel) in self.attached.items():
            T = self._site_pose(side) @ rel
            quat = np.empty(4)
            mujoco.mju_mat2Quat(quat, np.ascontiguousarray(T[:3, :3]).reshape(9))
            self.set_free_pose(obj, T[:3, 3], quat)

    def object_poses(self) -> dict[str, dict[str, list[float]]]:
        """World poses of the task's bodies: ``{name: {"pos": [x, y, z], "quat": [w, x, y, z]}}``
        (privileged information, e.g. for a scripted expert; a policy sees only the camera)."""
        mujoco.mj_kinematics(self.model, self.data)
        return {name: {"pos": self.data.xpos[self.model.body(name).id].tolist(),
                       "quat": self.data.xquat[self.model.body(name).id].tolist()}
                for name in self.task.objects}

    def status(self) -> dict:
        return {"task": self.task.name, "seed": self.seed, "t": self.time,
                "stages": dict(self.task.stages),
                "held": {obj: side for obj, (side, _) in self.attached.items()},
                "objects": self.object_poses()}
