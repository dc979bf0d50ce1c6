"""The Vision Pro path against the REAL avp-stream package (the ``teleop`` extra).

A fake Tracking Streamer app (the visionOS side: a gRPC server) is written here from avp-stream's
OWN generated stubs (``avp_stream.grpc_msg.handtracking_pb2[_grpc]``). It streams what the app
streams, in the app's frames: visionOS's world (y up) and device anchor (x right, y up, -z
forward), the hand anchors' wrist matrices and 27-joint skeletons, and, for a hand the headset has
not seen, an identity wrist matrix (and an identity skeleton). The operator it plays looks 50
degrees down at connect (operators look at their hands) and shows the hands only some time after
connecting, as on a real first use. On top: :class:`AvpSource`, the real retargeter, safety filter,
writer and record session; the robot and camera are the usual stand-ins.

Ports: avp-stream dials ``<ip>:12345`` and starts an HTTP info server on 0.0.0.0:8888. The fake app
listens on an ephemeral loopback port; the ``vision_pro`` fixture routes gRPC channels for
127.0.0.1:12345 there (``grpc.insecure_channel``, which avp-stream and AvpSource both dial
through) and starts the package's info server on an ephemeral port. No fixed port is bound.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from dataclasses import replace

import numpy as np
import pytest

from lara_g1.teleop.sources import avp  # noqa: E402
from lara_g1.teleop.sources.base import TrackingError  # noqa: E402

try:     # imported as AvpSource imports it: avp-stream's own import replaces our signal handlers
    avp_stream_module = avp._import_avp_stream()
except TrackingError as exc:
    pytest.skip(f"the teleop extra (avp-stream) is not installed: {exc}", allow_module_level=True)
import grpc  # noqa: E402
from avp_stream.grpc_msg import handtracking_pb2, handtracking_pb2_grpc  # noqa: E402

from lara_g1.core.embodiment import load_embodiment  # noqa: E402
from lara_g1.robot.control import ControlConfig  # noqa: E402
from lara_g1.robot.kinematics import axis_angle_matrix  # noqa: E402
from lara_g1.robot.safety import SafetyFilter  # noqa: E402
from lara_g1.teleop.retarget.retargeter import Retargeter  # noqa: E402
from lara_g1.teleop.session import RecordSession, SessionConfig, SessionError, SessionOutcome  # noqa: E402
from lara_g1.teleop.sources.avp import AvpSource  # noqa: E402
from lara_g1.teleop.sources.hand_model import hand_skeleton  # noqa: E402
from tests.fakes import FakeRobot, StaticCamera  # noqa: E402

pytestmark = pytest.mark.timeout(60)

AVP_PORT = 12345                               # what avp-stream dials (hard-coded in the package)
SIDES = ("left", "right")
# avp-stream's YUP2ZUP: its z-up world from visionOS's y-up world (x, y, z) -> (x, -z, y).
M = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
SAFETY = replace(ControlConfig.load("default").safety, ramp_in_s=1.0, fade_s=0.3)
NEUTRAL_WRIST = {"left": np.array([0.30, 0.20, 1.05]), "right": np.array([0.30, -0.20, 1.05])}


def _pose(R, p):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, p
    return T


def _fill(msg, T):
    for r in range(4):
        for c in range(4):
            setattr(msg, f"m{r}{c}", float(T[r, c]))


class Operator:
    """The person wearing the headset, in avp-stream's z-up world: faces ``heading`` (deg) from an
    arbitrary spot, head pitched ``pitch`` (deg, down positive). ``offset[side]``: the wrist's
    displacement (m) from its neutral spot in the operator's frame (x forward, y left, z up).
    ``tracked[side]``: whether the headset sees that hand."""

    def __init__(self, heading=115.0, pitch=50.0, tracked=False):
        self.heading, self.pitch = np.radians(heading), np.radians(pitch)
        self.origin = np.array([0.7, -1.2, 0.0])
        self.offset = {s: np.zeros(3) for s in SIDES}
        self.tracked = dict.fromkeys(SIDES, tracked)
        self._wrist_R = {"left": axis_angle_matrix([1, 0, 0], 0.4), "right": axis_angle_matrix([1, 0, 0], -0.4)}

    @property
    def Rz(self):  # noqa: N802 - the rotation's usual name
        return axis_angle_matrix([0, 0, 1], self.heading)

    @property
    def forward(self):
        return self.Rz @ np.array([1.0, 0.0, 0.0])

    def wrist(self, side, offset=None):
        """The wrist pose in the z-up world (what avp-stream should deliver)."""
        offset = self.offset[side] if offset is None else offset
        return _pose(self.Rz @ self._wrist_R[side], self.origin + self.Rz @ (NEUTRAL_WRIST[side] + offset))

    def head(self):
        """The device anchor in the z-up world: x right, y up, z backwards (visionOS's axes)."""
        ps, pt = self.heading, self.pitch
        fwd = np.array([np.cos(ps) * np.cos(pt), np.sin(ps) * np.cos(pt), -np.sin(pt)])
        up = np.array([np.cos(ps) * np.sin(pt), np.sin(ps) * np.sin(pt), np.cos(pt)])
        right = np.cross(fwd, up)
        return _pose(np.column_stack([right, up, -fwd]), self.origin + np.array([0.0, 0.0, 1.6]))

    def update(self):
        """One HandUpdate as the app sends it: visionOS's y-up world."""
        to_v = _pose(M.T, np.zeros(3))
        msg = handtracking_pb2.HandUpdate()
        _fill(msg.Head, to_v @ self.head())
        for side in SIDES:
            hand = getattr(msg, f"{side}_hand")
            if self.tracked[side]:
                _fill(hand.wristMatrix, to_v @ self.wrist(side))
                joints = np.concatenate([hand_skeleton(side), np.tile(np.eye(4), (2, 1, 1))])  # 27 joints
            else:                                   # not seen yet: identity wrist and skeleton
                _fill(hand.wristMatrix, np.eye(4))
                joints = np.tile(np.eye(4), (27, 1, 1))
            for J in joints:
                _fill(hand.skeleton.jointMatrices.add(), J)
        return msg


class FakeTrackingStreamer(handtracking_pb2_grpc.HandTrackingServiceServicer):
    """The Tracking Streamer app's gRPC service (avp-stream's generated servicer), ~100 updates/s."""

    def __init__(self, operator, port=0, rate_hz=100.0):
        self.operator, self.period = operator, 1.0 / rate_hz
        self.sending = threading.Event()
        self.sending.set()
        self.requests = []
        self.updates = 0
        self._stopped = threading.Event()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="fake-app"), options=[("grpc.so_reuseport", 0)])
        handtracking_pb2_grpc.add_HandTrackingServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()

    def StreamHandUpdates(self, request, context):  # noqa: N802 - the generated servicer's name
        self.requests.append(request)
        next_t = time.monotonic()
        while context.is_active() and not self._stopped.is_set():
            if self.sending.is_set():
                self.updates += 1
                yield self.operator.update()
            next_t += self.period
            time.sleep(max(0.0, next_t - time.monotonic()))

    def kill(self):
        """The app quits (or the headset goes away): the server and its streams end now."""
        self._stopped.set()
        self.server.stop(grace=None).wait(2.0)


@pytest.fixture
def vision_pro(monkeypatch):
    """(operator, start_server): start_server(port=0) runs a fake app reachable as 127.0.0.1:12345."""
    from avp_stream.streamer import VisionProStreamer
    route = {}
    real_channel = grpc.insecure_channel

    def channel(target, *args, **kwargs):
        host, _, port = target.rpartition(":")
        if port == str(AVP_PORT) and host in route:
            target = f"{host}:{route[host]}"
        return real_channel(target, *args, **kwargs)

    monkeypatch.setattr(grpc, "insecure_channel", channel)
    info = VisionProStreamer._start_info_server
    monkeypatch.setattr(VisionProStreamer, "_start_info_server", lambda self, port=8888: info(self, port=0))
    operator = Operator()
    servers = []

    def start(port=0):
        servers.append(FakeTrackingStreamer(operator, port))
        route["127.0.0.1"] = servers[-1].port
        return servers[-1]
    yield operator, start
    for s in servers:
        s.kill()


def _connect(**kw):
    source = AvpSource("127.0.0.1", **kw)
    source.connect(timeout_s=10.0)
    return source


def _session(tmp_path, source, *, episodes, episode_time, start_timeout=10.0):
    robot = FakeRobot()
    safety = SafetyFilter(load_embodiment("g1"), SAFETY, robot)
    camera = StaticCamera(size=(48, 64))
    writers = []

    def factory(hw):
        from lara_g1.lara.data.writer import LeRobotWriter
        writers.append(LeRobotWriter(tmp_path / "ds", fps=30, cameras={"head": hw}))
        return writers[0]

    retargeter = Retargeter()
    session = RecordSession(
        SessionConfig(task="pour", episodes=episodes, episode_time_s=episode_time, reset_time_s=0.2,
                      calibration_s=0.2, start_timeout_s=start_timeout),
        source, retargeter, safety, robot, camera, factory, command_hz=SAFETY.command_hz,
        tracking_timeout_s=0.1)
    return session, robot, retargeter, writers


def _in_background(fn):
    errors = []

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            errors.append(exc)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


def _wait(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _show_hands_later(operator, delay=0.3):
    """The headset sees the hands a little after connecting (the app sends identities until then)."""
    def show():
        time.sleep(delay)
        for side in SIDES:
            operator.tracked[side] = True
    return _in_background(show)


def _assert_calibrated(retargeter, operator):
    """The calibration faces the operator's heading and holds the wrists where they really are."""
    cal = retargeter.calibration
    assert cal is not None
    assert abs(np.degrees(cal.heading) - np.degrees(operator.heading)) < 0.5, \
        f"calibration heading {np.degrees(cal.heading):.1f} deg, the operator faces {np.degrees(operator.heading):.1f}"
    assert abs(np.degrees(cal.head_pitch) - np.degrees(operator.pitch)) < 0.5
    for side in SIDES:
        np.testing.assert_allclose(cal.wrists[side][:3, 3], operator.wrist(side, np.zeros(3))[:3, 3], atol=1e-3)


def _hand_moves(retargeter, robot_q):
    """Robot hand displacement (torso frame, m) from the calibration pose, per side."""
    out = {}
    for side in SIDES:
        sl = retargeter.emb.group(f"{side}_arm").slice
        out[side] = retargeter.chains[side].fk(np.asarray(robot_q, np.float64)[sl])[:3, 3] - retargeter.home[side][:3, 3]
    return out


def _arm(q, side="right"):
    return np.asarray(q)[load_embodiment("g1").group(f"{side}_arm").slice]


# --------------------------------------------------------------------------- calibration
def test_calibration_waits_for_tracked_hands(vision_pro, tmp_path):
    operator, start = vision_pro
    start()
    source = _connect()
    try:
        session, robot, retargeter, writers = _session(tmp_path, source, episodes=1, episode_time=0.6)
        seen = {}

        def operator_script():
            time.sleep(1.0)                          # the app streams, the hands are not seen
            seen["calibration"] = retargeter.calibration
            seen["sent"] = len(robot.sent)
            operator.tracked["left"] = True
            time.sleep(0.4)                          # one hand is not enough
            seen["calibration_one_hand"] = retargeter.calibration
            seen["sent_one_hand"] = len(robot.sent)
            operator.tracked["right"] = True
        t, errors = _in_background(operator_script)
        report = session.run()
        t.join()
        assert not errors
        writers[0].close()
        assert seen["calibration"] is None and seen["sent"] == 0, "calibrated (and moved) on hands never seen"
        assert seen["calibration_one_hand"] is None and seen["sent_one_hand"] == 0
        _assert_calibrated(retargeter, operator)
        assert report.outcome is SessionOutcome.COMPLETE and len(report.episodes) == 1
        # The operator held still: the arms stayed at the calibration pose.
        for side, d in _hand_moves(retargeter, robot.q).items():
            assert np.linalg.norm(d) < 0.01, (side, d)
    finally:
        source.close()


def test_hands_never_seen_record_nothing_and_say_so(vision_pro, tmp_path):
    operator, start = vision_pro
    start()
    source = _connect()
    try:
        operator.tracked["left"] = True              # the right hand never comes into view
        session, robot, retargeter, writers = _session(tmp_path, source, episodes=1, episode_time=0.5,
                                                       start_timeout=1.5)
        with pytest.raises(SessionError, match="did not see the right hand") as info:
            session.run()
        assert "Vision Pro at 127.0.0.1" in str(info.value)
        assert retargeter.calibration is None and robot.sent == [] and session.report.episodes == []
    finally:
        source.close()


def test_head_pitched_50_deg_down_at_connect_does_not_mirror(vision_pro, tmp_path):
    operator, start = vision_pro
    start()
    source = _connect()
    try:
        shown, _ = _show_hands_later(operator, delay=1.0)   # looking down, hands not yet in view
        head = source.latest().head
        # This project's head frame: x forward (where the operator looks), z up.
        expected_fwd = np.array([np.cos(operator.heading) * np.cos(operator.pitch),
                                 np.sin(operator.heading) * np.cos(operator.pitch), -np.sin(operator.pitch)])
        np.testing.assert_allclose(head[:3, 0], expected_fwd, atol=1e-5)
        session, robot, retargeter, writers = _session(tmp_path, source, episodes=1, episode_time=2.0)

        def operator_script():
            _wait(lambda: session.writer is not None and session.writer.recording, what="the episode")
            for k in range(1, 41):                   # 8 cm forward (right) and left (left) over 0.4 s
                operator.offset["right"] = np.array([0.08 * k / 40, 0.0, 0.0])
                operator.offset["left"] = np.array([0.0, 0.08 * k / 40, 0.0])
                time.sleep(0.01)
        t, errors = _in_background(operator_script)
        session.run()
        t.join()
        assert not errors
        writers[0].close()
        _assert_calibrated(retargeter, operator)
        scale = retargeter.config.arm.motion_scale
        moved = _hand_moves(retargeter, robot.q)
        np.testing.assert_allclose(moved["right"], [0.08 * scale, 0, 0], atol=0.015)   # forward, not back
        np.testing.assert_allclose(moved["left"], [0, 0.08 * scale, 0], atol=0.015)    # left, not right
    finally:
        source.close()


# --------------------------------------------------------------------------- hands
def test_a_hand_lost_holds_its_arm_and_rejoins_smoothly(vision_pro, tmp_path):
    operator, start = vision_pro
    start()
    source = _connect()
    try:
        shown, _ = _show_hands_later(operator)
        session, robot, retargeter, writers = _session(tmp_path, source, episodes=1, episode_time=2.5)
        marks = {}

        def operator_script():
            _wait(lambda: session.writer is not None and session.writer.recording, what="the episode")
            time.sleep(0.3)
            marks["lost"] = time.monotonic()
            operator.tracked["right"] = False       # out of view: the app sends identity again
            operator.offset["right"] = np.array([0.10, 0.0, 0.0])   # ... and the hand moves, unseen
            time.sleep(0.6)
            marks["back"] = time.monotonic()
            operator.tracked["right"] = True        # seen again, 10 cm forward of where it was lost
        t, errors = _in_background(operator_script)
        session.run()
        t.join()
        shown.join()
        assert not errors
        writers[0].close()
        _assert_calibrated(retargeter, operator)
        sent = [s for s in robot.sent if s.blend > 0.999]
        held = np.array([_arm(s.q) for s in sent if marks["lost"] + 0.05 <= s.time <= marks["back"]])
        assert len(held) > 30
        assert np.abs(held - held[0]).max() < 1e-4, "the right arm moved while its hand was not tracked"
        after = np.array([_arm(s.q) for s in sent if s.time >= marks["back"]])
        t_after = np.array([s.time for s in sent if s.time >= marks["back"]])
        # Smoothly: the joint that moves most takes >= 0.2 s from 10 % to 90 % of its way (an arm
        # that snaps to the reappeared hand does it in two or three 10 ms IK frames).
        j = int(np.argmax(np.abs(after[-1] - held[-1])))
        progress = (after[:, j] - held[-1, j]) / (after[-1, j] - held[-1, j])
        rise = t_after[np.argmax(progress >= 0.9)] - t_after[np.argmax(progress >= 0.1)]
        assert rise >= 0.2, f"the right arm jumped to the reappeared hand ({rise:.3f} s for 80 % of its way)"
        lo, hi = np.minimum(held[-1], after[-1]) - 0.05, np.maximum(held[-1], after[-1]) + 0.05
        assert np.all((after >= lo) & (after <= hi)), "the right arm swung past where it was going"
        moved = _hand_moves(retargeter, robot.q)
        np.testing.assert_allclose(moved["right"], [0.10 * retargeter.config.arm.motion_scale, 0, 0], atol=0.015)
        np.testing.assert_allclose(moved["left"], [0, 0, 0], atol=0.01)
    finally:
        source.close()


# --------------------------------------------------------------------------- the stream
def test_server_killed_mid_episode_names_the_vision_pro_and_the_episodes(vision_pro, tmp_path):
    operator, start = vision_pro
    server = start()
    source = _connect()
    try:
        shown, _ = _show_hands_later(operator)
        session, robot, retargeter, writers = _session(tmp_path, source, episodes=3, episode_time=2.0)
        marks = {}

        def kill_in_episode_2():
            _wait(lambda: len(session.report.episodes) == 1 and session.writer.recording, what="episode 2")
            time.sleep(0.3)
            marks["killed"] = time.monotonic()
            server.kill()
        t, errors = _in_background(kill_in_episode_2)
        with pytest.raises(SessionError) as info:
            session.run()
        t.join()
        assert not errors
        writers[0].close()
        _assert_calibrated(retargeter, operator)
        text = str(info.value)
        assert "Vision Pro at 127.0.0.1" in text, text
        assert "1 episode saved" in text and "discarded" in text, text
        assert session.report.outcome is SessionOutcome.ERROR and len(session.report.episodes) == 1
        # The filter held the last command, then faded out.
        after = [s for s in robot.sent if s.time > marks["killed"] + 0.15]
        assert after and after[-1].blend == 0.0
        assert max(np.abs(s.q - after[0].q).max() for s in after) < 1e-3
        assert source.lost
    finally:
        source.close()


def test_a_stall_that_resumes_holds_then_follows(vision_pro, tmp_path):
    operator, start = vision_pro
    server = start()
    source = _connect()
    try:
        shown, _ = _show_hands_later(operator)
        session, robot, retargeter, writers = _session(tmp_path, source, episodes=2, episode_time=1.2)
        marks = {}

        def stall_in_episode_1():
            _wait(lambda: session.writer is not None and session.writer.recording, what="episode 1")
            time.sleep(0.2)
            server.sending.clear()                   # the app stops sending, the stream stays open
            marks["stall"] = time.monotonic()
            time.sleep(0.35)
            operator.offset["right"] = np.array([0.06, 0.0, 0.0])
            server.sending.set()
            marks["resume"] = time.monotonic()
        t, errors = _in_background(stall_in_episode_1)
        report = session.run()
        t.join()
        assert not errors
        writers[0].close()
        _assert_calibrated(retargeter, operator)
        assert report.outcome is SessionOutcome.COMPLETE and len(report.episodes) == 2
        assert session.safety.interventions.get("stale_command", 0) >= 1
        assert source.status()["losses"] >= 1 and not source.lost
        held = [s.q for s in robot.sent if marks["stall"] + 0.12 <= s.time <= marks["resume"]]
        assert held and max(np.abs(q - held[0]).max() for q in held) < 1e-4
        moved = _hand_moves(retargeter, robot.q)
        np.testing.assert_allclose(moved["right"], [0.06 * retargeter.config.arm.motion_scale, 0, 0], atol=0.015)
    finally:
        source.close()


def test_the_app_restarting_reconnects(vision_pro):
    operator, start = vision_pro
    operator.tracked = dict.fromkeys(SIDES, True)
    server = start()
    source = _connect(stale_after_s=0.1)
    try:
        _wait(lambda: source.status()["updates"] > 5, what="updates")
        assert server.requests[0].Head.m00 == 888.0       # avp-stream's discovery request
        assert server.requests[0].Head.m30 >= 25000       # with the library version (2.50 on)
        server.kill()
        _wait(lambda: source.lost, what="the loss")
        again = start(server.port)
        _wait(lambda: not source.lost, what="the stream to come back")
        assert again.requests and source.status()["losses"] == 1
        np.testing.assert_allclose(source.latest().head[:3, 2],
                                   [np.cos(operator.heading) * np.sin(operator.pitch),
                                    np.sin(operator.heading) * np.sin(operator.pitch), np.cos(operator.pitch)], atol=1e-5)
    finally:
        source.close()


# --------------------------------------------------------------------------- side effects
def test_close_stops_what_avp_stream_started_and_prints_nothing(vision_pro, capfd):
    operator, start = vision_pro
    operator.tracked = dict.fromkeys(SIDES, True)
    start()
    before = set(threading.enumerate())
    source = _connect()
    _wait(lambda: source.status()["updates"] > 5, what="updates")
    streamer = source._streamer
    _wait(lambda: getattr(streamer, "info_server", None) is not None, what="the info server")
    info_port = streamer.info_server.server_address[1]
    source.close()
    time.sleep(0.3)
    left = [t for t in set(threading.enumerate()) - before if t.is_alive() and not t.name.startswith("fake-app")]
    assert not left, f"threads left running after close(): {left}"
    import socket
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", info_port)) != 0, "the HTTP info server still listens"
    out, _ = capfd.readouterr()
    assert out == "", f"avp-stream printed to stdout: {out!r}"


def test_importing_avp_stream_keeps_the_signal_handlers():
    code = (
        "import signal, sys\n"
        "def mine(*a): pass\n"
        "signal.signal(signal.SIGTERM, mine); signal.signal(signal.SIGINT, mine)\n"
        "from lara_g1.teleop.sources import avp\n"
        "avp._import_streamer()\n"
        "import avp_stream.streamer\n"
        "assert signal.getsignal(signal.SIGTERM) is mine, signal.getsignal(signal.SIGTERM)\n"
        "assert signal.getsignal(signal.SIGINT) is mine, signal.getsignal(signal.SIGINT)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert signal.getsignal(signal.SIGINT) is not avp_stream_module._signal_handler   # nor in pytest


@pytest.mark.parametrize("ip", ["localhost", "visionpro.local", "::1", "fe80::1", "ABC-1234", "10.0.0", "10.0.0.256"])
def test_avp_ip_must_be_an_ipv4_address(ip):
    with pytest.raises(TrackingError, match="cross-network"):
        AvpSource(ip)


def test_an_avp_stream_the_app_refuses_is_named(monkeypatch):
    from lara_g1.teleop.sources import avp
    monkeypatch.setattr(avp, "_installed_version", lambda: "2.2.2")
    with pytest.raises(TrackingError, match=r"2\.2\.2.*Tracking Streamer.*2\.50"):
        AvpSource("10.0.0.9").connect(timeout_s=0.5)


def test_no_app_listening_is_named_and_nothing_is_left_running(vision_pro):
    _, start = vision_pro
    start().kill()                                   # the headset's address answers, no app
    with pytest.raises(TrackingError, match=r"no tracking data from the Vision Pro at 127\.0\.0\.1.*UNAVAILABLE"):
        AvpSource("127.0.0.1").connect(timeout_s=1.0)
    time.sleep(0.2)
    assert not [t for t in threading.enumerate() if t.name in ("avp-stream", "avp-poll")]


def test_record_refuses_a_host_name_before_starting_anything(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lara_g1.teleop.cli", "record", "--task", "pour", "--episodes", "1",
                           "--episode-time", "1", "--source", "avp", "--avp-ip", "localhost",
                           "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and "cross-network" in proc.stderr, proc.stderr
    assert not (tmp_path / "x").exists()
