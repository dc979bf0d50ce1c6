"""A head camera stand-in for code that reads frames through the Camera interface."""
from __future__ import annotations

import time

import numpy as np

from lara_g1.robot.cameras.base import Camera, Frame


class StaticCamera(Camera):
    """A fixed random image at about 30 fps (each read sleeps one period), stamped at capture."""

    def __init__(self, size: tuple[int, int] = (224, 224)) -> None:
        self.image = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)

    def connect(self) -> None:
        pass

    def read(self, timeout_s: float = 1.0) -> Frame:
        time.sleep(1 / 30)
        return Frame(self.image, time.monotonic())

    def disconnect(self) -> None:
        pass
