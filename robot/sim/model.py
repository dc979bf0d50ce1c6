"""The simulated G1's MuJoCo model (MJCF), generated from the kinematics files.

Geometry comes from ``robot.kinematics`` only (arm chains, head mount, Inspire hand ranges and
simplified finger geometry); joint limits come from the embodiment (``configs/embodiment/g1.yaml``,
Unitree's g1_29dof limits). Nothing geometric is repeated here except the scene furniture and
the task objects. Simplifications, stated plainly:

- the torso is fixed in the world (arm_sdk leaves legs and waist to the locomotion controller);
- links are capsules between joint origins with plausible masses, visual only: the robot does
  not collide with anything (grasping is a kinematic attach, see ``robot.sim.world``);
- each Inspire finger is two hinged capsules; the distal joint follows the proximal one at the
  finger's ``distal_ratio``; fingers flex towards the palm normal (-z of the hand frame).
"""
from __future__ import annotations

import mujoco
import numpy as np

from lara_g1.core.embodiment import Embodiment, load_embodiment
from lara_g1.robot.kinematics import LINK_TO_MUJOCO, load_arm_chains, load_head_mount, load_inspire_hand, make_transform

TORSO_HEIGHT = 0.80          # torso_link above the floor (G1 standing: pelvis ~0.75 m)
TABLE_TOP = -0.05            # table surface in the torso frame (a 0.75 m table)
TABLE_CENTER_X = 0.50
TABLE_SIZE = (0.25, 0.45)    # half extents x, y
CAMERA_FOVY = 65.0           # D455 colour: 90 x 65 deg
ARM_LINK_MASS = (1.0, 0.6, 0.8, 0.6, 0.4, 0.2, 0.3)  # per arm joint's child link, kg (approximate)


def _quat(R: np.ndarray) -> str:
    q = np.empty(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R, dtype=float).reshape(9))
    return " ".join(f"{v:.9g}" for v in q)


def _vec(v) -> str:
    return " ".join(f"{float(x):.9g}" for x in v)


def _pose_attrs(T: np.ndarray) -> str:
    return f'pos="{_vec(T[:3, 3])}" quat="{_quat(T[:3, :3])}"'


def _link_name(joint_urdf: str) -> str:
    return joint_urdf[:-len("_joint")] + "_link" if joint_urdf.endswith("_joint") else joint_urdf + "_link"


def hand_joint_names(side: str) -> dict[str, list[str]]:
    """MuJoCo joints per Inspire actuator (proximal first): {actuator: [joint, ...]}."""
    out = {f: [f"{side}_hand_{f}_prox", f"{side}_hand_{f}_dist"] for f in ("pinky", "ring", "middle", "index")}
    out["thumb_bend"] = [f"{side}_hand_thumb_bend_prox", f"{side}_hand_thumb_bend_dist"]
    out["thumb_rotation"] = [f"{side}_hand_thumb_rotation"]
    return out


def grasp_site_offset() -> np.ndarray:
    """The hand's grasp point in its end-effector (palm) frame: just past the palm's front edge,
    3 cm out on the palm side, where the closing fingers meet (the sim attaches objects there)."""
    palm = load_inspire_hand().geometry["palm"]
    return np.array([float(palm["length"]) + 0.02, 0.0, -float(palm["thickness"]) / 2 - 0.03])


def _hand_xml(side: str, ee: np.ndarray, ee_name: str) -> str:
    hand = load_inspire_hand()
    geo = hand.geometry
    mirror = 1.0 if side == "left" else -1.0
    acts = {a.joint: a for a in hand.actuators}
    palm = geo["palm"]
    L, W, Th = float(palm["length"]), float(palm["width"]), float(palm["thickness"])
    vis = 'contype="0" conaffinity="0" group="1"'
    parts = [f'<body name="{ee_name}" {_pose_attrs(ee)}>',
             f'<geom type="box" size="{L / 2} {W / 2} {Th / 2}" pos="{L / 2} 0 0" mass="0.3" '
             f'rgba="0.25 0.25 0.28 1" {vis}/>',
             f'<site name="{side}_grasp" pos="{_vec(grasp_site_offset())}" size="0.01" rgba="0 1 0 0.3"/>']

    def finger(name: str, base, prox: float, dist: float, axis: str, rng: tuple[float, float],
               direction: str, ratio: float) -> None:
        lo, hi = sorted(rng)
        parts.append(f'<body name="{side}_hand_{name}_prox_link" pos="{_vec(base)}">'
                     f'<joint name="{side}_hand_{name}_prox" axis="{axis}" range="{lo} {hi}" damping="0.05" armature="0.001"/>'
                     f'<geom type="capsule" fromto="0 0 0 {direction.format(l=prox)}" size="0.008" mass="0.02" '
                     f'rgba="0.8 0.8 0.82 1" {vis}/>'
                     f'<body name="{side}_hand_{name}_dist_link" pos="{direction.format(l=prox)}">'
                     f'<joint name="{side}_hand_{name}_dist" axis="{axis}" range="{lo * ratio} {hi * ratio}" damping="0.05" armature="0.001"/>'
                     f'<geom type="capsule" fromto="0 0 0 {direction.format(l=dist)}" size="0.007" mass="0.015" '
                     f'rgba="0.8 0.8 0.82 1" {vis}/></body></body>')

    for f in geo["fingers"]:
        a = acts[f["joint"]]
        base = np.array(f["base"], dtype=float) * [1.0, mirror, 1.0]
        finger(f["joint"], base, float(f["proximal"]), float(f["distal"]), "0 1 0", (a.open, a.closed),
               "{l} 0 0", float(f["distal_ratio"]))
    th = geo["thumb"]
    rot = acts["thumb_rotation"]
    base = np.array(th["base"], dtype=float) * [1.0, mirror, 1.0]
    # Thumb: rotation swings it under the palm about the hand's x axis, bend curls it.
    parts.append(f'<body name="{side}_hand_thumb_base" pos="{_vec(base)}">'
                 f'<joint name="{side}_hand_thumb_rotation" axis="{mirror} 0 0" range="{min(rot.open, rot.closed)} '
                 f'{max(rot.open, rot.closed)}" damping="0.05" armature="0.001"/>'
                 f'<geom type="sphere" size="0.01" mass="0.02" rgba="0.8 0.8 0.82 1" {vis}/>')
    bend = acts["thumb_bend"]
    finger("thumb_bend", (0.0, 0.0, 0.0), float(th["proximal"]), float(th["distal"]), f"0 0 {-mirror}",
           (bend.open, bend.closed), "0 " + ("{l}" if side == "left" else "-{l}") + " 0",
           float(th["distal_ratio"]))
    parts.append("</body></body>")
    return "".join(parts)


def _arm_xml(side: str) -> str:
    chain = load_arm_chains()[side]
    joints = chain.joints
    parts, depth = [], 0
    for i, j in enumerate(joints):
        nxt = joints[i + 1].xyz if i + 1 < len(joints) else chain.ee_xyz
        parts.append(f'<body name="{_link_name(j.urdf_name)}" {_pose_attrs(make_transform(j.xyz, j.rpy))}>'
                     f'<joint name="{j.name}" axis="{_vec(j.axis)}" range="{chain.lower[i]} {chain.upper[i]}" '
                     f'damping="0.5" armature="0.02"/>'
                     f'<geom type="capsule" fromto="0 0 0 {_vec(nxt)}" size="{0.035 if i < 4 else 0.028}" '
                     f'mass="{ARM_LINK_MASS[i]}" rgba="0.55 0.57 0.6 1" contype="0" conaffinity="0" group="1"/>')
        depth += 1
    parts.append(_hand_xml(side, chain.ee, chain.ee_name))
    parts.append("</body>" * depth)
    return "".join(parts)


def _head_xml() -> str:
    head = load_head_mount()
    cam = head.camera @ LINK_TO_MUJOCO
    return (f'<body name="head_yaw_link" {_pose_attrs(head.yaw.origin)}>'
            f'<joint name="{head.yaw.name}" axis="{_vec(head.yaw.axis)}" range="{head.lower[0]} {head.upper[0]}" damping="0.2"/>'
            f'<geom type="cylinder" size="0.02 0.015" mass="0.1" rgba="0.2 0.2 0.2 1" contype="0" conaffinity="0"/>'
            f'<body name="head_pitch_link" {_pose_attrs(head.pitch.origin)}>'
            f'<joint name="{head.pitch.name}" axis="{_vec(head.pitch.axis)}" range="{head.lower[1]} {head.upper[1]}" damping="0.2"/>'
            f'<geom type="box" size="0.013 0.062 0.013" pos="0.03 0 0" mass="0.4" rgba="0.1 0.1 0.1 1" contype="0" conaffinity="0"/>'
            f'<camera name="{head.camera_name}" {_pose_attrs(cam)} fovy="{CAMERA_FOVY}"/>'
            f'</body></body>')


def _actuators_xml(emb: Embodiment) -> str:
    """Position actuators; the arm gains are overwritten every step from the received kp/kd."""
    out = []
    for side in ("left", "right"):
        for name in emb.joint_names[emb.group(f"{side}_arm").slice]:
            out.append(f'<position name="{name}" joint="{name}" kp="60" kv="1.5"/>')
    for side in ("left", "right"):
        for joints in hand_joint_names(side).values():
            for jn in joints:
                out.append(f'<position name="{jn}" joint="{jn}" kp="2" kv="0.05"/>')
    for name in emb.joint_names[emb.group("head").slice]:
        out.append(f'<position name="{name}" joint="{name}" kp="20" kv="1"/>')
    return "".join(out)


def build_mjcf(objects_xml: str = "", embodiment: str = "g1") -> str:
    """The full scene: floor, lights, table, the fixed-torso G1 upper body, and ``objects_xml``
    (task bodies in the torso frame, from ``robot.sim.tasks``)."""
    emb = load_embodiment(embodiment)
    tx, ty = TABLE_SIZE
    # Rendering is software (EGL + Mesa) on GPU-less machines, and the head camera must keep up
    # with the policy's 30 fps beside physics and the robot process on 2 cores: no shadow pass
    # and no multisampling (38 -> 10 ms per 224x224 frame on one core).
    return f"""<mujoco model="lara_g1_upper_body">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.002" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual><global offwidth="1280" offheight="960"/><quality offsamples="0"/></visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.75 0.78 0.82" rgb2="0.35 0.37 0.4" width="64" height="64"/>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.32 0.34 0.36" rgb2="0.28 0.3 0.32" width="256" height="256"/>
    <material name="grid" texture="grid" texrepeat="8 8"/>
    <material name="wood" rgba="0.62 0.47 0.33 1"/>
  </asset>
  <worldbody>
    <light pos="0.4 0 2.5" dir="0 0 -1" diffuse="0.8 0.8 0.8" castshadow="false"/>
    <light pos="-0.5 0.8 2.0" dir="0.4 -0.4 -1" diffuse="0.3 0.3 0.3" castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.1" material="grid"/>
    <body name="torso_link" pos="0 0 {TORSO_HEIGHT}">
      <geom type="box" size="0.07 0.11 0.16" pos="-0.01 0 0.16" mass="8" rgba="0.2 0.2 0.22 1" contype="0" conaffinity="0"/>
      {_head_xml()}
      {_arm_xml("left")}
      {_arm_xml("right")}
    </body>
    <body name="table" pos="{TABLE_CENTER_X} 0 {TORSO_HEIGHT + TABLE_TOP}">
      <geom name="table_top" type="box" size="{tx} {ty} 0.02" pos="0 0 -0.02" material="wood" friction="1 0.01 0.001"/>
      <geom type="box" size="0.02 0.02 {(TORSO_HEIGHT + TABLE_TOP) / 2}" pos="{tx - 0.03} {ty - 0.03} {-(TORSO_HEIGHT + TABLE_TOP) / 2}" material="wood" contype="0" conaffinity="0"/>
      <geom type="box" size="0.02 0.02 {(TORSO_HEIGHT + TABLE_TOP) / 2}" pos="{tx - 0.03} {-ty + 0.03} {-(TORSO_HEIGHT + TABLE_TOP) / 2}" material="wood" contype="0" conaffinity="0"/>
      <geom type="box" size="0.02 0.02 {(TORSO_HEIGHT + TABLE_TOP) / 2}" pos="{-tx + 0.03} {ty - 0.03} {-(TORSO_HEIGHT + TABLE_TOP) / 2}" material="wood" contype="0" conaffinity="0"/>
      <geom type="box" size="0.02 0.02 {(TORSO_HEIGHT + TABLE_TOP) / 2}" pos="{-tx + 0.03} {-ty + 0.03} {-(TORSO_HEIGHT + TABLE_TOP) / 2}" material="wood" contype="0" conaffinity="0"/>
    </body>
    {objects_xml}
  </worldbody>
  <actuator>{_actuators_xml(emb)}</actuator>
</mujoco>"""
