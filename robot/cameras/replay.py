"""Replay camera: the frames of a LeRobot v3 dataset episode, or a RealSense recording.

A dataset episode plays at the dataset's fps (``realtime=True``) or as fast as it is read; at
the end it loops (``loop=True``) or raises :class:`CameraError`. A ``.db3``/``.bag`` path is
played through :class:`RealSenseCamera` (pyrealsense2, the ``realsense`` extra).
"""
from __future__ import annotations

import time
from pathlib import Path

from lara_g1.robot.cameras.base import Camera, CameraError, Frame
from lara_g1.robot.cameras.realsense import RealSenseCamera

RECORDING_SUFFIXES = (".db3", ".bag")


class ReplayCamera(Camera):
    def __init__(self, source: str | Path, camera: str = "head", episode: int = 0,
                 realtime: bool = True, loop: bool = True):
        self.source = Path(source)
        self.camera, self.episode, self.realtime, self.loop = camera, int(episode), realtime, loop
        self._frames = None
        self._recording: RealSenseCamera | None = None
        self._i = 0
        self._t0 = 0.0
        self.fps = 30.0

    def connect(self) -> None:
        if self.source.suffix in RECORDING_SUFFIXES:
            self._recording = RealSenseCamera({"recording": str(self.source), "repeat": self.loop,
                                               "realtime": self.realtime})
            self._recording.connect()
            return
        from lara_g1.lara.data.lerobot import LeRobotDataset
        ds = LeRobotDataset(self.source)
        if not 0 <= self.episode < ds.num_episodes:
            raise CameraError(f"{self.source}: episode {self.episode} does not exist "
                              f"({ds.num_episodes} episodes)")
        if self.camera not in ds.cameras:
            raise CameraError(f"{self.source}: no camera {self.camera!r}; cameras: {ds.cameras}")
        self._frames = ds.frames(self.camera, self.episode)
        self.fps = float(ds.fps)
        self._i, self._t0 = 0, time.monotonic()

    def read(self, timeout_s: float = 1.0) -> Frame:
        if self._recording is not None:
            return self._recording.read(timeout_s)
        if self._frames is None:
            raise CameraError("ReplayCamera.read before connect()")
        n = len(self._frames)
        if self.realtime:
            due = self._t0 + self._i / self.fps
            wait = due - time.monotonic()
            if wait > timeout_s:
                raise CameraError(f"next replay frame is due in {wait:.3f} s > timeout {timeout_s} s")
            if wait > 0:
                time.sleep(wait)
        if self._i >= n:
            if not self.loop:
                raise CameraError(f"{self.source}: episode {self.episode} ended after {n} frames")
            self._i, self._t0 = 0, time.monotonic()
        frame = Frame(image=self._frames[self._i], stamp=time.monotonic(), index=self._i)
        self._i += 1
        return frame

    def disconnect(self) -> None:
        if self._recording is not None:
            self._recording.disconnect()
            self._recording = None
        self._frames = None
