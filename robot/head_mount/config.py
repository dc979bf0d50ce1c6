"""The head mount's config file, and Dynamixel position units.

A file (``configs/head/dynamixel.yaml`` is the bundled template; ``lara-head calibrate --config
FILE`` writes a lab's own) names the serial port, the baud rate, and per joint, in the
embodiment's head order (``head_yaw``, ``head_pitch``): the servo ID, the joint limits (rad), the
zero offset (the raw position at the mount's mechanical zero) and the direction. Loaded through
:func:`lara_g1.core.config.load_config`, validated on load.

Units (DYNAMIXEL X series, Position Control Mode): Goal/Present Position are ticks, 4096 per
revolution (0.088 deg each), 0..4095 in position mode, 2048 the centre of the range.
``q = direction * (ticks - zero_ticks) * 2 pi / 4096``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from lara_g1.core.config import ConfigModel, config_dataclass, load_config
from lara_g1.core.embodiment import load_embodiment
from lara_g1.core.errors import ConfigError

TICKS_PER_REV = 4096
CENTER_TICKS = 2048
MAX_TICKS = TICKS_PER_REV - 1            # Position Control Mode: 0..4095
RAD_PER_TICK = 2.0 * math.pi / TICKS_PER_REV
# Baud rates both the X series (Baud Rate(8) values 0..6) and dynamixel-sdk's PortHandler accept.
BAUD_RATES = (9600, 57600, 115200, 1_000_000, 2_000_000, 3_000_000, 4_000_000)
HEAD_CONFIGS = "head/{name}.yaml"


class HeadMountConfigError(ConfigError):
    """A head mount config that is missing, malformed or does not fit the servos or the embodiment."""


def ticks_to_rad(ticks: int, zero_ticks: int, direction: int = 1) -> float:
    """Radians from a raw position. The difference to the zero is taken modulo one revolution
    (into -2048..2047 ticks): with the torque off a servo reports a multi-turn position, and the
    mount never turns half a revolution away from its zero."""
    delta = (int(ticks) - int(zero_ticks) + CENTER_TICKS) % TICKS_PER_REV - CENTER_TICKS
    return direction * delta * RAD_PER_TICK


def rad_to_ticks(q: float, zero_ticks: int, direction: int = 1) -> int:
    """The raw goal position for ``q`` radians (rounded to the nearest tick)."""
    return int(round(zero_ticks + direction * q / RAD_PER_TICK))


@config_dataclass
class HeadJoint(ConfigModel):
    """One joint of the mount: a servo, its limits and its zero."""

    config_error = HeadMountConfigError

    name: str                                     # the embodiment's joint name (head_yaw, head_pitch)
    id: int = Field(ge=0, le=252)                 # the servo's DYNAMIXEL ID (Protocol 2.0: 0..252)
    lower: float                                  # rad, at the joint
    upper: float                                  # rad
    zero_ticks: int = Field(CENTER_TICKS, ge=0, le=MAX_TICKS)   # raw position at the mechanical zero
    direction: Literal[1, -1] = 1                 # -1: the servo turns against the joint's positive sense

    @model_validator(mode="after")
    def _limits_fit_the_servo(self) -> HeadJoint:
        if not self.lower < self.upper:
            raise ValueError(f"{self.name}: lower {self.lower} must be below upper {self.upper}")
        if not self.lower <= 0.0 <= self.upper:
            raise ValueError(f"{self.name}: the zero (the calibration pose) must lie within "
                             f"[{self.lower}, {self.upper}]")
        lo, hi = sorted(self.limit_ticks())
        if lo < 0 or hi > MAX_TICKS:
            raise ValueError(f"{self.name}: limits [{self.lower}, {self.upper}] rad around zero_ticks "
                             f"{self.zero_ticks} reach ticks {lo}..{hi}, outside the servo's 0..{MAX_TICKS} "
                             f"in position mode; mount the horn so that the zero sits nearer the "
                             f"centre ({CENTER_TICKS}) and calibrate again")
        return self

    def limit_ticks(self) -> tuple[int, int]:
        """The raw positions of ``lower`` and ``upper`` (in that order; swapped ranks if direction -1)."""
        return (rad_to_ticks(self.lower, self.zero_ticks, self.direction),
                rad_to_ticks(self.upper, self.zero_ticks, self.direction))

    def to_rad(self, ticks: int) -> float:
        return ticks_to_rad(ticks, self.zero_ticks, self.direction)

    def to_ticks(self, q: float) -> int:
        return rad_to_ticks(q, self.zero_ticks, self.direction)


@config_dataclass
class HeadMountConfig(ConfigModel):
    """A head mount config file (``configs/head/*.yaml`` or a lab's own path)."""

    config_error = HeadMountConfigError

    driver: Literal["dynamixel"] = "dynamixel"
    port: str = "/dev/ttyUSB0"                    # the USB-TTL adapter (U2D2)
    baudrate: int = 1_000_000                     # must match the servos' Baud Rate(8)
    # Control and state rate; none: the control config's safety.command_hz (the arms' command rate).
    rate_hz: float | None = Field(None, gt=0.0, le=1000.0)
    control: str = "default"                      # control config: the watchdog rule and head velocity
    robot: str = "real"                           # robot config: DDS domain, interface and head topics
    embodiment: str = "g1"
    joints: list[HeadJoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _fits(self) -> HeadMountConfig:
        if self.baudrate not in BAUD_RATES:
            raise ValueError(f"baudrate {self.baudrate} is not one of {list(BAUD_RATES)}")
        ids = [j.id for j in self.joints]
        if len(set(ids)) != len(ids):
            raise ValueError(f"joints: servo IDs must differ, got {ids}")
        emb = load_embodiment(self.embodiment)
        head = list(emb.joint_names[emb.group("head").slice])
        names = [j.name for j in self.joints]
        if names != head:
            raise ValueError(f"joints must be the embodiment's head joints in order {head}, got {names}")
        return self

    @property
    def ids(self) -> list[int]:
        return [j.id for j in self.joints]

    def with_ids(self, ids: list[int]) -> HeadMountConfig:
        """A copy with the servo IDs replaced, in joint order."""
        if len(ids) != len(self.joints):
            raise HeadMountConfigError(f"--ids needs {len(self.joints)} IDs (one per joint: "
                                       f"{', '.join(j.name for j in self.joints)}), got {ids}")
        return self.replace(joints=[j.replace(id=i) for j, i in zip(self.joints, ids)])

    def with_zero_ticks(self, zeros: list[int]) -> HeadMountConfig:
        """A copy with new zero offsets (raw ticks, joint order), validated."""
        return self.replace(joints=[j.replace(zero_ticks=int(z)) for j, z in zip(self.joints, zeros)])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_head_config(name_or_path: str | Path = "dynamixel") -> HeadMountConfig:
    """A bundled head config by name (``dynamixel``) or a YAML file path."""
    return load_config(HeadMountConfig, name_or_path, bundled=HEAD_CONFIGS, kind="head mount config")


_HEADER = """\
# Head mount config for lara-head (docs/ROBOT.md, "Head mount (Dynamixel)").
# Joints in the embodiment's head order; limits in rad at the joint; zero_ticks: the raw Present
# Position (0..4095, 4096 per revolution) with the mount at its mechanical zero, written by
# `lara-head calibrate`. Rewritten whole by calibration: keep notes elsewhere.
"""


def save_head_config(config: HeadMountConfig, path: str | Path) -> Path:
    """Write ``config`` to ``path`` atomically: a temporary file in the same folder, flushed to
    disk, then renamed over the old file. A crash leaves the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _HEADER + yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
