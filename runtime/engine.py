"""The one interface every inference engine (torch, ort, trt) implements.

An engine turns observations (camera frames, the 28-D state, an instruction) into action
chunks ``(B, H, 28)`` float32 in the units of the embodiment (DESIGN.md §2). Pre- and
post-processing are shared by all engines; only the backbone and action-head calls differ.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

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


class Engine(abc.ABC):
    """Base class of the inference engines. Subclasses live in :mod:`runtime.engines`."""

    kind: str = "?"

    @abc.abstractmethod
    def infer(self, observations: Sequence[Observation], noise: np.ndarray | None = None) -> InferenceResult:
        """Sample one action chunk per observation.

        ``noise``: float32 ``(B, H, max_action_dim)`` standard normal, the flow's starting point;
        ``None`` draws it from the engine's own generator. The same noise gives the same chunk.
        """

    @property
    @abc.abstractmethod
    def metadata(self) -> dict[str, Any]:
        """embodiment (Embodiment.to_dict()), horizon, denoising_steps, action_dim (padded),
        cameras {name: [H, W]}, default_instruction, model_id, engine."""

    def close(self) -> None:  # engines holding devices or sessions release them here
        pass


def make_noise(batch: int, horizon: int, action_dim: int, seed: int | None = None) -> np.ndarray:
    """Standard-normal flow noise ``(batch, horizon, action_dim)`` float32 from an explicit seed."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, horizon, action_dim), dtype=np.float32)
