"""The paper preset's backbone kind (GR00T N1.5's Eagle 2.5 VL backbone) exports and matches torch.

A bundle is built on the GR00T parity fixture's tiny Eagle backbone (SigLIP + Linear + Qwen3 cut to
2 layers, its weights in GR00T's names, a tiny tokenizer; no downloads), and the ONNX export's
parity gate must pass; the exported ort engine then gives torch's chunks at a batch size other
than the traced one, with prompts of different lengths (different left padding)."""
from __future__ import annotations

import numpy as np
import pytest

from lara_g1.core.embodiment import load_embodiment
from lara_g1.core.observation import Observation, make_noise
from lara_g1.lara.bundle import save_bundle
from lara_g1.lara.manifest import Manifest
from lara_g1.lara.model import LaraPolicy
from lara_g1.lara.processing import NormStats
from lara_g1.policy_export.onnx_export import export_onnx
from lara_g1.policy_export.parity import ONNX_FP32_TOLERANCE
from lara_g1.runtime.engines import load_engine
from tests.helpers.eagle import eagle_config, save_tiny_eagle, tiny_tokenizer


@pytest.fixture(scope="module")
def eagle_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("eagle")
    config = eagle_config(save_tiny_eagle(root / "vlm"))
    policy = LaraPolicy(config)
    path = save_bundle(root / "bundle", policy, config, NormStats.from_embodiment(load_embodiment("g1")),
                       tokenizer=tiny_tokenizer())
    export_onnx(path, log=lambda _: None)
    return path


def test_eagle_backbone_export_passes_parity(eagle_bundle):
    m = Manifest.load(eagle_bundle)
    assert m.parity["onnx_fp32"]["backbone_max_abs_error"] <= ONNX_FP32_TOLERANCE
    assert m.parity["onnx_fp32"]["chunk_max_abs_error"] <= ONNX_FP32_TOLERANCE
    ids = m.get("backbone", "onnx", "fp32").inputs[1]
    # GR00T's chat template (26 tokens) + 16 <IMG_CONTEXT> + max_text_len 16
    assert ids.name == "input_ids" and ids.shape == ("batch", 26 + 16 + 16)


def test_eagle_ort_engine_matches_torch_at_another_batch(eagle_bundle):
    rng = np.random.default_rng(1)
    obs = [Observation({"head": rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)},
                       rng.uniform(-0.3, 0.3, 28).astype(np.float32), text) for text in
           ("pick up the red cube", "put the green apple in the bowl and close the top drawer", None)]
    noise = make_noise(3, 8, 32, seed=3)
    ref = load_engine(eagle_bundle, "torch").infer(obs, noise).actions
    got = load_engine(eagle_bundle, "ort").infer(obs, noise).actions
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
