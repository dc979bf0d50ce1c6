"""CRC of unitree_hg LowCmd_/LowState_: known answers, a bit-by-bit reference, Unitree's own library."""
from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from lara_g1.robot.dds.crc import (
    LOWCMD_SIZE,
    LOWSTATE_SIZE,
    crc32_core,
    crc32_mpeg2,
    lowcmd_crc,
    lowstate_crc,
    pack_lowcmd,
    pack_lowstate,
)
from lara_g1.robot.dds.messages import LowCmd_, LowState_, MotorCmd_


def reference_crc32_core(words) -> int:
    """Unitree's crc32_core written out bit by bit (poly 0x04C11DB7, init all ones, MSB first)."""
    crc = 0xFFFFFFFF
    for word in words:
        for bit in range(31, -1, -1):
            top = crc & 0x80000000
            crc = (crc << 1) & 0xFFFFFFFF
            if top:
                crc ^= 0x04C11DB7
            if (word >> bit) & 1:
                crc ^= 0x04C11DB7
    return crc


def random_lowcmd(rng: random.Random) -> LowCmd_:
    msg = LowCmd_(mode_pr=rng.randrange(2), mode_machine=rng.randrange(256))
    for i in range(35):
        msg.motor_cmd[i] = MotorCmd_(mode=rng.randrange(2), q=rng.uniform(-3, 3), dq=rng.uniform(-1, 1),
                                     tau=rng.uniform(-5, 5), kp=rng.uniform(0, 100), kd=rng.uniform(0, 5),
                                     reserve=rng.randrange(2**32))
    msg.reserve = [rng.randrange(2**32) for _ in range(4)]
    return msg


def test_crc32_mpeg2_catalogue_check_value():
    # The CRC catalogue's check value of CRC-32/MPEG-2 for the ASCII string "123456789".
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7


def test_packed_sizes_match_the_c_structs():
    assert LOWCMD_SIZE == 1004 and LOWSTATE_SIZE == 2092
    assert len(pack_lowcmd(LowCmd_())) == 1004
    assert len(pack_lowstate(LowState_())) == 2092


def test_known_answer_for_the_all_zero_lowcmd():
    # Computed by Unitree's compiled crc32_core (unitree_sdk2py utils/lib/crc_amd64.so) for a
    # default-constructed unitree_hg LowCmd_ (all fields zero).
    assert lowcmd_crc(LowCmd_()) == 4262932383


def test_matches_the_bitwise_reference_on_random_messages():
    rng = random.Random(7)
    for _ in range(5):
        msg = random_lowcmd(rng)
        words = struct.unpack("<251I", pack_lowcmd(msg))[:250]
        assert lowcmd_crc(msg) == reference_crc32_core(words)
    words = np.random.default_rng(1).integers(0, 2**32, size=40, dtype=np.uint64).astype(np.uint32)
    assert crc32_core(words) == reference_crc32_core(int(w) for w in words)


def test_crc_covers_every_field_but_itself():
    msg = random_lowcmd(random.Random(3))
    base = lowcmd_crc(msg)
    msg.crc = 12345
    assert lowcmd_crc(msg) == base
    msg.motor_cmd[34].kd += 0.5
    assert lowcmd_crc(msg) != base
    msg.motor_cmd[34].kd -= 0.5
    msg.reserve[3] ^= 1
    assert lowcmd_crc(msg) != base


def test_matches_unitree_sdk2py_crc_on_random_messages():
    pytest.importorskip("unitree_sdk2py", reason="unitree_sdk2py (lara-g1[robot]) not installed")
    from unitree_sdk2py.idl.unitree_hg.msg.dds_ import LowCmd_ as ULowCmd
    from unitree_sdk2py.idl.unitree_hg.msg.dds_ import LowState_ as ULowState
    from unitree_sdk2py.utils.crc import CRC

    crc = CRC()
    rng = random.Random(11)
    for _ in range(20):
        msg = random_lowcmd(rng)
        theirs = ULowCmd.deserialize(msg.serialize())
        assert lowcmd_crc(msg) == crc.Crc(theirs)
    state = LowState_(tick=123456, mode_machine=5)
    for i in range(35):
        state.motor_state[i].q = rng.uniform(-2, 2)
        state.motor_state[i].temperature = [rng.randrange(-40, 90), rng.randrange(-40, 90)]
    state.imu_state.temperature = -7
    state.wireless_remote = [rng.randrange(256) for _ in range(40)]
    assert lowstate_crc(state) == crc.Crc(ULowState.deserialize(state.serialize()))
