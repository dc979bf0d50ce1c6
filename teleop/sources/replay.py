"""Recorded tracking streams: a simple file format, its recorder, and a source that replays it.

File format (``.npz``, numpy's zip of arrays; written atomically):

- ``format``: the string ``lara-tracking-v1``
- ``t``: float64 [N], seconds since the first sample (non-decreasing)
- ``head``, ``left_wrist``, ``right_wrist``: float64 [N, 4, 4]
- ``left_hand``, ``right_hand``: float32 [N, 25, 4, 4] (relative to the wrist)
- ``episode_end``: bool [N]
- ``left_tracked``, ``right_tracked``: bool [N], whether the tracker saw that hand (optional: a
  file without them has both hands tracked throughout)

:class:`ReplaySource` plays a file at its recorded timing (``speed`` scales it): at a time ``t``
after :meth:`ReplaySource.connect` the newest sample is the last one recorded at or before ``t``.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from lara_g1.teleop.sources.base import HAND_JOINTS, TrackingError, TrackingSample, TrackingSource

FORMAT = "lara-tracking-v1"
_SHAPES = {"head": (4, 4), "left_wrist": (4, 4), "right_wrist": (4, 4),
           "left_hand": (HAND_JOINTS, 4, 4), "right_hand": (HAND_JOINTS, 4, 4)}


class TrackingRecorder:
    """Collect samples and write them as one tracking file (``save()``, atomic)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.suffix != ".npz":
            raise TrackingError(f"tracking files end in .npz, got {self.path}")
        self._rows: list[TrackingSample] = []
        self._last_stamp: float | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, sample: TrackingSample) -> bool:
        """Append a sample unless it is the one added last (same timestamp). True if added."""
        if self._last_stamp is not None and sample.timestamp <= self._last_stamp:
            return False
        self._rows.append(sample.validate())
        self._last_stamp = sample.timestamp
        return True

    def save(self) -> Path:
        if not self._rows:
            raise TrackingError("no tracking samples to save")
        t0 = self._rows[0].timestamp
        arrays = {"format": np.array(FORMAT),
                  "t": np.array([s.timestamp - t0 for s in self._rows], dtype=np.float64),
                  "episode_end": np.array([s.episode_end for s in self._rows], dtype=bool),
                  "left_tracked": np.array([s.left_tracked for s in self._rows], dtype=bool),
                  "right_tracked": np.array([s.right_tracked for s in self._rows], dtype=bool)}
        for key in _SHAPES:
            dtype = np.float32 if key.endswith("hand") else np.float64
            arrays[key] = np.stack([getattr(s, key) for s in self._rows]).astype(dtype)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.path


def load_tracking_file(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check a tracking file; raises :class:`TrackingError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise TrackingError(f"tracking file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise TrackingError(f"{path}: not a tracking file ({exc})") from None
    if str(data.get("format", "")) != FORMAT:
        raise TrackingError(f"{path}: format is {str(data.get('format'))!r}, expected {FORMAT!r}")
    missing = sorted({"t", "episode_end", *_SHAPES} - set(data))
    if missing:
        raise TrackingError(f"{path}: missing arrays {missing}")
    n = len(data["t"])
    if n == 0:
        raise TrackingError(f"{path}: no samples")
    for key, shape in _SHAPES.items():
        if data[key].shape != (n, *shape):
            raise TrackingError(f"{path}: {key} has shape {data[key].shape}, expected {(n, *shape)}")
    for key in ("left_tracked", "right_tracked"):
        data.setdefault(key, np.ones(n, dtype=bool))
    for key in ("episode_end", "left_tracked", "right_tracked"):
        if data[key].shape != (n,):
            raise TrackingError(f"{path}: {key} has shape {data[key].shape}, expected ({n},)")
    if not np.all(np.isfinite(data["t"])) or np.any(np.diff(data["t"]) < 0):
        raise TrackingError(f"{path}: timestamps must be finite and non-decreasing")
    return data


class ReplaySource(TrackingSource):
    name = "replay"

    def __init__(self, path: str | Path, *, speed: float = 1.0, loop: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.path = Path(path)
        self.data = load_tracking_file(self.path)
        self.speed, self.loop = float(speed), bool(loop)
        self._clock = clock
        self._t0: float | None = None
        self._delivered_last = False
        self._t = self.data["t"]
        self.duration = float(self._t[-1])
        # A looped replay restarts one typical sample interval after its last sample.
        step = float(np.median(np.diff(self._t))) if len(self._t) > 1 else 1.0 / 30.0
        self._period = self.duration + max(step, 1e-3)

    def __len__(self) -> int:
        return len(self._t)

    def connect(self, timeout_s: float = 10.0) -> None:
        self._t0 = self._clock()
        self._delivered_last = False

    def _elapsed(self) -> float:
        return (self._clock() - self._t0) * self.speed

    def index_at(self, elapsed: float) -> int:
        """Index of the sample shown ``elapsed`` seconds (recording time) into the replay."""
        if self.loop:
            elapsed = elapsed % self._period
        return max(0, int(np.searchsorted(self._t, elapsed, side="right")) - 1)

    def latest(self) -> TrackingSample | None:
        if self._t0 is None:
            return None
        elapsed = self._elapsed()
        i = self.index_at(elapsed)
        lap = np.floor(elapsed / self._period) * self._period if self.loop else 0.0
        self._delivered_last |= i == len(self._t) - 1
        d = self.data
        return TrackingSample(
            timestamp=self._t0 + (lap + float(self._t[i])) / self.speed,
            head=d["head"][i], left_wrist=d["left_wrist"][i], right_wrist=d["right_wrist"][i],
            left_hand=d["left_hand"][i].astype(np.float64), right_hand=d["right_hand"][i].astype(np.float64),
            episode_end=bool(d["episode_end"][i]), left_tracked=bool(d["left_tracked"][i]),
            right_tracked=bool(d["right_tracked"][i]))

    @property
    def finished(self) -> bool:
        """True once the last sample was delivered and its time has passed (never when looping)."""
        return (self._t0 is not None and not self.loop and self._delivered_last
                and self._elapsed() > self.duration)

    def status(self) -> dict:
        return {"source": self.name, "file": str(self.path), "samples": len(self),
                "duration_s": self.duration}
