"""The camera interface every image source implements (D455, simulated head camera, replay)."""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from lara_g1.core.errors import LaraError


class CameraError(LaraError, RuntimeError):
    """A camera that cannot be opened or stopped delivering frames."""


@dataclass
class Frame:
    image: np.ndarray   # uint8 [H, W, 3] RGB
    stamp: float        # time.monotonic() of capture on this host (receive time where unknown)
    index: int = 0      # the source's frame counter


class Camera(abc.ABC):
    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def read(self, timeout_s: float = 1.0) -> Frame:
        """The newest frame not returned before; waits up to ``timeout_s`` for one (CameraError)."""

    @abc.abstractmethod
    def disconnect(self) -> None: ...

    def info(self) -> dict:
        """What the driver knows about the device once connected (``lara-robot check`` reports it):
        any of ``serial``, ``model``, ``width``/``height``/``fps`` as configured, ``exposure``."""
        return {}

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()
