"""The simulated G1's head camera: frames rendered by ``lara-sim`` on a DDS topic of our own."""
from __future__ import annotations

import time

import numpy as np

from lara_g1.robot.cameras.base import Camera, CameraError, Frame
from lara_g1.robot.dds import participant as dds
from lara_g1.robot.dds import topics
from lara_g1.robot.dds.messages import Image_


class SimCamera(Camera):
    def __init__(self, domain_id: int, interface: str | None = "lo", topic: str = topics.SIM_CAMERA):
        self.domain_id, self.interface, self.topic = domain_id, interface, topic
        self._reader = None
        self._last_seq = -1

    def connect(self) -> None:
        if self._reader is None:
            self._reader = dds.reader(self.domain_id, self.topic, Image_, self.interface)

    def read(self, timeout_s: float = 1.0) -> Frame:
        if self._reader is None:
            raise CameraError("SimCamera.read before connect()")
        deadline = time.monotonic() + timeout_s
        while True:
            newest = None
            for msg in self._reader.take(N=4):
                if isinstance(msg, Image_) and msg.seq != self._last_seq:
                    newest = msg
            if newest is not None:
                break
            if time.monotonic() > deadline:
                raise CameraError(f"no frame from lara-sim on {self.topic} (DDS domain {self.domain_id}) "
                                  f"within {timeout_s} s")
            time.sleep(0.002)
        expected = newest.height * newest.width * 3
        if len(newest.data) != expected:
            raise CameraError(f"sim frame {newest.seq}: {len(newest.data)} bytes for "
                              f"{newest.width}x{newest.height} RGB")
        self._last_seq = newest.seq
        image = np.frombuffer(newest.data, dtype=np.uint8).reshape(newest.height, newest.width, 3)
        # lara-sim runs on this host and stamps with CLOCK_MONOTONIC: the render time.
        return Frame(image=image, stamp=newest.stamp_ns / 1e9, index=int(newest.seq))

    def info(self) -> dict:
        return {"model": "lara-sim head camera", "topic": self.topic, "exposure": "n/a (rendered)"}

    def disconnect(self) -> None:
        self._reader = None
