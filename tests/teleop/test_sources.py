"""Tracking sources: synthetic smoothness and script, replay timing and file checks, Vision Pro."""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from lara_g1.teleop.sources import (
    ReplaySource,
    SyntheticSource,
    TrackingError,
    TrackingRecorder,
    load_tracking_file,
    make_source,
)
from lara_g1.teleop.sources.avp import AvpSource, convert_update
from lara_g1.teleop.sources.hand_model import hand_skeleton
from tests.fakes import FakeClock


def test_synthetic_is_smooth_on_its_grid_and_scripted():
    clock = FakeClock(50.0)
    src = SyntheticSource(rate_hz=90, episode_s=3.0, clock=clock)
    assert src.latest() is None
    src.connect()
    first = src.latest()
    clock.t += 5.0                       # holding the calibration pose until the first episode
    np.testing.assert_allclose(src.latest().left_wrist, first.left_wrist)
    clock.t = 50.0
    src.next_episode()
    prev = first
    for k in range(1, 400):
        clock.t = 50.0 + k / 120.0
        s = src.latest()
        assert abs((s.timestamp - 50.0) * 90 - round((s.timestamp - 50.0) * 90)) < 1e-6   # on the 90 Hz grid
        assert np.abs(s.left_wrist[:3, 3] - prev.left_wrist[:3, 3]).max() < 0.01       # < 1 cm per sample
        assert s.episode_end == (s.timestamp - 50.0 >= 3.0)
        prev = s
    assert prev.episode_end
    # Back at neutral at the end of the episode, and the next episode starts there again.
    np.testing.assert_allclose(prev.right_wrist, first.right_wrist, atol=1e-6)
    src.next_episode()
    s = src.latest()
    assert not s.episode_end
    np.testing.assert_allclose(s.right_wrist, first.right_wrist, atol=1e-9)


def _record(path, times):
    rec = TrackingRecorder(path)
    src = SyntheticSource(clock=FakeClock())
    src.connect()
    for i, t in enumerate(times):
        s = src.latest()
        s.timestamp = t
        s.episode_end = i == len(times) - 1
        s.head = s.head.copy()
        s.head[0, 3] = float(i)          # tag every sample with its index
        rec.add(s)
    return rec.save()


def test_replay_plays_at_recorded_timing(tmp_path):
    times = [0.0, 0.011, 0.05, 0.051, 0.2, 0.5]
    path = _record(tmp_path / "t.npz", times)
    clock = FakeClock(0.0)
    src = ReplaySource(path, clock=clock)
    assert src.latest() is None
    src.connect()
    for at, expected in [(0.0, 0), (0.0109, 0), (0.011, 1), (0.0505, 2), (0.051, 3), (0.19, 3),
                         (0.3, 4), (0.5, 5)]:
        clock.t = at
        s = src.latest()
        assert int(s.head[0, 3]) == expected, at
        assert s.timestamp == pytest.approx(times[expected])
        assert not src.finished
    assert src.latest().episode_end
    clock.t = 0.51
    assert src.finished
    fast = ReplaySource(path, speed=2.0, clock=clock)
    fast.connect()
    clock.t += 0.101                     # 0.202 s of recording
    assert int(fast.latest().head[0, 3]) == 4
    looped = ReplaySource(path, loop=True, clock=clock)
    looped.connect()
    clock.t += looped._period + 0.012
    assert int(looped.latest().head[0, 3]) == 1 and not looped.finished


def test_replay_in_real_time(tmp_path):
    path = _record(tmp_path / "rt.npz", [0.0, 0.15, 0.3])
    src = ReplaySource(path)
    src.connect()
    seen = []
    t0 = time.monotonic()
    while not src.finished and time.monotonic() - t0 < 5:
        idx = int(src.latest().head[0, 3])
        if not seen or seen[-1] != idx:
            seen.append(idx)
        time.sleep(0.005)
    assert seen == [0, 1, 2]


def test_recorder_keeps_samples_exact_and_drops_repeats(tmp_path):
    src = SyntheticSource(clock=FakeClock())
    src.connect()
    s = src.latest()
    rec = TrackingRecorder(tmp_path / "x.npz")
    assert rec.add(s) and not rec.add(s)
    data = load_tracking_file(rec.save())
    np.testing.assert_array_equal(data["head"][0], s.head)
    np.testing.assert_allclose(data["left_hand"][0], s.left_hand, atol=1e-6)


def test_bad_tracking_files_are_named(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, format=np.array("something-else"), t=np.zeros(1))
    with pytest.raises(TrackingError, match="format"):
        ReplaySource(bad)
    np.savez(bad, format=np.array("lara-tracking-v1"), t=np.zeros(2))
    with pytest.raises(TrackingError, match="missing arrays"):
        ReplaySource(bad)
    with pytest.raises(TrackingError, match="does not exist"):
        make_source(f"replay:{tmp_path / 'nope.npz'}")
    with pytest.raises(TrackingError, match="unknown tracking source"):
        make_source("kinect")
    with pytest.raises(TrackingError, match=".npz"):
        TrackingRecorder(tmp_path / "x.json")


# --------------------------------------------------------------------------- Vision Pro
def _avp_update(head_convention="z_up", yaw=0.0):
    """An update as avp-stream delivers it (Z-up world; see teleop.sources.avp)."""
    c, s = np.cos(yaw), np.sin(yaw)
    Rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    head = np.eye(4)[None].copy()
    if head_convention == "z_up":       # x right, y forward, z up
        local = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1.0]])
    else:                               # x right, y up, -z forward
        local = np.array([[0, 0, -1], [-1, 0, 0], [0, 1, 0.0]])
    head[0, :3, :3] = Rz @ local
    head[0, :3, 3] = (0, 0, 1.6)
    wrist = np.eye(4)[None]
    return {"head": head, "left_wrist": wrist, "right_wrist": wrist,
            "left_fingers": hand_skeleton("left"), "right_fingers": np.concatenate(
                [hand_skeleton("right"), np.tile(np.eye(4), (2, 1, 1))])}   # 27-joint app format


def test_avp_update_conversion():
    # Every avp-stream release sends the head as x right, y forward, z up (no detection).
    s = convert_update(_avp_update("z_up", yaw=0.5), stamp=3.0)
    assert s.timestamp == 3.0 and s.right_hand.shape == (25, 4, 4)
    np.testing.assert_allclose(s.head[:3, 0], [np.cos(0.5), np.sin(0.5), 0], atol=1e-12)   # forward
    np.testing.assert_allclose(s.head[:3, 2], [0, 0, 1], atol=1e-12)                        # up
    assert not s.left_tracked and not s.right_tracked       # identity wrists: hands not seen
    with pytest.raises(TrackingError, match="unexpected"):
        convert_update({"head": np.eye(4)}, 0.0)


class FakeStreamer:
    """Stands in for avp_stream.VisionProStreamer: a thread replaces .latest like the gRPC one."""

    def __init__(self, ip, record, convention="z_up", rate_hz=100.0):
        self.latest = None
        self.stopped = False
        self.paused = threading.Event()
        self._convention, self._period = convention, 1.0 / rate_hz
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        k = 0
        while not self.stopped:
            if not self.paused.is_set():
                self.latest = _avp_update(self._convention, yaw=0.01 * k)
                k += 1
            time.sleep(self._period)

    def stop(self):
        self.stopped = True


def _wait(cond, timeout=3.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout
        time.sleep(0.005)


def test_avp_source_streams_detects_loss_and_recovery():
    made = []
    src = AvpSource("10.0.0.2", stale_after_s=0.1,
                    streamer_factory=lambda **kw: made.append(FakeStreamer(**kw)) or made[-1])
    src.connect(timeout_s=2.0)
    first = src.latest()
    _wait(lambda: src.latest() is not first)
    assert np.allclose(src.latest().head[:3, 2], [0, 0, 1])     # z up
    made[0].paused.set()                                         # the stream stops
    _wait(lambda: src.lost)
    assert src.status()["losses"] == 1 and src.status()["age_s"] >= 0.1
    made[0].paused.clear()                                       # and comes back
    _wait(lambda: not src.lost)
    src.close()
    assert made[0].stopped


def test_avp_source_errors(monkeypatch):
    class Silent:
        def __init__(self, ip, record):
            self.latest = None
    with pytest.raises(TrackingError, match="no tracking data"):
        AvpSource("10.0.0.3", streamer_factory=Silent).connect(timeout_s=0.2)
    with pytest.raises(TrackingError, match="IP"):
        AvpSource("")
    monkeypatch.setitem(sys.modules, "avp_stream", None)        # the extra is not installed
    with pytest.raises(TrackingError, match=r"lara-g1\[teleop\]"):
        AvpSource("10.0.0.4").connect(timeout_s=0.2)
