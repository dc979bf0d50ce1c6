"""The embodiment layout: joint names, groups, units, limits and default pose.

One YAML file per embodiment (``configs/embodiment/<name>.yaml``) is the single source of the
28-D G1 layout; the policy, the server, the robot and teleop all read it through
:func:`load_embodiment`. Loading validates the file and says exactly what is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from lara_g1.core.config import ConfigModel, config_dataclass, load_config
from lara_g1.core.errors import ConfigError

MAX_EMBODIMENTS = 64


class EmbodimentError(ConfigError):
    """An embodiment file that does not describe a valid layout."""


@dataclass(frozen=True)
class JointGroup:
    name: str
    start: int
    stop: int
    unit: str

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Embodiment:
    """A validated joint layout. Arrays are read-only float32 of length ``dim``."""

    name: str
    embodiment_id: int
    max_state_dim: int
    max_action_dim: int
    joint_names: tuple[str, ...]
    groups: tuple[JointGroup, ...]
    lower: np.ndarray = field(repr=False)
    upper: np.ndarray = field(repr=False)
    default_pose: np.ndarray = field(repr=False)

    @property
    def dim(self) -> int:
        return len(self.joint_names)

    def group(self, name: str) -> JointGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"embodiment {self.name!r} has no joint group {name!r}; groups: "
                       f"{[g.name for g in self.groups]}")

    def index(self, joint_name: str) -> int:
        try:
            return self.joint_names.index(joint_name)
        except ValueError:
            raise KeyError(f"embodiment {self.name!r} has no joint {joint_name!r}") from None

    def unit_of(self, joint_index: int) -> str:
        for g in self.groups:
            if g.start <= joint_index < g.stop:
                return g.unit
        raise IndexError(joint_index)

    def clip(self, q: np.ndarray) -> np.ndarray:
        """Clamp a (..., dim) array to the joint limits."""
        return np.clip(q, self.lower, self.upper)

    def within_limits(self, q: np.ndarray, tol: float = 0.0) -> bool:
        q = np.asarray(q)
        return bool(np.all(q >= self.lower - tol) and np.all(q <= self.upper + tol))

    def to_dict(self) -> dict:
        """A JSON-friendly description (for bundles, server metadata and dataset info)."""
        return {
            "name": self.name,
            "embodiment_id": self.embodiment_id,
            "dim": self.dim,
            "joint_names": list(self.joint_names),
            "groups": {g.name: [g.start, g.stop, g.unit] for g in self.groups},
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "default_pose": self.default_pose.tolist(),
        }


def _frozen(values: list[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float32)
    arr.setflags(write=False)
    return arr


@config_dataclass
class _GroupSpec(ConfigModel):
    size: int = Field(gt=0)
    unit: str


@config_dataclass
class _JointSpec(ConfigModel):
    name: str
    lower: float
    upper: float
    default: float

    @model_validator(mode="after")
    def _default_within_limits(self) -> _JointSpec:
        if not self.lower < self.upper:
            raise ValueError(f"{self.name}: lower {self.lower} must be below upper {self.upper}")
        if not self.lower <= self.default <= self.upper:
            raise ValueError(f"{self.name}: default {self.default} is outside [{self.lower}, {self.upper}]")
        return self


@config_dataclass
class EmbodimentFile(ConfigModel):
    """The schema of ``configs/embodiment/<name>.yaml``; groups are contiguous, in file order."""

    config_error = EmbodimentError

    name: str
    embodiment_id: int = Field(strict=True, ge=0, lt=MAX_EMBODIMENTS)
    max_state_dim: int = 64
    max_action_dim: int = 32
    groups: dict[str, _GroupSpec] = Field(min_length=1)
    joints: list[_JointSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _layout_fits(self) -> EmbodimentFile:
        names = [j.name for j in self.joints]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate joint names {dupes}")
        covered = sum(g.size for g in self.groups.values())
        if covered != len(names):
            raise ValueError(f"groups cover {covered} joints but {len(names)} joints are listed")
        if len(names) > self.max_state_dim or len(names) > self.max_action_dim:
            raise ValueError(f"{len(names)} joints do not fit max_state_dim {self.max_state_dim} / "
                             f"max_action_dim {self.max_action_dim}")
        return self

    def build(self) -> Embodiment:
        groups, start = [], 0
        for name, g in self.groups.items():
            groups.append(JointGroup(name, start, start + g.size, g.unit))
            start += g.size
        return Embodiment(
            name=self.name,
            embodiment_id=self.embodiment_id,
            max_state_dim=self.max_state_dim,
            max_action_dim=self.max_action_dim,
            joint_names=tuple(j.name for j in self.joints),
            groups=tuple(groups),
            lower=_frozen([j.lower for j in self.joints]),
            upper=_frozen([j.upper for j in self.joints]),
            default_pose=_frozen([j.default for j in self.joints]),
        )


def parse_embodiment(raw: dict, source: str = "<dict>") -> Embodiment:
    """Validate a parsed embodiment file. Raises :class:`EmbodimentError` naming the problem."""
    return EmbodimentFile.from_dict(raw, source).build()


def load_embodiment_file(path: str | Path) -> Embodiment:
    """The embodiment in a YAML file (``.yaml``/``.yml``), validated."""
    return load_config(EmbodimentFile, path, kind="embodiment").build()


@lru_cache(maxsize=None)
def load_embodiment(name: str = "g1") -> Embodiment:
    """The bundled embodiment ``name`` (``configs/embodiment/<name>.yaml``), validated. A name ending in
    ``.yaml``/``.yml`` is a file path instead (the config system's one path rule): an embodiment that
    is not shipped, e.g. a test's (``PolicyConfig.embodiment`` may be such a path)."""
    return load_config(EmbodimentFile, name, bundled="embodiment/{name}.yaml", kind="embodiment").build()
