"""The torch engine: the bundle's ``LaraPolicy`` in eager mode, or through ``torch.compile``.

It is the reference the exported engines are checked against: ``backbone_features`` once, then
``LaraPolicy.sample`` (the Euler loop in Python). ``compile=True`` compiles both stages with
``torch.compile`` (first calls are slow while it compiles, per batch size).
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np
import torch

from lara_g1.runtime.engines.base import BundleSpec, PipelineEngine, ms_since


class TorchEngine(PipelineEngine):
    kind = "torch"

    def __init__(self, spec: BundleSpec, policy: torch.nn.Module, device: str = "cpu", compile: bool = False,
                 seed: int | None = None):
        super().__init__(spec, seed=seed)
        self.device = torch.device(device)
        self.policy = policy.eval().to(self.device)
        self.compiled = bool(compile)
        self._backbone = policy.backbone_features
        self._sample = policy.sample
        if compile:
            self._backbone = torch.compile(self._backbone, dynamic=False)
            self._sample = torch.compile(self._sample, dynamic=False)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ---- stages (public for bench/engines.py) -----------------------------------------------
    @torch.inference_mode()
    def run_backbone(self, inputs: Mapping[str, np.ndarray]) -> torch.Tensor:
        out = self._backbone(self._tensor(inputs["pixel_values"]), self._tensor(inputs["input_ids"]),
                             self._tensor(inputs["attention_mask"]))
        self._sync()
        return out

    @torch.inference_mode()
    def run_action_head(self, features: torch.Tensor, state: np.ndarray, embodiment_id: np.ndarray,
                        noise: np.ndarray) -> np.ndarray:
        actions = self._sample(features, self._tensor(state), self._tensor(embodiment_id), self._tensor(noise))
        return actions.float().cpu().numpy()

    def run_model(self, inputs: Mapping[str, np.ndarray], noise: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        t0 = time.perf_counter()
        features = self.run_backbone(inputs)
        t1 = time.perf_counter()
        actions = self.run_action_head(features, inputs["state"], inputs["embodiment_id"], noise)
        return actions, {"backbone": (t1 - t0) * 1e3, "action_head": ms_since(t1)}

    @property
    def metadata(self) -> dict[str, Any]:
        return {**super().metadata, "device": str(self.device), "compiled": self.compiled}
