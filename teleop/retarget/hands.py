"""Fingers -> Inspire hand: 25 tracked hand joints to the 6 normalised Inspire values per hand.

Per hand, six human features are measured from the joint positions (relative to the wrist, so
the tracker's frame conventions do not matter):

- finger curl (index, middle, ring, little): knuckle + middle-joint flexion, measured in the
  plane of the palm's forward axis and normal (side-to-side spread does not count as curl);
- thumb bend: flexion of the thumb's two distal joints;
- thumb rotation: how far the thumb metacarpal points out of the palm plane towards the palm.

Each feature maps linearly from the operator's [open, closed] range (``configs/kinematics/
retarget.yaml`` defaults, or the operator's own after :meth:`HandRetargeter.calibrate`) onto the
Inspire actuator's joint range (``inspire_hand.yaml``), which is then normalised the way Unitree
does (1 = open). Output order is the embodiment's: pinky, ring, middle, index, thumb bend, thumb
rotation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lara_g1.core.errors import LaraError
from lara_g1.robot.kinematics import InspireHand, load_inspire_hand

# visionOS joints: 0 wrist, thumb 1-4, then per finger metacarpal, knuckle, int. base, int. tip, tip.
FINGER_JOINTS = {"index": 5, "middle": 10, "ring": 15, "pinky": 20}
FEATURES = ("pinky", "ring", "middle", "index", "thumb_bend", "thumb_rotation")
MIN_RANGE = 0.05   # rad: a calibration whose open and closed features are closer is rejected


class HandCalibrationError(LaraError, ValueError):
    pass


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-9 else v


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.arccos(np.clip(_unit(a) @ _unit(b), -1.0, 1.0)))


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


def palm_frame(P: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Palm forward axis (wrist -> middle knuckle) and palm normal (pointing out of the palm)."""
    forward = _unit(P[11] - P[0])
    normal = np.cross(P[6] - P[0], P[21] - P[0])     # index x little knuckle: palm side, right hand
    if side == "left":
        normal = -normal                              # a left hand is the mirror image
    normal = _unit(normal - (normal @ forward) * forward)
    return forward, normal


def hand_features(hand: np.ndarray, side: str) -> np.ndarray:
    """The six human features (rad), embodiment order, from [25, 4, 4] joint poses."""
    P = np.asarray(hand, dtype=np.float64)[:, :3, 3]
    forward, normal = palm_frame(P, side)

    def flexion(a: int, b: int) -> float:          # bone a->b angle towards the palm
        d = P[b] - P[a]
        return float(np.arctan2(d @ normal, d @ forward))

    out = np.empty(6)
    for k, name in enumerate(("pinky", "ring", "middle", "index")):
        j = FINGER_JOINTS[name]
        meta, prox, mid = flexion(j, j + 1), flexion(j + 1, j + 2), flexion(j + 2, j + 3)
        out[k] = _wrap(prox - meta) + _wrap(mid - prox)
    d1, d2, d3 = P[2] - P[1], P[3] - P[2], P[4] - P[3]
    out[4] = _angle(d1, d2) + _angle(d2, d3)
    out[5] = float(np.arcsin(np.clip(_unit(d1) @ normal, -1.0, 1.0)))
    return out


@dataclass
class HandRange:
    open: np.ndarray     # [6] human features of the open hand
    closed: np.ndarray   # [6] human features of a fist


class HandRetargeter:
    def __init__(self, ranges: HandRange, inspire: InspireHand | None = None):
        self.inspire = inspire or load_inspire_hand()
        self.ranges = {"left": HandRange(ranges.open.copy(), ranges.closed.copy()),
                       "right": HandRange(ranges.open.copy(), ranges.closed.copy())}
        self._act_open = np.array([a.open for a in self.inspire.actuators])
        self._act_closed = np.array([a.closed for a in self.inspire.actuators])

    @classmethod
    def from_config(cls, hands: dict, source: str = "<retarget>") -> "HandRetargeter":
        try:
            open_ = np.array([float(hands[f]["open"]) for f in FEATURES])
            closed = np.array([float(hands[f]["closed"]) for f in FEATURES])
        except (KeyError, TypeError, ValueError) as exc:
            raise HandCalibrationError(f"{source}: hands needs open/closed for each of {list(FEATURES)}: "
                                       f"{exc!r}") from None
        _check_range(open_, closed, source)
        return cls(HandRange(open_, closed))

    def calibrate(self, side: str, open_hand: np.ndarray, closed_hand: np.ndarray) -> None:
        """Use the operator's own open hand and fist (each [25, 4, 4]) for ``side``."""
        open_, closed = hand_features(open_hand, side), hand_features(closed_hand, side)
        _check_range(open_, closed, f"{side} hand calibration")
        self.ranges[side] = HandRange(open_, closed)

    def joint_angles(self, hand: np.ndarray, side: str) -> np.ndarray:
        """Inspire joint angles (rad) for a tracked hand."""
        r = self.ranges[side]
        closedness = np.clip((hand_features(hand, side) - r.open) / (r.closed - r.open), 0.0, 1.0)
        return self._act_open + closedness * (self._act_closed - self._act_open)

    def __call__(self, hand: np.ndarray, side: str) -> np.ndarray:
        """The 6 normalised Inspire values (0..1, 1 = open), embodiment order."""
        angles = self.joint_angles(hand, side)
        return np.array([a.normalise(x) for a, x in zip(self.inspire.actuators, angles)], dtype=np.float64)


def _check_range(open_: np.ndarray, closed: np.ndarray, source: str) -> None:
    small = [f for f, o, c in zip(FEATURES, open_, closed) if not abs(c - o) >= MIN_RANGE]
    if small:
        raise HandCalibrationError(f"{source}: open and closed differ by less than {MIN_RANGE} rad for "
                                   f"{small}: open the hand fully, then make a fist, and try again")
