"""The tracking-source interface: what every operator input (Vision Pro, replay, synthetic) yields.

Conventions of a :class:`TrackingSample` (the Vision Pro's, after ``avp-stream``'s Z-up
conversion, with the head frame re-expressed):

- ``timestamp``: ``time.monotonic()`` of this process when the sample was taken (for replays, when
  it is played), so the age of a sample is ``time.monotonic() - timestamp`` for every source.
- World frame: z up, x/y horizontal with an arbitrary heading (the calibration removes it).
- ``head``: the headset pose; its frame is x forward (the viewing direction), y left, z up.
- ``left_wrist`` / ``right_wrist``: wrist poses in the world frame (their local axes are whatever
  the tracker uses: the calibration maps them onto the robot's hand frames).
- ``left_hand`` / ``right_hand``: [25, 4, 4] joint poses relative to the wrist, in the visionOS
  hand-skeleton order: 0 wrist, 1-4 thumb (knuckle, intermediate base, intermediate tip, tip),
  5-9 index, 10-14 middle, 15-19 ring, 20-24 little (metacarpal, knuckle, intermediate base,
  intermediate tip, tip).
- ``episode_end``: a scripted source (synthetic, a replayed script) says the episode is over.
- ``left_tracked`` / ``right_tracked``: whether the tracker sees that hand. An untracked hand's
  wrist and joints mean nothing (the Vision Pro app sends identities for a hand it has not seen):
  the calibration waits for both hands, and the retargeter holds an untracked hand's arm.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from lara_g1.core.errors import LaraError

HAND_JOINTS = 25


class TrackingError(LaraError, RuntimeError):
    """A tracking source cannot deliver (not installed, not reachable, bad file)."""


class TrackingLost(TrackingError):
    """The source was delivering and stopped (connection lost, stream ended unexpectedly)."""


@dataclass
class TrackingSample:
    timestamp: float
    head: np.ndarray          # [4, 4]
    left_wrist: np.ndarray    # [4, 4]
    right_wrist: np.ndarray   # [4, 4]
    left_hand: np.ndarray     # [25, 4, 4], relative to the left wrist
    right_hand: np.ndarray    # [25, 4, 4], relative to the right wrist
    episode_end: bool = False
    left_tracked: bool = True
    right_tracked: bool = True

    def tracked(self, side: str) -> bool:
        """Whether the ``side`` ('left' or 'right') hand is tracked."""
        return bool(getattr(self, f"{side}_tracked"))

    def validate(self) -> "TrackingSample":
        """Check shapes (a malformed sample is an error, not a robot command)."""
        for name, shape in (("head", (4, 4)), ("left_wrist", (4, 4)), ("right_wrist", (4, 4)),
                            ("left_hand", (HAND_JOINTS, 4, 4)), ("right_hand", (HAND_JOINTS, 4, 4))):
            value = getattr(self, name)
            if np.shape(value) != shape:
                raise TrackingError(f"tracking sample field {name} has shape {np.shape(value)}, "
                                    f"expected {shape}")
        return self

    def is_finite(self) -> bool:
        return bool(all(np.all(np.isfinite(getattr(self, n))) for n in
                        ("head", "left_wrist", "right_wrist", "left_hand", "right_hand")))


class TrackingSource(abc.ABC):
    """A live or replayed stream of :class:`TrackingSample`.

    ``latest()`` never blocks: it returns the newest sample (or None before the first one).
    ``finished`` turns True when a finite source (a replay) has played its last sample.
    ``next_episode()`` tells a scripted source that the recorder moved on to a new episode.
    """

    name = "tracking"

    def connect(self, timeout_s: float = 10.0) -> None:
        """Open the source; raise :class:`TrackingError` if no sample arrives within ``timeout_s``."""

    @abc.abstractmethod
    def latest(self) -> TrackingSample | None: ...

    @property
    def finished(self) -> bool:
        return False

    def next_episode(self) -> None:
        """A new episode starts (scripted sources restart their script; live sources ignore it)."""

    def describe(self) -> str:
        """The source in words, for messages: "the Vision Pro at 10.0.0.5", "the synthetic source"."""
        return f"the {self.name} source"

    def status(self) -> dict:
        """A short JSON-friendly status for the progress display."""
        return {"source": self.name}

    def close(self) -> None:
        """Release the source."""

    def __enter__(self) -> "TrackingSource":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
