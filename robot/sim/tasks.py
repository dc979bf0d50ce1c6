"""The two G1 tasks of the paper as MuJoCo scenes with automatic per-stage success detection.

- ``pick_place``: a tomato and a basket on the table. Stages: ``Pick`` (the tomato is held by a
  hand and lifted 3 cm above its resting height), ``Full`` (the tomato lies inside the basket,
  released). The paper's Place = Full / Pick is computed by the evaluation.
- ``pour``: a bottle (for the right hand) and a cup (for the left hand). Stages: ``Grasp-Left``
  (the left hand holds the cup), ``Grasp-Right`` (the right hand holds the bottle), ``Full`` (while
  the right hand holds it, the bottle is tilted more than 60 degrees and its mouth is over the
  cup's opening). Pour = Full / (Grasp-Left x Grasp-Right) in the evaluation.

Stages latch: once reached in a trial they stay reached until the next reset. Object poses are
randomised per reset seed within fixed regions of the table (metres, x forward from the
torso, y left), all within the arms' reach (grasp point reachable to x = 0.45 m).
"""
from __future__ import annotations

import abc

import numpy as np

from lara_g1.robot.sim.model import TABLE_TOP, TORSO_HEIGHT

TABLE_Z = TORSO_HEIGHT + TABLE_TOP  # table surface, world frame


def _quat_to_z_axis(quat: np.ndarray) -> np.ndarray:
    w, x, y, z = quat
    return np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])


class Task(abc.ABC):
    name = ""
    stage_names: tuple[str, ...] = ()
    graspable: dict[str, float] = {}  # object body -> grasp radius (m)
    objects: tuple[str, ...] = ()     # every task body, reported with its pose in the status

    def __init__(self):
        self.stages = dict.fromkeys(self.stage_names, False)

    @abc.abstractmethod
    def objects_xml(self) -> str:
        """The task's bodies (world frame MJCF)."""

    @abc.abstractmethod
    def place(self, world, rng: np.random.Generator) -> None:
        """Put the task objects at random poses (called on reset, after the robot pose is set)."""

    @abc.abstractmethod
    def evaluate(self, world) -> dict[str, bool]:
        """Update the latched stages from the current world state and return them."""

    def reset_stages(self) -> None:
        self.stages = dict.fromkeys(self.stage_names, False)


class PickPlace(Task):
    name = "pick_place"
    stage_names = ("Pick", "Full")
    TOMATO_R = 0.032
    BASKET_INNER = (0.07, 0.09, 0.06)  # half x, half y, wall height
    TOMATO_REGION = ((0.36, 0.43), (-0.24, -0.08))
    BASKET_REGION = ((0.38, 0.44), (0.10, 0.22))
    graspable = {"tomato": TOMATO_R}
    objects = ("tomato", "basket")

    def objects_xml(self) -> str:
        hx, hy, h = self.BASKET_INNER
        t = 0.006
        walls = "".join(
            f'<geom type="box" size="{sx} {sy} {h / 2}" pos="{px} {py} {h / 2}" rgba="0.1 0.45 0.22 1"/>'
            for sx, sy, px, py in ((t, hy + t, hx + t, 0), (t, hy + t, -hx - t, 0),
                                   (hx, t, 0, hy + t), (hx, t, 0, -hy - t)))
        return (f'<body name="tomato" pos="0.35 -0.15 {TABLE_Z + self.TOMATO_R}"><freejoint name="tomato"/>'
                f'<geom type="sphere" size="{self.TOMATO_R}" mass="0.1" rgba="0.42 0.72 0.16 1" friction="1.2 0.02 0.002"/>'
                f'<geom type="cylinder" size="0.008 0.004" pos="0 0 {self.TOMATO_R}" rgba="0.12 0.3 0.08 1" contype="0" conaffinity="0" mass="0.001"/></body>'
                f'<body name="basket" pos="0.36 0.15 {TABLE_Z}">'
                f'<geom type="box" size="{hx + 2 * t} {hy + 2 * t} 0.003" pos="0 0 0.003" rgba="0.1 0.45 0.22 1"/>{walls}</body>')

    def place(self, world, rng) -> None:
        (x0, x1), (y0, y1) = self.TOMATO_REGION
        world.set_free_pose("tomato", [rng.uniform(x0, x1), rng.uniform(y0, y1), TABLE_Z + self.TOMATO_R + 0.002])
        (x0, x1), (y0, y1) = self.BASKET_REGION
        world.set_static_body_pos("basket", [rng.uniform(x0, x1), rng.uniform(y0, y1), TABLE_Z])
        self.rest_z = TABLE_Z + self.TOMATO_R

    def evaluate(self, world) -> dict[str, bool]:
        pos, _ = world.free_pose("tomato")
        held = world.holder("tomato") is not None
        if held and pos[2] > self.rest_z + 0.03:
            self.stages["Pick"] = True
        bpos = world.static_body_pos("basket")
        hx, hy, h = self.BASKET_INNER
        inside = abs(pos[0] - bpos[0]) < hx and abs(pos[1] - bpos[1]) < hy and pos[2] < bpos[2] + h
        if inside and not held:
            self.stages["Full"] = True
        return dict(self.stages)


class Pour(Task):
    name = "pour"
    stage_names = ("Grasp-Left", "Grasp-Right", "Full")
    BOTTLE = (0.028, 0.09)   # radius, half height
    CUP = (0.035, 0.045)
    BOTTLE_REGION = ((0.36, 0.42), (-0.22, -0.10))
    CUP_REGION = ((0.36, 0.42), (0.10, 0.22))
    TILT = np.deg2rad(60.0)
    graspable = {"bottle": BOTTLE[0], "cup": CUP[0]}
    objects = ("bottle", "cup")

    def objects_xml(self) -> str:
        br, bh = self.BOTTLE
        cr, ch = self.CUP
        return (f'<body name="bottle" pos="0.33 -0.15 {TABLE_Z + bh}"><freejoint name="bottle"/>'
                f'<geom type="cylinder" size="{br} {bh}" mass="0.3" rgba="0.2 0.6 0.3 0.9" friction="1.2 0.02 0.002"/>'
                f'<geom type="cylinder" size="0.012 0.015" pos="0 0 {bh + 0.015}" rgba="0.9 0.9 0.9 1" mass="0.01"/></body>'
                f'<body name="cup" pos="0.33 0.15 {TABLE_Z + ch}"><freejoint name="cup"/>'
                f'<geom type="cylinder" size="{cr} 0.004" pos="0 0 {-ch + 0.004}" mass="0.05" rgba="0.9 0.85 0.3 1"/>'
                + "".join(f'<geom type="box" size="0.004 {cr * 0.42} {ch}" pos="{cr * np.cos(a):.5f} {cr * np.sin(a):.5f} 0" '
                          f'euler="0 0 {a:.5f}" mass="0.01" rgba="0.9 0.85 0.3 1"/>'
                          for a in np.linspace(0, 2 * np.pi, 8, endpoint=False))
                + '</body>')

    def place(self, world, rng) -> None:
        (x0, x1), (y0, y1) = self.BOTTLE_REGION
        world.set_free_pose("bottle", [rng.uniform(x0, x1), rng.uniform(y0, y1), TABLE_Z + self.BOTTLE[1] + 0.002])
        (x0, x1), (y0, y1) = self.CUP_REGION
        world.set_free_pose("cup", [rng.uniform(x0, x1), rng.uniform(y0, y1), TABLE_Z + self.CUP[1] + 0.002])

    def evaluate(self, world) -> dict[str, bool]:
        if world.holder("cup") == "left":
            self.stages["Grasp-Left"] = True
        if world.holder("bottle") == "right":
            self.stages["Grasp-Right"] = True
            bpos, bquat = world.free_pose("bottle")
            axis = _quat_to_z_axis(bquat)
            tilt = np.arccos(np.clip(axis[2], -1.0, 1.0))
            mouth = bpos + axis * (self.BOTTLE[1] + 0.03)
            cpos, _ = world.free_pose("cup")
            over = np.hypot(*(mouth[:2] - cpos[:2])) < self.CUP[0] + 0.01
            above = 0.0 < mouth[2] - (cpos[2] + self.CUP[1]) < 0.15
            if tilt > self.TILT and over and above:
                self.stages["Full"] = True
        return dict(self.stages)


TASKS = {PickPlace.name: PickPlace, Pour.name: Pour}


def make_task(name: str) -> Task:
    try:
        return TASKS[name]()
    except KeyError:
        raise ValueError(f"unknown sim task {name!r}; choose from {sorted(TASKS)}") from None
