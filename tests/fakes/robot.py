"""The G1's motors stand-in: one fake :class:`~lara_g1.robot.interface.Robot` for every test that
drives a robot (the safety filter, the control loop, the teleop session).

Every ``send`` is recorded as a :class:`Sent` (time, q, blend), the time read from the robot's
clock. The joints either follow each command exactly (an ideal servo, ``follow=True``) or stay
where they started (``follow=False``: motors that do not move, or a test that only reads what was
sent). The state's stamp is, by ``stamp``:

- ``FakeRobot.CLOCK`` (the default): the clock's now at each read, i.e. always fresh;
- a float: that fixed stamp, moved by the test (``robot.stamp = t``); ``freeze()`` fixes it at
  the clock's now (the state stops arriving);
- ``None``: no state at all (``read_state()`` returns None, as before the first one arrived).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lara_g1.core.embodiment import load_embodiment
from lara_g1.robot.interface import Robot, RobotState


@dataclass(frozen=True)
class Sent:
    """One ``send``: when (the robot's clock), the joint targets (a copy, float32), the blend."""

    time: float
    q: np.ndarray
    blend: float


class FakeRobot(Robot):
    """A robot double that records every send; see the module docstring for its modes."""

    CLOCK = "clock"

    def __init__(self, q0: np.ndarray | None = None, *, follow: bool = True,
                 clock: Callable[[], float] = time.monotonic, stamp: float | str | None = CLOCK) -> None:
        q0 = load_embodiment("g1").default_pose if q0 is None else q0
        self.q = np.array(q0, dtype=np.float32)          # the measured joints
        self.follow = follow
        self.clock = clock
        self.stamp = stamp
        self.sent: list[Sent] = []
        self._lock = threading.Lock()

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def freeze(self) -> float:
        """The state stops arriving: its stamp stays at the clock's now, which is returned."""
        with self._lock:
            self.stamp = self.clock()
            return self.stamp

    def read_state(self) -> RobotState | None:
        with self._lock:
            if self.stamp is None:
                return None
            stamp = self.clock() if self.stamp == self.CLOCK else float(self.stamp)
            return RobotState(q=self.q.copy(), stamp=stamp)

    def send(self, q_target: np.ndarray, blend: float = 1.0) -> None:
        with self._lock:
            q = np.array(q_target, dtype=np.float32)
            if self.follow:
                self.q = q.copy()
            self.sent.append(Sent(self.clock(), q, float(blend)))
