"""The Unitree G1 (real or simulated) over DDS: arms on rt/arm_sdk, Inspire hands, the head mount.

:class:`G1Robot` implements :class:`lara_g1.robot.interface.Robot`. It subscribes ``rt/lowstate`` (arms),
the hand state and the head state on one background thread, and publishes on :meth:`send`:

- ``rt/arm_sdk`` ``LowCmd_``: only the 14 arm motors (mode 1, q, kp/kd from config); legs and
  waist stay all-zero, which arm_sdk leaves to the locomotion controller; ``motor_cmd[29].q`` is
  the blend weight 0..1; ``mode_machine`` is copied from the latest ``rt/lowstate``; CRC set.
- the hand targets through the configured hand driver (:mod:`lara_g1.robot.hands`),
- the head targets through the configured head driver (:mod:`lara_g1.robot.head`).

:meth:`read_state` returns ``None`` until every part (body, hands, head) has reported once; its
``stamp`` is the OLDEST of the parts' receive times, so a stale hand or head stream is as
visible to the safety watchdog as a stale ``rt/lowstate``.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.util import duration
from pydantic import Field, field_validator, model_validator

from lara_g1.core.config import ConfigModel, config_dataclass, load_config
from lara_g1.core.embodiment import Embodiment, load_embodiment
from lara_g1.core.errors import ConfigError
from lara_g1.robot.dds import participant as dds
from lara_g1.robot.dds import topics
from lara_g1.robot.dds.crc import lowcmd_crc
from lara_g1.robot.dds.messages import NUM_MOTORS, LowCmd_, LowState_, MotorCmd_
from lara_g1.robot.hands import HandMapping, make_hands
from lara_g1.robot.head import make_head
from lara_g1.robot.interface import Robot, RobotState

ARM_MODE_ENABLE = 1
log = logging.getLogger(__name__)


class G1ConfigError(ConfigError):
    pass


@config_dataclass
class DdsSettings(ConfigModel):
    domain_id: int = Field(ge=0, le=232)
    interface: str | None = None   # the network interface; none or empty: cyclonedds' default

    @field_validator("interface", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value or None


@config_dataclass
class Gains(ConfigModel):
    """Per arm joint, in embodiment arm order; the same for both arms."""

    kp: list[Annotated[float, Field(ge=0.0)]]
    kd: list[Annotated[float, Field(ge=0.0)]]


@config_dataclass
class G1Config(ConfigModel):
    """A robot config (``configs/robot/g1_<name>.yaml``), validated against the embodiment.

    ``domain_id``, ``interface``, ``kp`` and ``kd`` read the ``dds`` and ``gains`` sections."""

    config_error = G1ConfigError

    name: str = "custom"
    dds: DdsSettings
    arm_motors: dict[str, int]   # first motor slot of each arm group
    blend_motor: int = 29
    gains: Gains
    hands: dict[str, Any] = Field(default_factory=dict)
    head: dict[str, Any] = Field(default_factory=dict)
    embodiment: str = "g1"
    # the robot's cameras as datasets and policies name them (lara-teleop record --camera, the
    # server's metadata): lara-robot check and run refuse a policy that wants other cameras
    cameras: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=lambda: ["head"], min_length=1)

    @classmethod
    def load(cls, name_or_path: str | Path) -> G1Config:
        """``"sim"`` / ``"real"`` (the bundled ``configs/robot/g1_<name>.yaml``) or a YAML path."""
        return load_config(cls, name_or_path, bundled="robot/g1_{name}.yaml", kind="robot config")

    @property
    def domain_id(self) -> int:
        return self.dds.domain_id

    @property
    def interface(self) -> str | None:
        return self.dds.interface

    @property
    def kp(self) -> list[float]:
        return self.gains.kp

    @property
    def kd(self) -> list[float]:
        return self.gains.kd

    def replace(self, **changes: Any) -> G1Config:
        """A validated copy with some fields changed (e.g. ``domain_id`` for a test's domain);
        ``domain_id``/``interface`` and ``kp``/``kd`` change the ``dds`` and ``gains`` sections."""
        for section, keys in (("dds", ("domain_id", "interface")), ("gains", ("kp", "kd"))):
            moved = {k: changes.pop(k) for k in keys if k in changes}
            if moved:
                changes[section] = {**vars(getattr(self, section)), **moved}
        return super().replace(**changes)

    @model_validator(mode="after")
    def _fits_the_embodiment(self) -> G1Config:
        emb = load_embodiment(self.embodiment)
        groups = [g.name for g in emb.groups]
        unknown = sorted(set(self.arm_motors) - set(groups))
        if unknown:
            raise ValueError(f"arm_motors: embodiment {emb.name!r} has no joint groups {unknown}; groups: {groups}")
        used: set[int] = set()
        for group, first in self.arm_motors.items():
            size = emb.group(group).size
            slots = set(range(first, first + size))
            if first < 0 or first + size > NUM_MOTORS or slots & used:
                raise ValueError(f"arm_motors.{group} slots {first}..{first + size - 1} "
                                 f"overlap or leave 0..{NUM_MOTORS - 1}")
            used |= slots
        if {"left_arm", "right_arm"} - set(self.arm_motors):
            raise ValueError("arm_motors needs left_arm and right_arm")
        if self.blend_motor in used or not 0 <= self.blend_motor < NUM_MOTORS:
            raise ValueError(f"blend_motor {self.blend_motor} is an arm slot or out of range")
        arm = emb.group("left_arm").size
        for key, values in (("kp", self.kp), ("kd", self.kd)):
            if len(values) != arm:
                raise ValueError(f"gains.{key} needs {arm} values (one per arm joint), got {values}")
        return self


class G1Robot(Robot):
    def __init__(self, config: G1Config, embodiment: Embodiment | None = None):
        self.config = config
        self.emb = embodiment or load_embodiment(config.embodiment)
        self.mapping = HandMapping.from_embodiment(self.emb)
        # (embodiment index, motor slot, kp, kd) for every arm joint
        self._arm: list[tuple[int, int, float, float]] = []
        for group, first in config.arm_motors.items():
            g = self.emb.group(group)
            for k, idx in enumerate(range(g.start, g.stop)):
                self._arm.append((idx, first + k, config.kp[k], config.kd[k]))
        self._head_slice = self.emb.group("head").slice
        self._lock = threading.Lock()
        self._lowstate: LowState_ | None = None
        self._lowstate_stamp = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.hands = self.head = None
        self.commands_sent = 0

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> None:
        if self._thread is not None:
            return
        c = self.config
        self._cmd_writer = dds.writer(c.domain_id, topics.ARM_SDK, LowCmd_, c.interface)
        self._state_reader = dds.reader(c.domain_id, topics.LOWSTATE, LowState_, c.interface)
        self.hands = make_hands(c.hands, self.mapping, c.domain_id, c.interface)
        self.head = make_head(c.head, self.emb.default_pose[self._head_slice], c.domain_id, c.interface)
        self._waitset = WaitSet(dds.participant(c.domain_id, c.interface))
        any_new = SampleState.NotRead | ViewState.Any | InstanceState.Any
        for r in (self._state_reader, getattr(self.hands, "reader", None), self.head.reader):
            if r is not None:
                self._waitset.attach(ReadCondition(r, any_new))
        self._stop.clear()
        self._thread = threading.Thread(target=self._receive, name="g1-receive", daemon=True)
        self._thread.start()

    def disconnect(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._thread = None
        self.hands.close()
        self.head.close()

    def __enter__(self) -> "G1Robot":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    def _receive(self) -> None:
        errors = 0
        while not self._stop.is_set():
            try:
                self._waitset.wait(duration(milliseconds=50))
                latest = None
                for msg in self._state_reader.take(N=16):
                    if isinstance(msg, LowState_):
                        latest = msg
                if latest is not None:
                    with self._lock:
                        self._lowstate, self._lowstate_stamp = latest, time.monotonic()
                self.hands.poll()
                self.head.poll()
            except Exception:  # noqa: BLE001 - keep receiving; the state stamp shows any gap
                errors += 1
                if errors in (1, 10) or errors % 1000 == 0:
                    log.exception("G1 receive thread error (%d so far)", errors)
                self._stop.wait(0.01)

    # ------------------------------------------------------------------ state
    def wait_for_state(self, timeout_s: float = 5.0) -> RobotState:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            s = self.read_state()
            if s is not None:
                return s
            time.sleep(0.005)
        raise TimeoutError(f"no complete G1 state within {timeout_s} s on DDS domain "
                           f"{self.config.domain_id} ({self.parts_missing()} missing)")

    def parts_missing(self) -> list[str]:
        missing = []
        if self._lowstate is None:
            missing.append(topics.LOWSTATE)
        if self.hands is None or self.hands.state() is None:
            missing.append("hand state")
        if self.head is None or self.head.state() is None:
            missing.append("head state")
        return missing

    def read_state(self) -> RobotState | None:
        with self._lock:
            low, low_stamp = self._lowstate, self._lowstate_stamp
        hands = self.hands.state() if self.hands is not None else None
        head = self.head.state() if self.head is not None else None
        if low is None or hands is None or head is None:
            return None
        q = np.zeros(self.emb.dim, dtype=np.float32)
        dq = np.zeros(self.emb.dim, dtype=np.float32)
        for idx, slot, _, _ in self._arm:
            q[idx] = low.motor_state[slot].q
            dq[idx] = low.motor_state[slot].dq
        self.mapping.join(q, hands[0], hands[1])
        q[self._head_slice] = head[0]
        return RobotState(q=q, stamp=min(low_stamp, hands[2], head[1]), dq=dq, tick=int(low.tick))

    @property
    def mode_machine(self) -> int | None:
        low = self._lowstate
        return None if low is None else int(low.mode_machine)

    # ------------------------------------------------------------------ commands
    def build_lowcmd(self, q_target: np.ndarray, blend: float) -> LowCmd_:
        """The rt/arm_sdk message for ``q_target`` (embodiment layout) and the blend weight."""
        low = self._lowstate
        if low is None:
            raise RuntimeError(f"no {topics.LOWSTATE} received yet: mode_machine is unknown, "
                               "refusing to command the arms")
        cmd = LowCmd_(mode_pr=0, mode_machine=int(low.mode_machine))
        for idx, slot, kp, kd in self._arm:
            cmd.motor_cmd[slot] = MotorCmd_(mode=ARM_MODE_ENABLE, q=float(q_target[idx]), kp=kp, kd=kd)
        cmd.motor_cmd[self.config.blend_motor] = MotorCmd_(q=float(blend))
        cmd.crc = lowcmd_crc(cmd)
        return cmd

    def send(self, q_target: np.ndarray, blend: float = 1.0) -> None:
        q = np.asarray(q_target, dtype=np.float32)
        if q.shape != (self.emb.dim,):
            raise ValueError(f"q_target must have shape ({self.emb.dim},), got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError(f"q_target has non-finite values at {np.flatnonzero(~np.isfinite(q)).tolist()}")
        if not (np.isfinite(blend) and 0.0 <= blend <= 1.0):
            raise ValueError(f"blend must be within 0..1, got {blend}")
        if self._thread is None:
            raise RuntimeError("G1Robot.send before connect()")
        self._cmd_writer.write(self.build_lowcmd(q, blend))
        self.hands.send(q)
        self.head.send(q[self._head_slice])
        self.commands_sent += 1
