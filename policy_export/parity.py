"""Parity of exported graphs and engines against the torch policy, on fresh random inputs.

Every measurement draws new observations (random camera frames of a random size, random states
inside the joint limits, an instruction) and new flow noise, runs them through the shared
Preprocessor once, and feeds the same arrays to torch and to the exported graphs. Errors are max
absolute differences in the model's own space (VL features; normalised padded actions before
post-processing, whose clipping could hide a difference).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lara_g1.core.embodiment import Embodiment
from lara_g1.core.observation import Observation, make_noise
from lara_g1.lara.processing import Preprocessor

ONNX_FP32_TOLERANCE = 1e-4


@dataclass
class ParityReport:
    backbone: float       # max abs error of the VL features
    action_head: float    # max abs error of the actions, both sides fed torch's VL features
    chunk: float          # max abs error of the actions, whole pipeline on each side
    batch: int
    seed: int | None

    def to_dict(self, tolerance: float) -> dict[str, Any]:
        return {"backbone_max_abs_error": self.backbone, "action_head_max_abs_error": self.action_head,
                "chunk_max_abs_error": self.chunk, "tolerance": tolerance, "batch": self.batch,
                "inputs": "fresh random observations and noise", "reference": "torch fp32 (LaraPolicy.sample)"}

    def worst(self) -> float:
        return max(self.backbone, self.action_head, self.chunk)


def random_observations(embodiment: Embodiment, camera: str, batch: int, rng: np.random.Generator,
                        size: tuple[int, int] | None = None) -> list[Observation]:
    """Observations with random frames (random size, or ``size`` [H, W] for pipelines that take only the
    camera's own size), states inside the joint limits, mixed instructions."""
    h, w = size or (int(rng.integers(96, 320)), int(rng.integers(96, 320)))
    out = []
    for i in range(batch):
        image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        state = rng.uniform(embodiment.lower, embodiment.upper).astype(np.float32)
        instruction = None if i % 2 else f"pick up the cube {int(rng.integers(1000))}"
        out.append(Observation(images={camera: image}, state=state, instruction=instruction))
    return out


def random_inputs(preprocessor: Preprocessor, horizon: int, max_action_dim: int, batch: int,
                  seed: int | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Preprocessed fresh random observations and flow noise of ``batch`` samples."""
    rng = np.random.default_rng(seed)
    cfg = preprocessor.config
    size = tuple(cfg.camera_size) if cfg.image_pipeline == "gr00t_n16" else None
    obs = random_observations(preprocessor.embodiment, preprocessor.camera, batch, rng, size)
    noise = make_noise(batch, horizon, max_action_dim, seed=int(rng.integers(2**31)))
    return preprocessor(obs), noise


@torch.no_grad()
def torch_reference(policy: torch.nn.Module, inputs: dict[str, np.ndarray], noise: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(vl_features, actions)`` of the eager torch policy, fp32."""
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
    feats = policy.backbone_features(t["pixel_values"], t["input_ids"], t["attention_mask"])
    actions = policy.sample(feats, t["state"], t["embodiment_id"], torch.from_numpy(noise))
    return feats.numpy(), actions.numpy()


def onnx_parity(policy: torch.nn.Module, preprocessor: Preprocessor, backbone_path: Path, head_path: Path,
                batch: int = 2, seed: int | None = None, threads: int | None = None) -> ParityReport:
    """ONNX Runtime (CPU) against torch, same inputs and noise, for both graphs and the whole chunk."""
    import onnxruntime as ort

    cfg = policy.config
    inputs, noise = random_inputs(preprocessor, cfg.horizon, cfg.max_action_dim, batch, seed)
    ref_feats, ref_actions = torch_reference(policy, inputs, noise)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    backbone = ort.InferenceSession(str(backbone_path), opts, providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(str(head_path), opts, providers=["CPUExecutionProvider"])
    feats = backbone.run(None, {k: inputs[k] for k in ("pixel_values", "input_ids", "attention_mask")})[0]
    head_only = head.run(None, {"vl_features": ref_feats, "state": inputs["state"], "noise": noise})[0]
    chunk = head.run(None, {"vl_features": feats, "state": inputs["state"], "noise": noise})[0]
    return ParityReport(backbone=float(np.max(np.abs(feats - ref_feats))),
                        action_head=float(np.max(np.abs(head_only - ref_actions))),
                        chunk=float(np.max(np.abs(chunk - ref_actions))), batch=batch, seed=seed)


def trt_parity(bundle: str | Path, precision: str, batch: int = 2, seed: int | None = None) -> float:
    """Whole-chunk max abs error of the TensorRT engines against torch fp32 (same inputs, noise)."""
    from lara_g1.lara.bundle import load_bundle
    from lara_g1.policy_export.trt_session import TrtSession

    b = load_bundle(bundle)
    session = TrtSession(bundle, precision)
    try:
        inputs, noise = random_inputs(b.preprocessor, b.config.horizon, b.config.max_action_dim, batch, seed)
        _, ref = torch_reference(b.policy, inputs, noise)
        actions, _ = session.run(inputs, noise)
    finally:
        session.close()
    return float(np.max(np.abs(actions - ref)))
