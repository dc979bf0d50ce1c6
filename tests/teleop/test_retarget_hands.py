"""Hand retargeting: recorded open/closed hands -> Inspire values, sides kept apart, calibration."""
from __future__ import annotations

import numpy as np
import pytest

from lara_g1.core.embodiment import load_embodiment
from lara_g1.teleop.retarget.hands import HandCalibrationError, HandRetargeter, hand_features
from lara_g1.teleop.retarget.retargeter import RetargetConfig, Retargeter
from lara_g1.teleop.sources import ReplaySource, TrackingRecorder, TrackingSample
from lara_g1.teleop.sources.hand_model import hand_skeleton

OPEN = {"curls": (0.0,) * 4, "thumb_bend": 0.0, "thumb_opposition": 0.0}
FIST = {"curls": (1.0,) * 4, "thumb_bend": 1.0, "thumb_opposition": 1.0}


@pytest.fixture(scope="module")
def hands():
    return HandRetargeter.from_config(RetargetConfig.load().hands)


def _sample(t, left, right):
    head = np.eye(4)
    head[2, 3] = 1.6
    wl, wr = np.eye(4), np.eye(4)
    wl[:3, 3], wr[:3, 3] = (0.3, 0.2, 1.0), (0.3, -0.2, 1.0)
    return TrackingSample(t, head, wl, wr, hand_skeleton("left", **left), hand_skeleton("right", **right))


@pytest.fixture()
def recorded(tmp_path):
    """A recorded stream: calibration (both open), then left open / right fist, then swapped."""
    rec = TrackingRecorder(tmp_path / "hands.npz")
    for i, (left, right) in enumerate([(OPEN, OPEN), (OPEN, FIST), (FIST, OPEN)]):
        rec.add(_sample(100.0 + i, left, right))
    return ReplaySource(rec.save())


def test_open_and_closed_recorded_hands_map_to_open_and_closed_values(recorded):
    emb = load_embodiment("g1")
    lh, rh = emb.group("left_hand").slice, emb.group("right_hand").slice
    samples = []
    t = [0.0]
    recorded._clock = lambda: t[0]
    recorded.connect()
    for k in range(3):
        t[0] = k + 0.5
        samples.append(recorded.latest())
    retarget = Retargeter(emb)
    retarget.calibrate(samples[:1])
    q_cal = retarget(samples[0]).q
    np.testing.assert_allclose(q_cal[lh], 1.0, atol=0.02)
    np.testing.assert_allclose(q_cal[rh], 1.0, atol=0.02)
    q = retarget(samples[1]).q          # left open, right fist
    assert np.all(q[lh] > 0.95) and np.all(q[rh] < 0.05), q[14:26]
    q = retarget(samples[2]).q          # left fist, right open
    assert np.all(q[lh] < 0.05) and np.all(q[rh] > 0.95), q[14:26]


def test_hand_side_matters(hands):
    # A closed LEFT hand read as a right hand mirrors the palm: it must not come out closed.
    fist_left = hand_skeleton("left", **FIST)
    assert np.all(hands(fist_left, "left")[:4] < 0.05)
    assert np.all(hands(fist_left, "right")[:4] > 0.9)


def test_features_are_mirror_symmetric_and_monotonic():
    previous = None
    for c in np.linspace(0, 1, 6):
        fl = hand_features(hand_skeleton("left", (c,) * 4, c, c), "left")
        fr = hand_features(hand_skeleton("right", (c,) * 4, c, c), "right")
        np.testing.assert_allclose(fl, fr, atol=1e-9)
        if previous is not None:
            assert np.all(fl > previous)
        previous = fl


def test_single_finger_moves_only_its_actuator(hands):
    # Embodiment order: pinky, ring, middle, index, thumb bend, thumb rotation.
    index_only = hand_skeleton("right", curls=(1.0, 0.0, 0.0, 0.0))   # visionOS: index first
    v = hands(index_only, "right")
    assert v[3] < 0.05 and np.all(v[[0, 1, 2, 4, 5]] > 0.95), v


def test_operator_calibration_rescales(hands):
    half = hand_skeleton("right", (0.5,) * 4, 0.5, 0.5)
    assert np.all(hands(half, "right") > 0.2)
    hands.calibrate("right", hand_skeleton("right", **OPEN), half)
    np.testing.assert_allclose(hands(half, "right"), 0.0, atol=1e-6)
    np.testing.assert_allclose(hands(hand_skeleton("right", **OPEN), "right"), 1.0, atol=1e-6)
    with pytest.raises(HandCalibrationError, match="make a fist"):
        hands.calibrate("left", hand_skeleton("left", **OPEN), hand_skeleton("left", **OPEN))
