"""lara-head: the head mount's controller against fake Dynamixel servos on a pseudo-terminal.

The fake (tests/fakes/dynamixel.py) is written from ROBOTIS' public Protocol 2.0 description and
checked here against the description's own example packets; the controller talks to it through
the real dynamixel-sdk (the ``head`` extra), and to the robot side over real DDS on loopback.
"""
from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from cyclonedds.core import Policy, Qos

from lara_g1.core.extras import MissingExtraError
from lara_g1.robot.dds import participant as dds
from lara_g1.robot.dds.messages import HeadState_
from lara_g1.robot.head import DdsHead
from lara_g1.robot.head_mount import cli
from lara_g1.robot.head_mount.bus import (
    ADDR_MAX_POSITION_LIMIT,
    ADDR_MIN_POSITION_LIMIT,
    ADDR_OPERATING_MODE,
    DynamixelBus,
    ServoPortError,
)
from lara_g1.robot.head_mount.config import (
    HeadMountConfig,
    HeadMountConfigError,
    load_head_config,
    rad_to_ticks,
    ticks_to_rad,
)
from lara_g1.robot.head_mount.controller import HeadController, HeadMountError, HeadServer, Phase
from lara_g1.robot.safety import SafetyConfig, StopReason
from tests.fakes import dynamixel as dxl
from tests.fakes.dynamixel import FakeDynamixelBus
from tests.helpers.dds import fresh_domain

pytest.importorskip("dynamixel_sdk", reason="the head extra (dynamixel-sdk) is not installed")

DOMAIN = fresh_domain()
RATE = 50.0
TICKS_PER_RAD = 4096 / (2 * math.pi)


@pytest.fixture(autouse=True)
def patient_sdk(monkeypatch):
    """The SDK waits 2 x its LATENCY_TIMER (16 ms, a USB adapter's) + 2 ms for a status packet.
    A real servo answers from its own MCU within microseconds; the fake answers from a thread of
    this process, which a loaded 2-core machine may not schedule within 34 ms. Here it gets
    130 ms (lara-head subprocesses keep the SDK's default and rely on bring-up's retries)."""
    sdk = pytest.importorskip("dynamixel_sdk.port_handler")
    monkeypatch.setattr(sdk, "LATENCY_TIMER", 64)


@pytest.fixture
def fake():
    with FakeDynamixelBus({1: 2048, 2: 2048}) as bus:
        yield bus


@pytest.fixture(scope="module")
def safety():
    return SafetyConfig.load("default")


def config_for(fake: FakeDynamixelBus, **changes) -> HeadMountConfig:
    return load_head_config().replace(port=fake.port, rate_hz=RATE, **changes)


def controller_for(fake, safety, config=None, **kw) -> HeadController:
    config = config or config_for(fake)
    return HeadController(config, DynamixelBus(config.port, config.baudrate), safety, **kw)


def follow(ctl: HeadController, q, seconds: float) -> None:
    """Command ``q`` at the control rate for ``seconds`` (real time: the fake servos move in it)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ctl.command(q)
        ctl.step()
        time.sleep(1.0 / ctl.rate_hz)


# -- the fake speaks the published protocol -----------------------------------------------------
def test_fake_packets_match_the_protocol_descriptions_examples():
    # ROBOTIS e-Manual, "DYNAMIXEL Protocol 2.0", Instruction Details: example packets, CRC included.
    assert dxl.packet(1, dxl.PING).hex(" ") == "ff ff fd 00 01 03 00 01 19 4e"
    assert dxl.status_packet(1, 0, bytes([0x06, 0x04, 0x26])).hex(" ") == \
        "ff ff fd 00 01 07 00 55 00 06 04 26 65 5d"                       # XM430-W210, model 1030, fw 38
    assert dxl.packet(1, dxl.READ, bytes([0x84, 0, 4, 0])).hex(" ") == "ff ff fd 00 01 07 00 02 84 00 04 00 1d 15"
    assert dxl.packet(1, dxl.WRITE, bytes([0x74, 0, 0, 2, 0, 0])).hex(" ")[-5:] == "ca 89"
    assert dxl.packet(0xFE, dxl.SYNC_READ, bytes([0x84, 0, 4, 0, 1, 2])).hex(" ")[-5:] == "ce fa"
    assert dxl.packet(0xFE, dxl.SYNC_WRITE, bytes([0x74, 0, 4, 0, 1, 0x96, 0, 0, 0, 2, 0xAA, 0, 0, 0])
                      ).hex(" ")[-5:] == "82 87"
    # Byte stuffing: FF FF FD in the parameters goes out as FF FF FD FD, counted in the length.
    wire = dxl.packet(1, dxl.WRITE, bytes([224, 0, 0xFF, 0xFF, 0xFD, 0x01]))
    assert wire[7:15] == bytes([dxl.WRITE, 224, 0, 0xFF, 0xFF, 0xFD, 0xFD, 0x01])
    assert int.from_bytes(wire[5:7], "little") == 1 + 6 + 1 + 2
    assert dxl.parse(bytearray(b"\x00\x12" + wire)) == (1, dxl.WRITE, bytes([224, 0, 0xFF, 0xFF, 0xFD, 0x01]), True)
    broken = bytearray(wire)
    broken[-1] ^= 0xFF
    assert dxl.parse(broken)[3] is False


def test_fake_crc_agrees_with_the_sdk_on_random_packets():
    import dynamixel_sdk

    ph = dynamixel_sdk.PacketHandler(2.0)
    rng = random.Random(0)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        assert dxl.crc16(data) == ph.updateCRC(0, list(data), len(data))


def test_fake_servos_answer_the_sdk(fake):
    import dynamixel_sdk as sdk

    port = sdk.PortHandler(fake.port)
    assert port.openPort() and port.setBaudRate(1_000_000)
    ph = sdk.PacketHandler(2.0)
    try:
        assert ph.ping(port, 1) == (dxl.MODEL_XM430_W350, sdk.COMM_SUCCESS, 0)
        assert ph.ping(port, 7)[1] == sdk.COMM_RX_TIMEOUT                    # no servo 7: silence
        assert ph.read4ByteTxRx(port, 2, dxl.PRESENT_POSITION) == (2048, sdk.COMM_SUCCESS, 0)
        # Stuffing both ways: write FF FF FD into Indirect Data and read it back.
        assert ph.writeTxRx(port, 1, 224, 5, [0xFF, 0xFF, 0xFD, 0x07, 0xFF]) == (sdk.COMM_SUCCESS, 0)
        assert ph.readTxRx(port, 1, 224, 5) == ([0xFF, 0xFF, 0xFD, 0x07, 0xFF], sdk.COMM_SUCCESS, 0)
        assert ph.write1ByteTxRx(port, 1, 64, 1) == (sdk.COMM_SUCCESS, 0)
        assert ph.write1ByteTxRx(port, 1, dxl.OPERATING_MODE, 4) == (sdk.COMM_SUCCESS, dxl.ERR_ACCESS)  # EEPROM locked
        assert ph.write4ByteTxRx(port, 1, dxl.GOAL_POSITION, 2148) == (sdk.COMM_SUCCESS, 0)
        time.sleep(0.1)
        assert fake.present(1) == 2148 and fake.present(2) == 2048       # only the torqued servo moved
    finally:
        port.closePort()
    assert fake.bad_crc == 0


# -- units and config ---------------------------------------------------------------------------
def test_ticks_and_radians():
    assert rad_to_ticks(0.0, 2048) == 2048 and ticks_to_rad(2048, 2048) == 0.0
    assert ticks_to_rad(2048 + 1024, 2048) == pytest.approx(math.pi / 2)      # 4096 ticks per turn
    assert ticks_to_rad(2048 + 1024, 2048, -1) == pytest.approx(-math.pi / 2)
    assert rad_to_ticks(1.0, 1500, -1) == round(1500 - TICKS_PER_RAD)
    assert ticks_to_rad(3 * 4096 + 1510, 1500) == pytest.approx(10 / TICKS_PER_RAD)   # multi-turn, torque off
    assert ticks_to_rad(-4096 + 1490, 1500) == pytest.approx(-10 / TICKS_PER_RAD)


def test_config_rejects_what_the_servos_or_the_robot_cannot_take():
    base = load_head_config()
    assert [j.name for j in base.joints] == ["head_yaw", "head_pitch"] and base.ids == [1, 2]
    with pytest.raises(HeadMountConfigError, match=r"head_yaw: limits .* outside the servo's 0\.\.4095"):
        base.with_zero_ticks([300, 2048])
    with pytest.raises(HeadMountConfigError, match="IDs must differ"):
        base.with_ids([3, 3])
    with pytest.raises(HeadMountConfigError, match="head joints in order"):
        base.replace(joints=list(reversed(base.joints)))
    with pytest.raises(HeadMountConfigError, match="baudrate"):
        base.replace(baudrate=12345)


# -- the controller on the servos ---------------------------------------------------------------
def test_controller_moves_the_servos_within_the_limits(fake, safety):
    with controller_for(fake, safety) as ctl:
        ctl.start()
        assert fake.torque(1) == fake.torque(2) == 0 and ctl.phase is Phase.OFF
        assert fake.item(1, ADDR_OPERATING_MODE, 1) == 3
        yaw, pitch = ctl.config.joints
        assert (fake.item(1, ADDR_MIN_POSITION_LIMIT), fake.item(1, ADDR_MAX_POSITION_LIMIT)) == yaw.limit_ticks()
        assert (fake.item(2, ADDR_MIN_POSITION_LIMIT), fake.item(2, ADDR_MAX_POSITION_LIMIT)) == pitch.limit_ticks()

        follow(ctl, [0.4, -0.3], 0.8)
        assert fake.torque(1) == fake.torque(2) == 1
        assert fake.present(1) == 2048 + round(0.4 * TICKS_PER_RAD)
        assert fake.present(2) == 2048 - round(0.3 * TICKS_PER_RAD)
        np.testing.assert_allclose(ctl.measured()[0], [0.4, -0.3], atol=2e-3)

        follow(ctl, [2.5, -1.5], 1.0)                     # beyond both limits (yaw +-1.0, pitch +-0.6)
        assert ctl.counts["joint_limit"] >= 1
        assert fake.goal(1) == yaw.to_ticks(1.0) and fake.goal(2) == pitch.to_ticks(-0.6)
        np.testing.assert_allclose(ctl.measured()[0], [1.0, -0.6], atol=2e-3)
        assert not ctl.command([0.1, float("nan")]) and not ctl.command([0.1]) and ctl.counts["non_finite"] == 1
    goals = {i: [g for _, sid, g in fake.goal_log if sid == i] for i in (1, 2)}
    for i, joint in ((1, yaw), (2, pitch)):
        lo, hi = sorted(joint.limit_ticks())
        assert lo <= min(goals[i]) and max(goals[i]) <= hi
        # The goal walks at most the control config's head velocity per step (3 rad/s at 50 Hz).
        assert np.abs(np.diff(goals[i])).max() <= math.ceil(safety.max_velocity["head"] / RATE * TICKS_PER_RAD) + 1
    assert fake.torque(1) == fake.torque(2) == 0                      # closing turned the torque off


def test_stale_commands_hold_then_turn_the_torque_off_with_the_arms_rule(fake, safety):
    timeout, hold = safety.command_timeout_s, safety.hold_s          # configs/control/default.yaml
    with controller_for(fake, safety) as ctl:
        ctl.start()
        t = 100.0
        ctl.command([0.2, 0.1], stamp=t)
        ctl.step(t)
        assert ctl.phase is Phase.RUN and fake.torque(1) == 1
        ctl.step(t + timeout - 0.01)
        assert ctl.phase is Phase.RUN
        ctl.step(t + timeout + 0.01)                                 # stale: hold the last goal
        assert ctl.phase is Phase.HOLD and ctl.counts["stale_command"] == 1
        ctl.step(t + timeout + 0.01 + hold - 0.02)
        assert ctl.phase is Phase.HOLD and fake.torque(1) == fake.torque(2) == 1
        ctl.step(t + timeout + 0.01 + hold + 1e-3)                   # the hold lasted hold_s: torque off
        assert ctl.phase is Phase.OFF and ctl.stop_reason is StopReason.STALE_COMMANDS
        assert fake.torque(1) == fake.torque(2) == 0

        # A hold that ends before hold_s resumes without a stop.
        t = 200.0
        fake.turn_by_hand(1, 2300)                                   # limp: moved by hand meanwhile
        ctl.command([0.0, 0.0], stamp=t)
        ctl.step(t)
        assert ctl.phase is Phase.RUN and fake.torque(1) == 1
        # Re-armed where the mount stood, not at the old goal: the goal written before the torque
        # went on is the hand-moved position, and the first step from it is a small one.
        t_on = max(when for when, sid, value in fake.torque_log if sid == 1 and value == 1)
        goals = [(when, g) for when, sid, g in fake.goal_log if sid == 1]
        assert [g for when, g in goals if when < t_on][-1] == 2300
        assert abs(goals[-1][1] - 2300) <= 40
        ctl.step(t + timeout + 0.05)
        assert ctl.phase is Phase.HOLD
        ctl.command([0.0, 0.0], stamp=t + timeout + 0.1)
        ctl.step(t + timeout + 0.1)
        assert ctl.phase is Phase.RUN and fake.torque(1) == 1


def test_a_missing_servo_is_named(fake, safety):
    config = config_for(fake).with_ids([1, 9])
    with controller_for(fake, safety, config) as ctl, pytest.raises(HeadMountError, match=r"head_pitch: no servo with ID 9"):
        ctl.start()


def test_a_lost_adapter_stops_the_server_with_an_error(safety):
    fake = FakeDynamixelBus({1: 2048, 2: 2048})
    ctl = controller_for(fake, safety)
    ctl.start()
    follow(ctl, [0.1, 0.1], 0.2)
    assert ctl.phase is Phase.RUN
    fake.close()                                            # the USB adapter is unplugged
    try:
        with pytest.raises(ServoPortError, match="serial port .* failed"):
            HeadServer(ctl, DOMAIN, "lo").run(threading.Event())
        assert ctl.phase is Phase.OFF and ctl.stop_reason is StopReason.ERROR
        assert ctl.counts["torque_off_error"] == 1             # tried, and said so
    finally:
        ctl.bus.close()


# -- DDS: the robot side's head driver against the server ----------------------------------------
def test_state_is_published_over_dds_at_the_control_rate_and_exit_turns_the_torque_off(fake, safety):
    ctl = controller_for(fake, safety)
    ctl.start()
    server = HeadServer(ctl, DOMAIN, "lo")
    counter = dds.reader(DOMAIN, "lara/head/state", HeadState_, "lo",
                         qos=Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(500)))
    robot_side = DdsHead(DOMAIN, "lo", 2)                 # what G1Robot uses with head.driver: dds
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    try:
        end = time.monotonic() + 1.5
        while time.monotonic() < end:                     # the robot side streams its head targets
            robot_side.send(np.array([0.3, -0.2], dtype=np.float32))
            robot_side.poll()
            time.sleep(0.01)
        assert fake.torque(1) == fake.torque(2) == 1
        counter.take(N=1000)
        t0 = time.monotonic()
        time.sleep(1.0)
        received = len([m for m in counter.take(N=1000) if isinstance(m, HeadState_)])
        rate = received / (time.monotonic() - t0)
        assert 0.6 * RATE <= rate <= 1.2 * RATE, f"state at {rate:.1f} Hz, control rate {RATE}"
        robot_side.poll()
        q, stamp = robot_side.state()
        np.testing.assert_allclose(q, [0.3, -0.2], atol=2e-3)
        assert time.monotonic() - stamp < 0.2
    finally:
        stop.set()
        thread.join(timeout=5.0)
        ctl.close()
    assert not thread.is_alive()
    assert fake.torque(1) == fake.torque(2) == 0 and ctl.stop_reason is StopReason.EXIT


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_lara_head_serve_turns_the_torque_off_on_a_signal(fake, sig):
    domain = DOMAIN + 1 if DOMAIN < 230 else 100
    proc = subprocess.Popen(
        [sys.executable, "-m", "lara_g1.robot.head_mount.cli", "serve", "--driver", "dynamixel",
         "--port", fake.port, "--ids", "1,2", "--robot-config", "sim", "--domain", str(domain),
         "--interface", "lo", "--rate", str(RATE)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    robot_side = DdsHead(domain, "lo", 2)
    try:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not (fake.torque(1) and fake.torque(2)):
            assert proc.poll() is None, proc.stdout.read()
            robot_side.send(np.array([0.1, 0.1], dtype=np.float32))
            time.sleep(0.01)
        assert fake.torque(1) == fake.torque(2) == 1, "lara-head never armed the servos"
        robot_side.send(np.array([0.1, 0.1], dtype=np.float32))
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=10.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert fake.torque(1) == fake.torque(2) == 0, out
    assert f"{signal.Signals(sig).name}: stopping" in out


# -- calibration --------------------------------------------------------------------------------
def test_calibrate_stores_the_offsets_and_a_zero_command_lands_there(tmp_path, safety, capsys):
    path = tmp_path / "lab" / "head.yaml"
    with FakeDynamixelBus({1: 1500, 2: 4096 + 2600}) as fake:    # servo 2 turned a full turn while limp
        assert cli.main(["calibrate", "--config", str(path), "--port", fake.port, "--ids", "1,2", "--yes"]) == 0
        assert "head_yaw: servo ID 1, zero at 1500 ticks" in capsys.readouterr().out
        stored = load_head_config(path)
        assert [j.zero_ticks for j in stored.joints] == [1500, 2600] and stored.port == fake.port
        assert sorted(p.name for p in path.parent.iterdir()) == ["head.yaml"]      # no temporary left
        with controller_for(fake, safety, stored.replace(rate_hz=RATE)) as ctl:
            ctl.start()
            np.testing.assert_allclose(ctl.measured()[0], [0.0, 0.0], atol=1e-9)
            fake_goals_before = len(fake.goal_log)
            follow(ctl, [0.0, 0.0], 0.3)
            assert len(fake.goal_log) > fake_goals_before
            assert (fake.goal(1), fake.goal(2)) == (1500, 2600)
            assert (fake.present(1), fake.present(2)) == (1500, 2600)

        # A zero from which the limits would leave the servo's range: refused, the file untouched.
        before = path.read_bytes()
        fake.turn_by_hand(1, 200)
        assert cli.main(["calibrate", "--config", str(path), "--yes"]) == 1
        assert "does not fit the joint limits" in capsys.readouterr().err
        assert path.read_bytes() == before


def test_missing_dynamixel_sdk_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "dynamixel_sdk", None)    # as if the extra were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'lara-g1\[head\]'"):
        DynamixelBus("/dev/ttyUSB0", 1_000_000)
    assert cli.main(["serve", "--port", os.devnull, "--robot-config", "sim", "--domain", "0"]) == 1
    assert "lara-g1[head]" in capsys.readouterr().err
