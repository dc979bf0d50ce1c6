"""The record loop's logic with the real writer, retargeter and safety filter; the robot and the
camera are stand-ins behind their interfaces (the motors and the D455 cannot be here)."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from lara_g1.core.embodiment import load_embodiment
from lara_g1.lara.data.lerobot import LeRobotDataset
from lara_g1.lara.data.validate import validate_dataset
from lara_g1.lara.data.writer import LeRobotWriter
from lara_g1.robot.cameras.base import Camera, Frame
from lara_g1.robot.control import ControlConfig
from lara_g1.robot.safety import Phase, SafetyFilter
from lara_g1.teleop.keys import NEXT, RERECORD, STOP, RecordKeys, decode_keys
from lara_g1.teleop.retarget.retargeter import Retargeter
from lara_g1.teleop.session import RecordSession, SessionConfig, SessionError, SessionOutcome, TeleopControl
from lara_g1.teleop.sources import SyntheticSource
from tests.fakes import FakeClock, FakeRobot

# Quicker than configs/control/default.yaml (ramp-in 2 s, fade 2 s), within the filter's bounds.
SAFETY = replace(ControlConfig.load("default").safety, ramp_in_s=1.0, fade_s=0.3)


class ClockCamera(Camera):
    """30 fps frames on a fixed time grid, stamped at capture; stalls until ``stall_until`` on request."""

    def __init__(self, fps=30.0, size=(48, 64)):
        self.period, self.size = 1.0 / fps, size
        self.stall_until = 0.0
        self._next = 0.0

    def connect(self):
        self._next = time.monotonic()

    def read(self, timeout_s=1.0):
        self._next += self.period
        time.sleep(max(0.0, self._next - time.monotonic()))
        while time.monotonic() < self.stall_until:
            time.sleep(0.005)
            self._next = time.monotonic()
        img = np.zeros((*self.size, 3), np.uint8)
        return Frame(image=img, stamp=time.monotonic())

    def disconnect(self):
        pass


class ScriptedKeys(RecordKeys):
    """Keys pressed at given times after start (what a person at the terminal would do)."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = sorted(schedule)

    def start(self):
        t0 = time.monotonic()

        def press():
            for at, key in self.schedule:
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                self.events.put(key)
        threading.Thread(target=press, daemon=True).start()
        return self


def _session(tmp_path, source, *, episodes=2, episode_time=1.0, keys=None, camera=None, judge=None, **cfg):
    emb = load_embodiment("g1")
    safety_cfg = SAFETY
    robot = FakeRobot()                    # an ideal servo, its state stamped now
    safety = SafetyFilter(emb, safety_cfg, robot)
    camera = camera or ClockCamera()
    camera.connect()
    writers = []

    def factory(hw):
        writers.append(LeRobotWriter(tmp_path / "ds", fps=30, cameras={"head": hw}))
        return writers[0]

    session = RecordSession(
        SessionConfig(task="pour", episodes=episodes, episode_time_s=episode_time, reset_time_s=0.2,
                      calibration_s=0.2, **cfg),
        source, Retargeter(), safety, robot, camera, factory, command_hz=safety_cfg.command_hz,
        tracking_timeout_s=0.1, keys=keys or ScriptedKeys([]), judge=judge)
    return session, robot, writers


def test_decode_keys():
    assert decode_keys("n\x1b[Cr\x1b[Dq\x1b\x1b[A") == [NEXT, NEXT, RERECORD, RERECORD, STOP, STOP]


def test_episodes_on_the_grid_and_rerecord(tmp_path):
    source = SyntheticSource()
    source.connect()
    # Ramp-in takes 1 s after calibration; the re-record key lands in the first episode.
    session, robot, writers = _session(tmp_path, source, episodes=2, episode_time=1.0,
                                       keys=ScriptedKeys([(2.0, RERECORD)]))
    report = session.run()
    writers[0].close()
    assert report.rerecorded == 1 and len(report.episodes) == 2
    assert [e.frames for e in report.episodes] == [30, 30]
    assert validate_dataset(tmp_path / "ds") == []
    ds = LeRobotDataset(tmp_path / "ds")
    assert ds.num_episodes == 2 and ds.episode(1).task == "pour"
    assert robot.sent[-1].blend == 0.0             # faded out at the end


def test_judged_episodes_failed_ones_discarded(tmp_path):
    source = SyntheticSource()
    source.connect()
    outcomes = iter([{"Pick": True, "Full": False}, {"Pick": True, "Full": True},
                     {"Pick": False, "Full": False}, {"Pick": True, "Full": True}, {"Pick": True, "Full": True}])
    session, _, writers = _session(tmp_path, source, episodes=3, episode_time=0.4, discard_failed=True,
                                   judge=lambda: next(outcomes))
    report = session.run()
    writers[0].close()
    assert [a.kept for a in report.attempts] == [False, True, False, True, True]
    assert [a.stages for a in report.failed] == [{"Pick": True, "Full": False}, {"Pick": False, "Full": False}]
    assert len(report.episodes) == 3 and all(e.stages["Full"] for e in report.episodes)
    assert LeRobotDataset(tmp_path / "ds").num_episodes == 3


def test_as_many_failures_as_episodes_stop_the_session(tmp_path):
    source = SyntheticSource()
    source.connect()
    session, robot, writers = _session(tmp_path, source, episodes=2, episode_time=0.4, discard_failed=True,
                                       judge=lambda: {"Full": False})
    report = session.run()
    writers[0].close()
    assert report.outcome is SessionOutcome.TOO_MANY_FAILED
    assert not report.episodes and len(report.attempts) == 2
    assert robot.sent[-1].blend == 0.0


def test_stop_key_saves_the_episode_and_ends(tmp_path):
    source = SyntheticSource()
    source.connect()
    session, _, writers = _session(tmp_path, source, episodes=5, episode_time=None,
                                   keys=ScriptedKeys([(2.0, STOP)]))
    report = session.run()
    writers[0].close()
    assert report.outcome is SessionOutcome.STOPPED and len(report.episodes) == 1
    assert 5 <= report.episodes[0].frames <= 60


def test_camera_stall_counts_dropped_frames_and_keeps_the_time_base(tmp_path):
    source = SyntheticSource()
    source.connect()
    camera = ClockCamera()
    session, _, writers = _session(tmp_path, source, episodes=1, episode_time=1.5, camera=camera)
    orig = session._record_episode

    def stall_then_record(episode):
        camera.stall_until = time.monotonic() + 0.5
        return orig(episode)
    session._record_episode = stall_then_record
    report = session.run()
    writers[0].close()
    ep = report.episodes[0]
    assert ep.frames == 45
    # ~0.5 s of 30 fps minus the 1.5-period grace; a recorder that fell behind on a loaded machine
    # also drops the frames of its late ticks, which the report counts apart
    assert 10 <= ep.dropped <= 17 + ep.late
    ds = LeRobotDataset(tmp_path / "ds")
    np.testing.assert_allclose(ds.episode(0).timestamps, np.arange(45) / 30, atol=1e-4)


class FreezableSource(SyntheticSource):
    """The synthetic operator whose tracking stream can stop (a lost Vision Pro connection)."""

    frozen: object = None

    def latest(self):
        return self.frozen if self.frozen is not None else super().latest()


def test_tracking_loss_holds_the_arms_then_recovers():
    clock = FakeClock(100.0)
    robot = FakeRobot(clock=clock)
    safety = SafetyFilter(load_embodiment("g1"), SAFETY, robot, clock=clock)
    source = FreezableSource(clock=clock)
    source.connect()
    retarget = Retargeter()
    retarget.calibrate([source.latest()])
    control = TeleopControl(source, retarget, safety, robot, hz=SAFETY.command_hz,
                            tracking_timeout_s=0.1, clock=clock)
    safety.start(robot.read_state().q, clock())
    source.next_episode()

    def run(seconds):
        for _ in range(int(seconds * SAFETY.command_hz)):
            clock.t += 1.0 / SAFETY.command_hz
            control.tick(clock.t)
    run(1.5)                                        # ramp-in done, following the operator
    assert safety.phase is Phase.RUN and control.tracking_ok and control.stale_ticks == 0
    state, command = control.at(clock.t)            # the newest tick of the history: what was sent
    np.testing.assert_array_equal(command, robot.q)
    np.testing.assert_array_equal(state, robot.q)
    assert not control.episode_ended(clock.t, since=0.0)
    moving = robot.q.copy()
    source.frozen = source.latest()                 # the stream stops
    run(0.3)
    assert not control.tracking_ok and control.stale_ticks > 0
    assert safety.phase is Phase.HOLD and safety.interventions.get("stale_command", 0) == 1
    held = robot.q.copy()
    run(0.1)
    np.testing.assert_array_equal(robot.q, held)    # holding the last command
    source.frozen = None                            # and it comes back
    run(0.2)
    assert control.tracking_ok and safety.phase is Phase.RUN
    assert not np.array_equal(robot.q, moving)


def test_session_reports_a_faded_out_filter(tmp_path):
    source = FreezableSource()
    source.connect()
    session, _, _ = _session(tmp_path, source, episodes=1, episode_time=30.0)
    orig = session._record_episode

    def lose_tracking(episode):
        source.frozen = source.latest()            # the headset goes away for good
        return orig(episode)
    session._record_episode = lose_tracking
    with pytest.raises(SessionError, match="faded the arms out"):
        session.run()
    assert session.report.outcome is SessionOutcome.ERROR
    assert not (tmp_path / "ds" / "meta" / "episodes").exists() or \
        LeRobotDataset(tmp_path / "ds").num_episodes == 0


def test_record_keys_from_a_terminal():
    import os
    master, slave = os.openpty()
    with os.fdopen(slave, "r") as stream:
        keys = RecordKeys(stream)
        assert RecordKeys.interactive(stream)
        with keys:
            os.write(master, b"\x1b[C")
            os.write(master, b"r")
            os.write(master, b"\x1b")
            got = [keys.events.get(timeout=2.0) for _ in range(3)]
        assert got == [NEXT, RERECORD, STOP]
    os.close(master)


def test_replayed_tracking_drives_a_session(tmp_path):
    from lara_g1.teleop.sources import ReplaySource, TrackingRecorder

    clock = FakeClock()
    operator = SyntheticSource(rate_hz=60, episode_s=1.0, clock=clock)
    operator.connect()
    recorder = TrackingRecorder(tmp_path / "stream.npz")
    for k in range(int(3.0 * 60)):      # neutral while calibrating and ramping in, then a 1 s episode
        clock.t = k / 60
        if k == int(1.6 * 60):
            operator.next_episode()
        recorder.add(operator.latest())
    replay = ReplaySource(recorder.save())
    replay.connect()
    session, _, writers = _session(tmp_path, replay, episodes=3, episode_time=None)
    report = session.run()
    writers[0].close()
    # The recorded script ends its episode after ~1 s (30 frames), plus up to ~0.4 s when the session's
    # calibration and ramp-in (~1.2 s) end before the script's episode start at 1.6 s; then the
    # stream runs out.
    assert len(report.episodes) >= 1 and 15 <= report.episodes[0].frames <= 45, report
    assert report.outcome is SessionOutcome.SOURCE_FINISHED
