"""The 28-D G1 layout (docs/EMBODIMENT.md) and the validation of embodiment files."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from lara_g1.core.config import config_path
from lara_g1.core.embodiment import EmbodimentError, load_embodiment, parse_embodiment


@pytest.fixture()
def raw_g1() -> dict:
    return yaml.safe_load(config_path("embodiment/g1.yaml").read_text())


def test_g1_layout_matches_design():
    e = load_embodiment("g1")
    assert e.dim == 28
    assert [(g.name, g.start, g.stop) for g in e.groups] == [
        ("left_arm", 0, 7), ("right_arm", 7, 14), ("left_hand", 14, 20),
        ("right_hand", 20, 26), ("head", 26, 28)]
    assert e.joint_names[e.group("right_arm").start] == "right_shoulder_pitch"
    assert e.joint_names[26:] == ("head_yaw", "head_pitch")
    # Hands are 0..1 with 1 = open; the default pose opens them.
    for hand in ("left_hand", "right_hand"):
        sl = e.group(hand).slice
        assert np.all(e.lower[sl] == 0) and np.all(e.upper[sl] == 1)
        assert np.all(e.default_pose[sl] == 1)
    # The right shoulder roll mirrors the left.
    lr, rr = e.index("left_shoulder_roll"), e.index("right_shoulder_roll")
    assert e.lower[rr] == pytest.approx(-e.upper[lr]) and e.upper[rr] == pytest.approx(-e.lower[lr])
    assert e.within_limits(e.default_pose)


def test_clip_and_readonly_arrays():
    e = load_embodiment("g1")
    q = np.full(28, 10.0, dtype=np.float32)
    assert np.array_equal(e.clip(q), e.upper)
    with pytest.raises(ValueError):
        e.lower[0] = 0.0


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["joints"].pop(), "groups cover 28 joints but 27"),
    (lambda r: r["joints"][3].update(lower=3.0), "lower 3.0 must be below upper"),
    (lambda r: r["joints"][0].update(default=9.0), "default 9.0 is outside"),
    (lambda r: r["joints"][1].update(name="left_shoulder_pitch"), "duplicate joint names"),
    (lambda r: r.update(embodiment_id=64), "embodiment_id: must be < 64, got 64"),
    (lambda r: r["joints"][2].pop("upper"), "joints[2].upper: missing"),
    (lambda r: r.pop("groups"), "groups: missing"),
])
def test_invalid_files_are_refused_with_the_reason(raw_g1, mutate, message):
    raw = copy.deepcopy(raw_g1)
    mutate(raw)
    with pytest.raises(EmbodimentError, match=None) as info:
        parse_embodiment(raw, source="bad.yaml")
    assert message in str(info.value) and "bad.yaml" in str(info.value)
