"""DDS message types, field for field the ones Unitree's G1 firmware speaks, plus our own.

Unitree's types (``unitree_hg::msg::dds_::LowCmd_`` ...) are declared here with the exact
type names and field layouts of Unitree's IDL (unitree_sdk2 ``idl/hg`` and ``idl/go2``), as
``cyclonedds.idl`` dataclasses. They work unchanged with the ``cyclonedds`` 11 wheel used on
development machines and with ``cyclonedds==0.10.x`` on the robot-facing Python 3.10 process
(see docs/ROBOT.md), and they serialise to the same bytes as ``unitree_sdk2py``'s generated
classes (checked in tests/robot/test_dds_messages.py whenever unitree_sdk2py is importable).

Our own types (``lara_g1::msg::...``) carry what Unitree has no topic for: the custom head
mount, the simulated head camera and the simulator's control channel.
"""
# No `from __future__ import annotations` here: cyclonedds resolves the field annotations at
# run time and needs them as real objects.
from dataclasses import dataclass, field

import cyclonedds.idl as idl
import cyclonedds.idl.annotations as annotate
import cyclonedds.idl.types as types

NUM_MOTORS = 35  # LowCmd_/LowState_ motor slots on the G1 (29 joints + 6 spare)


# --- unitree_hg (G1 body) ------------------------------------------------------------------

@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.MotorCmd_"):
    mode: types.uint8 = 0
    q: types.float32 = 0.0
    dq: types.float32 = 0.0
    tau: types.float32 = 0.0
    kp: types.float32 = 0.0
    kd: types.float32 = 0.0
    reserve: types.uint32 = 0


@dataclass
@annotate.final
@annotate.autoid("sequential")
class LowCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.LowCmd_"):
    mode_pr: types.uint8 = 0
    mode_machine: types.uint8 = 0
    motor_cmd: types.array[MotorCmd_, NUM_MOTORS] = field(
        default_factory=lambda: [MotorCmd_() for _ in range(NUM_MOTORS)])
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0, 0, 0, 0])
    crc: types.uint32 = 0


@dataclass
@annotate.final
@annotate.autoid("sequential")
class IMUState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.IMUState_"):
    quaternion: types.array[types.float32, 4] = field(default_factory=lambda: [1.0, 0.0, 0.0, 0.0])
    gyroscope: types.array[types.float32, 3] = field(default_factory=lambda: [0.0] * 3)
    accelerometer: types.array[types.float32, 3] = field(default_factory=lambda: [0.0] * 3)
    rpy: types.array[types.float32, 3] = field(default_factory=lambda: [0.0] * 3)
    temperature: types.int16 = 0


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.MotorState_"):
    mode: types.uint8 = 0
    q: types.float32 = 0.0
    dq: types.float32 = 0.0
    ddq: types.float32 = 0.0
    tau_est: types.float32 = 0.0
    temperature: types.array[types.int16, 2] = field(default_factory=lambda: [0, 0])
    vol: types.float32 = 0.0
    sensor: types.array[types.uint32, 2] = field(default_factory=lambda: [0, 0])
    motorstate: types.uint32 = 0
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0, 0, 0, 0])


@dataclass
@annotate.final
@annotate.autoid("sequential")
class LowState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.LowState_"):
    version: types.array[types.uint32, 2] = field(default_factory=lambda: [0, 0])
    mode_pr: types.uint8 = 0
    mode_machine: types.uint8 = 0
    tick: types.uint32 = 0
    imu_state: IMUState_ = field(default_factory=IMUState_)
    motor_state: types.array[MotorState_, NUM_MOTORS] = field(
        default_factory=lambda: [MotorState_() for _ in range(NUM_MOTORS)])
    wireless_remote: types.array[types.uint8, 40] = field(default_factory=lambda: [0] * 40)
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0, 0, 0, 0])
    crc: types.uint32 = 0


# --- unitree_go (Inspire DFX hands: rt/inspire/cmd, rt/inspire/state) ------------------------

@dataclass
@annotate.final
@annotate.autoid("sequential")
class GoMotorCmd_(idl.IdlStruct, typename="unitree_go.msg.dds_.MotorCmd_"):
    mode: types.uint8 = 0
    q: types.float32 = 0.0
    dq: types.float32 = 0.0
    tau: types.float32 = 0.0
    kp: types.float32 = 0.0
    kd: types.float32 = 0.0
    reserve: types.array[types.uint32, 3] = field(default_factory=lambda: [0, 0, 0])


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorCmds_(idl.IdlStruct, typename="unitree_go.msg.dds_.MotorCmds_"):
    cmds: types.sequence[GoMotorCmd_] = field(default_factory=list)


@dataclass
@annotate.final
@annotate.autoid("sequential")
class GoMotorState_(idl.IdlStruct, typename="unitree_go.msg.dds_.MotorState_"):
    mode: types.uint8 = 0
    q: types.float32 = 0.0
    dq: types.float32 = 0.0
    ddq: types.float32 = 0.0
    tau_est: types.float32 = 0.0
    q_raw: types.float32 = 0.0
    dq_raw: types.float32 = 0.0
    ddq_raw: types.float32 = 0.0
    temperature: types.uint8 = 0
    lost: types.uint32 = 0
    reserve: types.array[types.uint32, 2] = field(default_factory=lambda: [0, 0])


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorStates_(idl.IdlStruct, typename="unitree_go.msg.dds_.MotorStates_"):
    states: types.sequence[GoMotorState_] = field(default_factory=list)


# --- lara_g1 (our own topics) ----------------------------------------------------------------

@dataclass
@annotate.final
@annotate.autoid("sequential")
class HeadCmd_(idl.IdlStruct, typename="lara_g1.msg.HeadCmd_"):
    """Targets for the custom head mount, in the embodiment's head order (yaw, pitch), rad."""
    q: types.sequence[types.float32] = field(default_factory=list)


@dataclass
@annotate.final
@annotate.autoid("sequential")
class HeadState_(idl.IdlStruct, typename="lara_g1.msg.HeadState_"):
    q: types.sequence[types.float32] = field(default_factory=list)


@dataclass
@annotate.final
@annotate.autoid("sequential")
class Image_(idl.IdlStruct, typename="lara_g1.msg.Image_"):
    """An RGB8 frame (row-major HxWx3). ``stamp_ns`` is the sender's CLOCK_MONOTONIC time."""
    seq: types.uint32 = 0
    stamp_ns: types.uint64 = 0
    sim_time: types.float64 = 0.0
    height: types.uint32 = 0
    width: types.uint32 = 0
    data: types.sequence[types.uint8] = field(default_factory=bytes)


@dataclass
@annotate.final
@annotate.autoid("sequential")
class SimRequest_(idl.IdlStruct, typename="lara_g1.msg.SimRequest_"):
    """A request to the simulator: ``command`` is reset|status, ``body`` a JSON object."""
    request_id: types.uint64 = 0
    command: str = ""
    body: str = "{}"


@dataclass
@annotate.final
@annotate.autoid("sequential")
class SimReply_(idl.IdlStruct, typename="lara_g1.msg.SimReply_"):
    request_id: types.uint64 = 0
    ok: bool = True
    body: str = "{}"


# --- fast CDR for the two high-rate types --------------------------------------------------------
# rt/lowstate arrives at up to 500 Hz and rt/arm_sdk goes out at 100-250 Hz; cyclonedds' generic
# Python (de)serialiser needs 0.5-2.5 ms per LowState_ on these machines, a large share of a core
# at those rates. For little-endian CDR with a header, these two final structs are packed with
# `struct` instead (identical bytes, checked against the generic path in tests/robot/test_dds_messages.py);
# anything else (XCDR2, big-endian, a caller's buffer, no header) goes the generic way.
import struct as _struct  # noqa: E402

_CDR_LE = b"\x00\x01\x00\x00"  # XCDR1 little-endian header (XCDR2 adds length headers to struct arrays)
# Body layouts (CDR aligns each primitive to its size from the body start; no struct padding).
_LOWCMD_BODY = _struct.Struct("<2B" + "Bx5fI" + "B3x5fI" * (NUM_MOTORS - 1) + "4I" + "I")
_LOWSTATE_BODY = _struct.Struct("<2I2B2xI" + "13fh" + "Bx4f2hf2II4I" + "B3x4f2hf2II4I" * (NUM_MOTORS - 1)
                                + "40B" + "4I" + "I")


def _lowcmd_serialize(self, buffer=None, endianness=None, use_version_2=None) -> bytes:
    if buffer is not None or endianness is not None or use_version_2:
        return self.__idl__.serialize(self, buffer=buffer, endianness=endianness, use_version_2=use_version_2)
    values = [self.mode_pr, self.mode_machine]
    for m in self.motor_cmd:
        values += (m.mode, m.q, m.dq, m.tau, m.kp, m.kd, m.reserve)
    values += self.reserve
    values.append(self.crc)
    return _CDR_LE + _LOWCMD_BODY.pack(*values)


def _lowcmd_deserialize(cls, data, has_header: bool = True, use_version_2=None):
    if not has_header or bytes(data[:2]) != _CDR_LE[:2] or len(data) < 4 + _LOWCMD_BODY.size:
        return cls.__idl__.deserialize(data, has_header=has_header, use_version_2=use_version_2)
    v = _LOWCMD_BODY.unpack_from(data, 4)
    motors = [MotorCmd_(*v[2 + 7 * i: 9 + 7 * i]) for i in range(NUM_MOTORS)]
    end = 2 + 7 * NUM_MOTORS
    return cls(mode_pr=v[0], mode_machine=v[1], motor_cmd=motors, reserve=list(v[end:end + 4]), crc=v[end + 4])


def _lowstate_serialize(self, buffer=None, endianness=None, use_version_2=None) -> bytes:
    if buffer is not None or endianness is not None or use_version_2:
        return self.__idl__.serialize(self, buffer=buffer, endianness=endianness, use_version_2=use_version_2)
    imu = self.imu_state
    values = [*self.version, self.mode_pr, self.mode_machine, self.tick, *imu.quaternion, *imu.gyroscope,
              *imu.accelerometer, *imu.rpy, imu.temperature]
    for m in self.motor_state:
        values += (m.mode, m.q, m.dq, m.ddq, m.tau_est, *m.temperature, m.vol, *m.sensor, m.motorstate,
                   *m.reserve)
    values += self.wireless_remote
    values += self.reserve
    values.append(self.crc)
    return _CDR_LE + _LOWSTATE_BODY.pack(*values)


def _lowstate_deserialize(cls, data, has_header: bool = True, use_version_2=None):
    if not has_header or bytes(data[:2]) != _CDR_LE[:2] or len(data) < 4 + _LOWSTATE_BODY.size:
        return cls.__idl__.deserialize(data, has_header=has_header, use_version_2=use_version_2)
    v = _LOWSTATE_BODY.unpack_from(data, 4)
    imu = IMUState_(quaternion=list(v[5:9]), gyroscope=list(v[9:12]), accelerometer=list(v[12:15]),
                    rpy=list(v[15:18]), temperature=v[18])
    motors, i = [], 19
    for _ in range(NUM_MOTORS):
        motors.append(MotorState_(mode=v[i], q=v[i + 1], dq=v[i + 2], ddq=v[i + 3], tau_est=v[i + 4],
                                  temperature=[v[i + 5], v[i + 6]], vol=v[i + 7], sensor=[v[i + 8], v[i + 9]],
                                  motorstate=v[i + 10], reserve=list(v[i + 11:i + 15])))
        i += 15
    return cls(version=[v[0], v[1]], mode_pr=v[2], mode_machine=v[3], tick=v[4], imu_state=imu,
               motor_state=motors, wireless_remote=bytes(v[i:i + 40]), reserve=list(v[i + 40:i + 44]),
               crc=v[i + 44])


LowCmd_.serialize = _lowcmd_serialize
LowCmd_.deserialize = classmethod(_lowcmd_deserialize)
LowState_.serialize = _lowstate_serialize
LowState_.deserialize = classmethod(_lowstate_deserialize)


# Image_: header fields then the pixel bytes; the generic path turns 150 k pixels into a Python
# list of ints (several ms per 224x224 frame each way), this keeps them as bytes.
_IMAGE_HEAD = _struct.Struct("<I4xQdIII")  # seq, (pad to 8), stamp_ns, sim_time, height, width, len


def _image_serialize(self, buffer=None, endianness=None, use_version_2=None) -> bytes:
    if buffer is not None or endianness is not None or use_version_2:
        return self.__idl__.serialize(self, buffer=buffer, endianness=endianness, use_version_2=use_version_2)
    data = bytes(self.data)
    return b"".join((_CDR_LE, _IMAGE_HEAD.pack(self.seq, self.stamp_ns, self.sim_time, self.height,
                                               self.width, len(data)), data))


def _image_deserialize(cls, data, has_header: bool = True, use_version_2=None):
    if not has_header or bytes(data[:2]) != _CDR_LE[:2] or len(data) < 4 + _IMAGE_HEAD.size:
        return cls.__idl__.deserialize(data, has_header=has_header, use_version_2=use_version_2)
    seq, stamp_ns, sim_time, height, width, n = _IMAGE_HEAD.unpack_from(data, 4)
    start = 4 + _IMAGE_HEAD.size
    if len(data) < start + n:
        raise ValueError(f"Image_ sample of {len(data)} bytes announces {n} pixel bytes")
    return cls(seq=seq, stamp_ns=stamp_ns, sim_time=sim_time, height=height, width=width,
               data=bytes(data[start:start + n]))


Image_.serialize = _image_serialize
Image_.deserialize = classmethod(_image_deserialize)
