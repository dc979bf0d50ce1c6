"""Cameras: the simulated head camera over DDS, replay of a LeRobot dataset, config errors."""
from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from lara_g1.robot.cameras import CameraError, Frame, ReplayCamera, SimCamera, make_camera
from lara_g1.robot.cameras.realsense import RealSenseCamera
from lara_g1.robot.sim.process import SimProcess, SimProcessError
from tests.helpers.dds import fresh_domain


def test_sim_camera_delivers_frames_of_the_configured_size():
    domain = fresh_domain()
    sim = SimProcess("pour", domain, render_size=(96, 128), camera_fps=10.0)
    try:
        sim.start()
    except SimProcessError as exc:
        if "cannot render offscreen" in str(exc):
            pytest.skip(f"no offscreen OpenGL on this machine: {str(exc)[-300:]}")
        raise
    with sim:
        cam = make_camera({"type": "sim", "domain_id": domain})
        assert isinstance(cam, SimCamera)
        with cam:
            first = cam.read(timeout_s=10.0)
            second = cam.read(timeout_s=5.0)
        for f in (first, second):
            assert isinstance(f, Frame) and f.image.shape == (96, 128, 3) and f.image.dtype == np.uint8
        assert second.index > first.index and second.stamp >= first.stamp
        assert first.stamp <= time.monotonic()
        assert first.image.std() > 5.0  # a rendered scene, not a blank buffer


def test_sim_camera_times_out_clearly_without_a_sim():
    cam = SimCamera(fresh_domain())
    cam.connect()
    with pytest.raises(CameraError, match="no frame from lara-sim"):
        cam.read(timeout_s=0.2)
    cam.disconnect()


def test_replay_camera_plays_a_lerobot_episode(tmp_path):
    from tests.helpers.synthetic import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path / "ds", episodes=1, frames_per_episode=6, image_size=(32, 48))
    cam = make_camera({"type": "replay", "source": str(root), "realtime": False, "loop": False})
    assert isinstance(cam, ReplayCamera)
    with cam:
        frames = [cam.read() for _ in range(6)]
        with pytest.raises(CameraError, match="ended after 6 frames"):
            cam.read()
    assert [f.index for f in frames] == list(range(6))
    assert all(f.image.shape == (32, 48, 3) for f in frames)
    from lara_g1.lara.data.lerobot import LeRobotDataset
    np.testing.assert_array_equal(frames[3].image, LeRobotDataset(root).frames("head", 0)[3])
    bad = ReplayCamera(root, episode=5)
    with pytest.raises(CameraError, match="episode 5 does not exist"):
        bad.connect()


def test_realsense_without_the_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"lara-g1\[realsense\]"):
        RealSenseCamera({"serial": "123"}).connect()


def test_make_camera_rejects_bad_configs():
    with pytest.raises(ValueError, match="realsense, sim or replay"):
        make_camera({"type": "webcam"})
    with pytest.raises(ValueError, match="domain_id"):
        make_camera({"type": "sim"})
    with pytest.raises(ValueError, match="source"):
        make_camera({"type": "replay"})


def _record_db3(path, frames: list[np.ndarray], fps: int = 30) -> None:
    """A hardware-free D455 recording: rs.software_device frames written by rs.recorder."""
    import pyrealsense2 as rs

    h, w, _ = frames[0].shape
    device = rs.software_device()
    sensor = device.add_sensor("Color")
    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = w, h, 50.0, 50.0, w / 2, h / 2
    intr.model, intr.coeffs = rs.distortion.none, [0.0] * 5
    vs = rs.video_stream()
    vs.type, vs.index, vs.uid = rs.stream.color, 0, 0
    vs.width, vs.height, vs.fps, vs.bpp, vs.fmt, vs.intrinsics = w, h, fps, 3, rs.format.rgb8, intr
    profile = sensor.add_video_stream(vs)
    recorder = rs.recorder(str(path), device)
    sensor.open(profile)
    queue = rs.frame_queue(len(frames) + 1)
    sensor.start(queue)
    buffers = []
    for i, img in enumerate(frames):
        buffers.append(img.tobytes())  # the frame references this memory until it is written
        f = rs.software_video_frame()
        f.pixels, f.bpp, f.stride = buffers[-1], 3, w * 3
        f.timestamp, f.domain, f.frame_number = i * 1000.0 / fps, rs.timestamp_domain.hardware_clock, i
        f.profile = profile.as_video_stream_profile()
        sensor.on_video_frame(f)
        time.sleep(0.01)
    time.sleep(0.1)
    sensor.stop()
    sensor.close()
    del recorder


def _banded_frames(n: int = 8) -> list[np.ndarray]:
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(n)]
    for i, f in enumerate(frames):
        f[:, : 8 * (i + 1), 1] = 255  # a growing green band: order is checkable
    return frames


def test_realsense_recording_plays_through_the_driver(tmp_path):
    pytest.importorskip("pyrealsense2", reason="pyrealsense2 (lara-g1[realsense]) not installed")
    frames = _banded_frames()
    path = tmp_path / "d455.db3"
    _record_db3(path, frames)
    cam = make_camera({"type": "replay", "source": str(path), "realtime": False, "loop": False})
    with cam:
        got = [cam.read(timeout_s=3.0) for _ in range(len(frames))]
    for want, frame in zip(frames, got):
        assert frame.image.shape == (48, 64, 3)
        np.testing.assert_array_equal(frame.image, want)
    assert [f.index for f in got] == list(range(len(frames)))


def test_realsense_recording_loses_no_frame_when_the_process_stalls_after_start(tmp_path, monkeypatch):
    """A non-real-time playback must not start in real time: if this process is descheduled
    right after ``pipeline.start`` (CI under load), a real-time playback plays on and drops the
    frames nobody reads. The stall is simulated with a pipeline whose start() sleeps."""
    rs = pytest.importorskip("pyrealsense2", reason="pyrealsense2 (lara-g1[realsense]) not installed")
    frames = _banded_frames()
    path = tmp_path / "d455.db3"
    _record_db3(path, frames)

    class StallingPipeline(rs.pipeline):
        def start(self, *args):
            profile = super().start(*args)
            time.sleep(0.6)  # longer than the 8-frame recording plays in real time
            return profile

    monkeypatch.setattr(rs, "pipeline", StallingPipeline)
    cam = make_camera({"type": "replay", "source": str(path), "realtime": False, "loop": False})
    with cam:
        got = [cam.read(timeout_s=3.0) for _ in range(len(frames))]
    assert [f.index for f in got] == list(range(len(frames)))
    np.testing.assert_array_equal(got[0].image, frames[0])
