"""Our IDL types are Unitree's: same type names, same bytes on the wire as unitree_sdk2py's."""
from __future__ import annotations

import random

import numpy as np
import pytest

from lara_g1.robot.dds.messages import (
    GoMotorCmd_,
    GoMotorState_,
    Image_,
    IMUState_,
    LowCmd_,
    LowState_,
    MotorCmd_,
    MotorCmds_,
    MotorState_,
    MotorStates_,
)


def test_type_names_are_unitrees():
    names = {t: t.__idl_typename__ for t in (LowCmd_, LowState_, MotorCmd_, MotorState_, IMUState_,
                                              MotorCmds_, MotorStates_, GoMotorCmd_, GoMotorState_)}
    assert names[LowCmd_] == "unitree_hg.msg.dds_.LowCmd_"
    assert names[LowState_] == "unitree_hg.msg.dds_.LowState_"
    assert names[IMUState_] == "unitree_hg.msg.dds_.IMUState_"
    assert names[MotorCmds_] == "unitree_go.msg.dds_.MotorCmds_"
    assert names[GoMotorState_] == "unitree_go.msg.dds_.MotorState_"


def test_lowcmd_roundtrip():
    msg = LowCmd_(mode_machine=4)
    msg.motor_cmd[29].q = 0.5
    data = msg.serialize()
    back = LowCmd_.deserialize(data)
    assert back.mode_machine == 4 and back.motor_cmd[29].q == pytest.approx(0.5)


def test_same_bytes_as_unitree_sdk2py():
    pytest.importorskip("unitree_sdk2py", reason="unitree_sdk2py (lara-g1[robot]) not installed")
    from unitree_sdk2py.idl.unitree_go.msg.dds_ import MotorCmd_ as UGoCmd
    from unitree_sdk2py.idl.unitree_go.msg.dds_ import MotorCmds_ as UCmds
    from unitree_sdk2py.idl.unitree_go.msg.dds_ import MotorState_ as UGoState
    from unitree_sdk2py.idl.unitree_go.msg.dds_ import MotorStates_ as UStates
    from unitree_sdk2py.idl.unitree_hg.msg.dds_ import LowCmd_ as ULowCmd
    from unitree_sdk2py.idl.unitree_hg.msg.dds_ import LowState_ as ULowState

    rng = random.Random(5)
    cmd = LowCmd_(mode_pr=1, mode_machine=5)
    for i in range(35):
        cmd.motor_cmd[i] = MotorCmd_(mode=1, q=rng.random(), kp=60.0, kd=1.5, reserve=i)
    assert ULowCmd.deserialize(cmd.serialize()).serialize() == cmd.serialize()
    state = LowState_(tick=99)
    state.motor_state[20].q = 0.25
    assert ULowState.deserialize(state.serialize()).serialize() == state.serialize()
    assert LowState_.deserialize(state.serialize()).motor_state[20].q == pytest.approx(0.25)
    ours = MotorCmds_(cmds=[GoMotorCmd_(mode=1, q=i / 12) for i in range(12)])
    theirs = UCmds(cmds=[UGoCmd(mode=1, q=i / 12, dq=0, tau=0, kp=0, kd=0, reserve=[0, 0, 0]) for i in range(12)])
    assert ours.serialize() == theirs.serialize()
    st = MotorStates_(states=[GoMotorState_(q=0.5) for _ in range(12)])
    assert UStates.deserialize(st.serialize()).states[11].q == pytest.approx(0.5)
    assert UGoState.__idl_typename__ == GoMotorState_.__idl_typename__


def _random_lowstate(rng: random.Random) -> LowState_:
    msg = LowState_(version=[rng.randrange(2**32), 2], mode_pr=1, mode_machine=rng.randrange(256),
                    tick=rng.randrange(2**32))
    msg.imu_state = IMUState_(quaternion=[rng.random() for _ in range(4)], gyroscope=[rng.random()] * 3,
                              accelerometer=[0.0, 0.0, 9.81], rpy=[0.1, -0.2, 0.3], temperature=-12)
    for m in msg.motor_state:
        m.mode, m.q, m.dq, m.tau_est = rng.randrange(256), rng.uniform(-3, 3), rng.random(), -rng.random()
        m.temperature = [rng.randrange(-100, 100), rng.randrange(-100, 100)]
        m.sensor, m.motorstate = [rng.randrange(2**32), 7], rng.randrange(2**32)
        m.reserve = [rng.randrange(2**32) for _ in range(4)]
    msg.wireless_remote = [rng.randrange(256) for _ in range(40)]
    msg.crc = rng.randrange(2**32)
    return msg


@pytest.mark.parametrize("use_version_2", [None, False, True])
def test_fast_codec_equals_cyclonedds_generic_serialiser(use_version_2):
    rng = random.Random(17)
    for _ in range(3):
        state = _random_lowstate(rng)
        generic = state.__idl__.serialize(state, use_version_2=use_version_2)
        assert state.serialize(use_version_2=use_version_2) == generic
        back = LowState_.deserialize(generic)
        assert back.serialize(use_version_2=use_version_2) == generic
        assert back.motor_state[34].temperature == state.motor_state[34].temperature
        assert list(back.wireless_remote) == list(state.wireless_remote) and back.crc == state.crc
        cmd = LowCmd_(mode_pr=1, mode_machine=rng.randrange(256), reserve=[1, 2, 3, rng.randrange(2**32)],
                      crc=rng.randrange(2**32))
        for i in range(35):
            cmd.motor_cmd[i] = MotorCmd_(mode=rng.randrange(2), q=rng.uniform(-3, 3), dq=0.5, tau=-1.0,
                                         kp=rng.uniform(0, 100), kd=1.5, reserve=rng.randrange(2**32))
        generic = cmd.__idl__.serialize(cmd, use_version_2=use_version_2)
        assert cmd.serialize(use_version_2=use_version_2) == generic
        assert LowCmd_.deserialize(generic).serialize(use_version_2=use_version_2) == generic


@pytest.mark.parametrize("use_version_2", [None, True])
@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 7, 3), (48, 64, 3)])
def test_image_codec_equals_the_generic_serialiser(use_version_2, shape):
    pixels = np.random.default_rng(shape[0]).integers(0, 256, shape, dtype=np.uint8).tobytes()
    img = Image_(seq=9, stamp_ns=2**40 + 3, sim_time=12.5, height=shape[0], width=shape[1], data=pixels)
    generic = img.__idl__.serialize(img, use_version_2=use_version_2)
    assert img.serialize(use_version_2=use_version_2) == generic
    back = Image_.deserialize(generic)
    assert (back.seq, back.stamp_ns, back.sim_time, back.height, back.width) == (9, 2**40 + 3, 12.5, *shape[:2])
    assert bytes(back.data) == pixels
