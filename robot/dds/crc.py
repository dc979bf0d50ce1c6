"""Unitree's CRC-32 of ``LowCmd_`` / ``LowState_`` (unitree_hg), in pure Python + numpy.

The firmware packs the message into its C struct layout (little-endian, 4-byte aligned:
``LowCmd_`` 1004 bytes, ``LowState_`` 2092 bytes) and runs ``crc32_core`` over all 32-bit words
but the last (the crc field itself): polynomial 0x04C11DB7, init 0xFFFFFFFF, each word fed
MSB first, no reflection, no final xor. That is CRC-32/MPEG-2 over the words in big-endian
byte order. We compute it with zlib's (reflected) CRC-32 on bit-reversed bytes, which is the
same function mirrored, so no compiled helper library is needed.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from lara_g1.robot.dds.messages import NUM_MOTORS, LowCmd_, LowState_

LOWCMD_FORMAT = "<2B2x" + "B3x5fI" * NUM_MOTORS + "5I"
LOWSTATE_FORMAT = "<2I2B2xI" + "13fh2x" + "B3x4f2hf7I" * NUM_MOTORS + "40B5I"
LOWCMD_SIZE = struct.calcsize(LOWCMD_FORMAT)      # 1004
LOWSTATE_SIZE = struct.calcsize(LOWSTATE_FORMAT)  # 2092

_BYTE_REVERSED = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], dtype=np.uint8)


def _reverse32(x: int) -> int:
    return int(f"{x:032b}"[::-1], 2)


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 (poly 0x04C11DB7, init 0xFFFFFFFF, no reflection, no xorout)."""
    mirrored = _BYTE_REVERSED[np.frombuffer(data, dtype=np.uint8)].tobytes()
    return _reverse32(zlib.crc32(mirrored) ^ 0xFFFFFFFF)


def crc32_core(words: np.ndarray) -> int:
    """Unitree's ``crc32_core`` over an array of uint32 words (each fed MSB first)."""
    return crc32_mpeg2(np.asarray(words, dtype=np.uint32).astype(">u4").tobytes())


def _crc_of_packed(packed: bytes) -> int:
    words = np.frombuffer(packed, dtype="<u4")[:-1]  # every word but the crc field
    return crc32_core(words)


def pack_lowcmd(msg: LowCmd_) -> bytes:
    values: list = [msg.mode_pr, msg.mode_machine]
    for m in msg.motor_cmd:
        values += [m.mode, m.q, m.dq, m.tau, m.kp, m.kd, m.reserve]
    values += list(msg.reserve)
    values.append(msg.crc)
    return struct.pack(LOWCMD_FORMAT, *values)


def pack_lowstate(msg: LowState_) -> bytes:
    imu = msg.imu_state
    values: list = [*msg.version, msg.mode_pr, msg.mode_machine, msg.tick,
                    *imu.quaternion, *imu.gyroscope, *imu.accelerometer, *imu.rpy, imu.temperature]
    for m in msg.motor_state:
        values += [m.mode, m.q, m.dq, m.ddq, m.tau_est, *m.temperature, m.vol, *m.sensor,
                   m.motorstate, *m.reserve]
    values += list(msg.wireless_remote)
    values += list(msg.reserve)
    values.append(msg.crc)
    return struct.pack(LOWSTATE_FORMAT, *values)


def lowcmd_crc(msg: LowCmd_) -> int:
    return _crc_of_packed(pack_lowcmd(msg))


def lowstate_crc(msg: LowState_) -> int:
    return _crc_of_packed(pack_lowstate(msg))
