"""The one interface every inference engine (torch, ort, trt) implements.

Pre- and post-processing are shared by all engines (:mod:`lara_g1.runtime.engines.base`); only the
backbone and action-head calls differ.
"""
from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

from lara_g1.core.observation import InferenceResult, Observation


class Engine(abc.ABC):
    """Base class of the inference engines. Subclasses live in :mod:`lara_g1.runtime.engines`."""

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
        """embodiment (Embodiment.to_dict(); its ``dim`` is the action_dim of the chunks ``infer``
        returns), horizon (the model's chunk length, that of ``noise``), action_steps (optional: the
        steps ``infer`` returns, the first of the chunk; absent: horizon), denoising_steps,
        max_action_dim (the model's padded width, that of ``noise``), cameras {name: [H, W]},
        default_instruction, model_id, engine."""

    def close(self) -> None:  # engines holding devices or sessions release them here
        pass
