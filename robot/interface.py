"""The small robot interface every command source drives (policy, teleop, replay).

Drivers (the real G1 over DDS, and the same driver pointed at the simulated G1) implement
:class:`Robot`. Joint vectors are in the embodiment layout of ``configs/embodiment/g1.yaml``
(28-D: arms rad, hands 0..1 with 1 = open, head rad). Nothing here talks to motors directly:
commands reach a driver only through :class:`lara_g1.robot.safety.SafetyFilter`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass
class RobotState:
    q: np.ndarray          # float32 [dim], measured joint positions in the embodiment layout
    stamp: float           # time.monotonic() when this state was received
    dq: np.ndarray | None = None
    tick: int = 0          # the robot's own counter (LowState_.tick), 0 where unknown


class Robot(abc.ABC):
    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def disconnect(self) -> None: ...

    @abc.abstractmethod
    def read_state(self) -> RobotState | None:
        """The latest state, or None before the first one arrived."""

    @abc.abstractmethod
    def send(self, q_target: np.ndarray, blend: float = 1.0) -> None:
        """Publish joint targets (embodiment layout) with the arm_sdk blend weight 0..1."""
