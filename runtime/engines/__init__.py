"""Inference engines behind one interface (:class:`lara_g1.runtime.engine.Engine`).

``load_engine(bundle, "torch" | "ort" | "trt", **options)``:

- ``torch``: ``device="cpu"``, ``compile=False`` (``True``: torch.compile), ``seed``.
- ``ort``: the exported fp32 ONNX graphs; ``provider="auto" | "cpu" | "cuda"``, ``threads``, ``seed``.
  Needs ``lara-export BUNDLE --onnx`` first; the manifest is verified against the files.
- ``trt``: the TensorRT engines; ``precision="fp16" | "bf16" | "fp32"``, ``seed``, ``device_index``.
  Needs ``lara-export BUNDLE --trt`` on the same GPU and the ``trt`` extra.

The exported engines read only the bundle's config and stats (not the torch weights).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lara_g1.core.extras import MissingExtraError
from lara_g1.runtime.engine import Engine
from lara_g1.runtime.engines.base import BundleSpec, EngineError, PipelineEngine

ENGINE_KINDS = ("torch", "ort", "trt")

__all__ = ["ENGINE_KINDS", "BundleSpec", "EngineError", "MissingExtraError", "PipelineEngine", "load_bundle_spec",
           "load_engine"]


def load_bundle_spec(bundle_path: str | Path) -> BundleSpec:
    """Config, preprocessing and model id of a bundle, checked, without loading the torch weights."""
    from lara_g1.core.embodiment import load_embodiment
    from lara_g1.lara.bundle import STATS_FILE, TOKENIZER_DIR, BundleError, read_bundle_config
    from lara_g1.lara.processing import NormStats, Preprocessor, StatsError

    path = Path(bundle_path)
    raw = read_bundle_config(path)
    config = raw["policy_config"]
    embodiment = load_embodiment(config.embodiment)
    stats_path = path / STATS_FILE
    try:
        stats = NormStats.from_dict(json.loads(stats_path.read_text()), embodiment.dim)
    except FileNotFoundError:
        raise BundleError(f"{stats_path}: missing (normalisation stats)") from None
    except (json.JSONDecodeError, StatsError) as exc:
        raise BundleError(f"{stats_path}: {exc}") from exc
    tokenizer = None
    if config.uses_hf_tokenizer:
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(str(path / TOKENIZER_DIR))
    return BundleSpec(path=path, config=config, preprocessor=Preprocessor(config, stats, tokenizer),
                      model_id=str(raw["model_id"]), embodiment=embodiment)


def load_engine(bundle_path: str | Path, kind: str = "torch", **options: Any) -> Engine:
    """An engine of ``kind`` for the bundle at ``bundle_path`` (options: see the module docstring)."""
    if kind == "torch":
        from lara_g1.lara.bundle import load_bundle
        from lara_g1.runtime.engines.torch_engine import TorchEngine

        device = options.pop("device", "cpu")
        bundle = load_bundle(bundle_path, device=device)
        spec = BundleSpec(path=Path(bundle_path), config=bundle.config, preprocessor=bundle.preprocessor,
                          model_id=bundle.model_id, embodiment=bundle.preprocessor.embodiment)
        return TorchEngine(spec, bundle.policy, device=device, **options)
    if kind == "ort":
        from lara_g1.runtime.engines.ort_engine import OrtEngine

        return OrtEngine(load_bundle_spec(bundle_path), **options)
    if kind == "trt":
        from lara_g1.runtime.engines.trt_engine import TrtEngine

        return TrtEngine(load_bundle_spec(bundle_path), **options)
    raise ValueError(f"unknown engine kind {kind!r}; use one of {', '.join(ENGINE_KINDS)}")
