"""A camera read on its own thread, so that no control or recording loop ever waits on it."""
from __future__ import annotations

import collections
import logging
import threading

from lara_g1.robot.cameras.base import Camera, Frame

log = logging.getLogger(__name__)


class FrameStream:
    """Reads ``camera`` continuously and keeps its last ``keep`` frames (``robot.cameras.Frame``,
    each with its capture stamp).

    ``wait_next`` serves a policy that wants the next new frame but never waits long for it;
    ``at`` serves a recorder on a fixed time grid that wants the frame in effect at an instant.
    Read errors are counted and logged (a hiccup shows up as a stall or as dropped frames).
    """

    def __init__(self, camera: Camera, keep: int = 1, read_timeout_s: float = 1.0, name: str = "camera"):
        self.camera = camera
        self.read_timeout_s = read_timeout_s
        self._frames: collections.deque[Frame] = collections.deque(maxlen=keep)
        self._cond = threading.Condition()
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.errors = 0

    @property
    def count(self) -> int:
        """Frames read so far."""
        return self._seq

    def start(self) -> "FrameStream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.camera.read(timeout_s=self.read_timeout_s)
            except Exception as exc:  # noqa: BLE001 - a camera hiccup; callers see it as a stall
                self.errors += 1
                if self.errors == 1 or self.errors % 50 == 0:
                    log.warning("camera read failed (%d so far): %s", self.errors, exc)
                self._stop.wait(0.01)
                continue
            with self._cond:
                self._frames.append(frame)
                self._seq += 1
                self._cond.notify_all()

    def wait_next(self, after_seq: int, wait_s: float) -> tuple[Frame | None, int]:
        """``(frame, seq)``: a frame newer than ``after_seq`` if one comes within ``wait_s``, else
        the newest (``None`` before the first frame)."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after_seq, timeout=wait_s)
            return (self._frames[-1] if self._frames else None), self._seq

    def at(self, t: float) -> Frame | None:
        """The newest frame captured at or before ``t`` (the oldest one kept if none was)."""
        with self._cond:
            frames = list(self._frames)
        for frame in reversed(frames):
            if frame.stamp <= t:
                return frame
        return frames[0] if frames else None
