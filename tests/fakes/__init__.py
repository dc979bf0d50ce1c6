"""Test doubles shared by the test modules: the robot, a camera and a clock stand-in.

Each implements the interface the code drives (``lara_g1.robot.interface.Robot``,
``lara_g1.robot.cameras.base.Camera``, a ``() -> float`` clock), so a test swaps in hardware
that cannot be here and reads back what the code did to it.
"""
from tests.fakes.camera import StaticCamera
from tests.fakes.clock import FakeClock
from tests.fakes.robot import FakeRobot, Sent

__all__ = ["FakeClock", "FakeRobot", "Sent", "StaticCamera"]
