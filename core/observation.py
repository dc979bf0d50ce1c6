"""What a policy consumes and produces, shared by training, export, serving and the robot.

An engine turns observations (camera frames, the 28-D state, an instruction) into action
chunks ``(B, H, 28)`` float32 in the units of the embodiment (docs/POLICY.md).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Observation:
    """One robot's observation at one instant."""

    images: Mapping[str, np.ndarray]  # camera name -> uint8 [H, W, 3] RGB, any size
    state: np.ndarray                  # float32 [dim] in embodiment units
    instruction: str | None = None     # None: the bundle's default instruction


@dataclass
class InferenceResult:
    actions: np.ndarray                        # float32 [B, H, dim]
    timing_ms: dict[str, float] = field(default_factory=dict)  # preprocess, backbone, action_head, postprocess, total


def make_noise(batch: int, horizon: int, max_action_dim: int, seed: int | None = None) -> np.ndarray:
    """Standard-normal flow noise ``(batch, horizon, max_action_dim)`` float32 from an explicit seed
    (``max_action_dim``: the model's padded action width)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, horizon, max_action_dim), dtype=np.float32)
