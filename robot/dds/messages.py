"""DDS message types, field for field the ones Unitree's G1 firmware speaks, plus our own.

Unitree's types (``unitree_hg::msg::dds_::LowCmd_`` ...) are declared here with the exact
type names and field layouts of Unitree's IDL (unitree_sdk2 ``idl/hg`` and ``idl/go2``), as
``cyclonedds.idl`` dataclasses. They work unchanged with the ``cyclonedds`` 11 wheel used on
development machines and with ``cyclonedds==0.10.x`` on the robot-facing Python 3.10 process
(see docs/ROBOT.md), and they serialise to the same bytes as ``unitree_sdk2py``'s generated
classes (checked in tests/test_dds_messages.py whenever unitree_sdk2py is importable).

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
