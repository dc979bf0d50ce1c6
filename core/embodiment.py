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
import yaml

from lara_g1.core.config import config_path
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


def parse_embodiment(raw: dict, source: str = "<dict>") -> Embodiment:
    """Validate a parsed embodiment file. Raises :class:`EmbodimentError` naming the problem."""

    def fail(msg: str) -> EmbodimentError:
        return EmbodimentError(f"{source}: {msg}")

    if not isinstance(raw, dict):
        raise fail("expected a mapping at the top level")
    for key in ("name", "embodiment_id", "groups", "joints"):
        if key not in raw:
            raise fail(f"missing key {key!r}")
    eid = raw["embodiment_id"]
    if not isinstance(eid, int) or not 0 <= eid < MAX_EMBODIMENTS:
        raise fail(f"embodiment_id must be an integer in [0, {MAX_EMBODIMENTS}), got {eid!r}")

    joints = raw["joints"]
    if not isinstance(joints, list) or not joints:
        raise fail("'joints' must be a non-empty list")
    names, lower, upper, default = [], [], [], []
    for i, j in enumerate(joints):
        if not isinstance(j, dict):
            raise fail(f"joint #{i} must be a mapping")
        missing = [k for k in ("name", "lower", "upper", "default") if k not in j]
        if missing:
            raise fail(f"joint #{i} ({j.get('name', '?')}) is missing {missing}")
        lo, hi, d = float(j["lower"]), float(j["upper"]), float(j["default"])
        if not lo < hi:
            raise fail(f"joint {j['name']!r}: lower {lo} must be below upper {hi}")
        if not lo <= d <= hi:
            raise fail(f"joint {j['name']!r}: default {d} is outside [{lo}, {hi}]")
        names.append(str(j["name"]))
        lower.append(lo)
        upper.append(hi)
        default.append(d)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise fail(f"duplicate joint names {dupes}")

    groups_raw = raw["groups"]
    if not isinstance(groups_raw, dict) or not groups_raw:
        raise fail("'groups' must be a non-empty mapping of name -> {size, unit}")
    groups, start = [], 0
    for gname, g in groups_raw.items():
        if not isinstance(g, dict) or "size" not in g or "unit" not in g:
            raise fail(f"group {gname!r} needs 'size' and 'unit'")
        size = int(g["size"])
        if size <= 0:
            raise fail(f"group {gname!r} has size {size}")
        groups.append(JointGroup(str(gname), start, start + size, str(g["unit"])))
        start += size
    if start != len(names):
        raise fail(f"groups cover {start} joints but {len(names)} joints are listed")

    max_state = int(raw.get("max_state_dim", 64))
    max_action = int(raw.get("max_action_dim", 32))
    if len(names) > max_state or len(names) > max_action:
        raise fail(f"{len(names)} joints do not fit max_state_dim {max_state} / "
                   f"max_action_dim {max_action}")

    return Embodiment(
        name=str(raw["name"]),
        embodiment_id=eid,
        max_state_dim=max_state,
        max_action_dim=max_action,
        joint_names=tuple(names),
        groups=tuple(groups),
        lower=_frozen(lower),
        upper=_frozen(upper),
        default_pose=_frozen(default),
    )


def load_embodiment_file(path: str | Path) -> Embodiment:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise EmbodimentError(f"{path}: not valid YAML: {exc}") from exc
    return parse_embodiment(raw, source=str(path))


@lru_cache(maxsize=None)
def load_embodiment(name: str = "g1") -> Embodiment:
    """The bundled embodiment ``name`` (``configs/embodiment/<name>.yaml``), validated."""
    return load_embodiment_file(config_path(f"embodiment/{name}.yaml"))
