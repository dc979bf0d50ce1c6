"""What the torch, ort and trt engines share: bundle metadata, pre/post-processing, noise, timings.

Every engine runs the same pipeline: ``Preprocessor`` (numpy, from the bundle) -> backbone ->
action head (the 4-step Euler loop from the given noise) -> ``Preprocessor.postprocess``. Only the
two model stages differ between engines; they implement :meth:`PipelineEngine.run_model`.
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from lara_g1.core.embodiment import Embodiment
from lara_g1.core.errors import LaraError
from lara_g1.core.observation import InferenceResult, Observation
from lara_g1.runtime.engine import Engine

if TYPE_CHECKING:  # not at import time: the lara.model package imports torch
    from lara_g1.lara.model.config import PolicyConfig
    from lara_g1.lara.processing import Preprocessor

TIMING_KEYS = ("preprocess", "backbone", "action_head", "postprocess", "total")


class EngineError(LaraError, RuntimeError):
    """An engine that cannot be built from this bundle, or a request it cannot serve."""


@dataclass
class BundleSpec:
    """The parts of a policy bundle every engine needs (no torch weights)."""

    path: Path
    config: PolicyConfig
    preprocessor: Preprocessor
    model_id: str
    embodiment: Embodiment

    @property
    def horizon(self) -> int:
        """The model's chunk length: that of the flow noise and of the action head's output."""
        return int(self.config.horizon)

    @property
    def action_steps(self) -> int:
        """The steps served, the first of each chunk (``PolicyConfig.action_steps``; None: the horizon)."""
        return int(self.config.action_steps or self.config.horizon)

    @property
    def max_action_dim(self) -> int:
        """The model's padded action width (``PolicyConfig.max_action_dim``): the width of the flow
        noise and of the action head's output. Post-processing cuts it to the embodiment's
        ``dim`` (its action_dim)."""
        return int(self.config.max_action_dim)


class PipelineEngine(Engine):
    """Shared ``infer``: preprocess, the engine's model stages, postprocess, per-stage timings."""

    kind = "?"

    def __init__(self, spec: BundleSpec, seed: int | None = None):
        self.spec = spec
        self._rng = np.random.default_rng(seed)

    # ---- the engine-specific part -----------------------------------------------------------
    @abc.abstractmethod
    def run_model(self, inputs: Mapping[str, np.ndarray], noise: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """Backbone then action head on preprocessed inputs. Returns the padded, normalised
        actions float32 ``(B, H, max_action_dim)`` and ``{"backbone": ms, "action_head": ms}``."""

    # ---- the shared part --------------------------------------------------------------------
    def infer(self, observations: Sequence[Observation], noise: np.ndarray | None = None) -> InferenceResult:
        if isinstance(observations, Observation):
            observations = [observations]
        if len(observations) == 0:
            raise ValueError("infer() needs at least one observation")
        batch = len(observations)
        t0 = time.perf_counter()
        inputs = self.spec.preprocessor(list(observations))
        noise = self._noise(noise, batch)
        t1 = time.perf_counter()
        actions, stage_ms = self.run_model(inputs, noise)
        t2 = time.perf_counter()
        # the observations' raw states: relative action groups decode against the last measured state
        states = self.spec.preprocessor.raw_states(observations)
        out = np.ascontiguousarray(self.spec.preprocessor.postprocess(actions, states), dtype=np.float32)
        t3 = time.perf_counter()
        timing = {"preprocess": (t1 - t0) * 1e3, **stage_ms,
                  "postprocess": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3}
        return InferenceResult(actions=out, timing_ms=timing)

    def _noise(self, noise: np.ndarray | None, batch: int) -> np.ndarray:
        shape = (batch, self.spec.horizon, self.spec.max_action_dim)
        if noise is None:
            return self._rng.standard_normal(shape, dtype=np.float32)
        noise = np.asarray(noise)
        if noise.shape != shape:
            raise ValueError(f"noise must have shape (batch, horizon, max_action_dim) = {shape}, got {noise.shape}")
        if not np.all(np.isfinite(noise)):
            raise ValueError("noise contains NaN or infinity")
        return np.ascontiguousarray(noise, dtype=np.float32)

    @property
    def metadata(self) -> dict[str, Any]:
        cfg = self.spec.config
        size = int(cfg.image_size)
        return {
            "embodiment": self.spec.embodiment.to_dict(),
            "horizon": self.spec.horizon,
            "action_steps": self.spec.action_steps,
            "denoising_steps": int(cfg.denoising_steps),
            "max_action_dim": self.spec.max_action_dim,
            # the frame size the model takes: any size is resized, except by GR00T N1.6's pipeline
            "cameras": {name: (list(cfg.camera_size) if cfg.image_pipeline == "gr00t_n16" else [size, size])
                        for name in cfg.cameras},
            "default_instruction": cfg.default_instruction,
            "model_id": self.spec.model_id,
            "engine": self.kind,
        }


def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3
