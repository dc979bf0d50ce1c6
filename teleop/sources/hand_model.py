"""A simple human hand model that produces visionOS-ordered 25-joint skeletons.

Used by the synthetic source (and tests) to make hands with a known pose: per finger a curl
0..1 (0 = straight, 1 = a fist), thumb bend 0..1 and thumb opposition 0..1. The geometry is an
adult hand's rough proportions. Joint poses are relative to the wrist in a frame with x along the
fingers, z out of the back of the hand and y towards the thumb of a RIGHT hand; the left hand is
its mirror image (y flipped), as real left and right hands are. Orientations are proper rotations
with x along the bone.
"""
from __future__ import annotations

import numpy as np

# Per finger: metacarpal base and knuckle positions (right hand, m) and phalanx lengths; joint
# flexion per unit curl at the knuckle (MCP), proximal (PIP) and distal (DIP) joints (rad).
_FINGERS = {            # base              knuckle              proximal, middle, distal
    "index":  ((0.020, 0.012, 0.0), (0.090, 0.026, 0.0), (0.045, 0.027, 0.020)),
    "middle": ((0.020, 0.003, 0.0), (0.092, 0.006, 0.0), (0.048, 0.030, 0.021)),
    "ring":   ((0.020, -0.007, 0.0), (0.086, -0.013, 0.0), (0.044, 0.028, 0.020)),
    "little": ((0.020, -0.015, 0.0), (0.078, -0.030, 0.0), (0.035, 0.020, 0.018)),
}
_FLEX = (1.5, 1.7, 1.0)
FINGER_ORDER = ("index", "middle", "ring", "little")   # visionOS order after the thumb
_THUMB_BASE = np.array([0.025, 0.022, -0.012])
_THUMB_LENGTHS = (0.045, 0.032, 0.028)                 # metacarpal, proximal, distal
_THUMB_ABDUCTION = np.radians(50.0)                    # open thumb angle from the fingers' axis
_THUMB_OPPOSITION = np.radians(85.0)                   # swing towards the palm at opposition 1
_THUMB_BEND = (0.9, 1.0)                               # MCP and IP flexion at bend 1 (rad)


def _frame(position: np.ndarray, direction: np.ndarray, up: np.ndarray) -> np.ndarray:
    x = direction / np.linalg.norm(direction)
    z = up - (up @ x) * x
    z /= np.linalg.norm(z)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, np.cross(z, x), z, position
    return T


def hand_skeleton(side: str, curls=(0.0, 0.0, 0.0, 0.0), thumb_bend: float = 0.0,
                  thumb_opposition: float = 0.0) -> np.ndarray:
    """[25, 4, 4] joint poses relative to the wrist. ``curls``: index, middle, ring, little."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    up = np.array([0.0, 0.0, 1.0])
    T = np.zeros((25, 4, 4))
    T[0] = np.eye(4)
    positions = np.zeros((25, 3))
    # Fingers: metacarpal base -> knuckle, then three phalanges flexing towards the palm (-z).
    for f, (name, curl) in enumerate(zip(FINGER_ORDER, curls)):
        base, knuckle, lengths = _FINGERS[name]
        j0 = 5 + 5 * f
        pts = [np.array(base), np.array(knuckle)]
        angle = 0.0
        for length, flex in zip(lengths, _FLEX):
            angle += flex * float(np.clip(curl, 0.0, 1.0))
            pts.append(pts[-1] + length * np.array([np.cos(angle), 0.0, -np.sin(angle)]))
        positions[j0:j0 + 5] = pts
    # Thumb: the metacarpal swings from the palm plane (open) towards the palm side (opposed),
    # then the proximal and distal phalanges bend towards the palm centre.
    a, phi = _THUMB_ABDUCTION, _THUMB_OPPOSITION * float(np.clip(thumb_opposition, 0.0, 1.0))
    d = np.array([np.cos(a), np.sin(a) * np.cos(phi), -np.sin(a) * np.sin(phi)])
    towards_palm = np.array([0.06, 0.0, -0.03]) - _THUMB_BASE
    m = towards_palm - (towards_palm @ d) * d
    m /= np.linalg.norm(m)
    pts = [_THUMB_BASE, _THUMB_BASE + _THUMB_LENGTHS[0] * d]
    angle = 0.0
    for length, flex in zip(_THUMB_LENGTHS[1:], _THUMB_BEND):
        angle += flex * float(np.clip(thumb_bend, 0.0, 1.0))
        pts.append(pts[-1] + length * (np.cos(angle) * d + np.sin(angle) * m))
    positions[1:5] = pts
    # Orientations: x along the bone to the next joint (the tip keeps its parent's direction).
    chains = [[0, 1, 2, 3, 4]] + [[0] + list(range(5 + 5 * f, 10 + 5 * f)) for f in range(4)]
    for chain in chains:
        for k, j in enumerate(chain[1:], start=1):
            nxt = chain[k + 1] if k + 1 < len(chain) else None
            direction = positions[nxt] - positions[j] if nxt is not None else positions[j] - positions[chain[k - 1]]
            T[j] = _frame(positions[j], direction, up)
    if side == "left":
        mirror = np.diag([1.0, -1.0, 1.0, 1.0])
        # Mirror the positions; flip the frames' y axes so that rotations stay proper.
        T = mirror @ T @ mirror
    return T
