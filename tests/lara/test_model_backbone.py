"""Backbones: the Eagle-2-class transformers VLM (tiny random config saved to and loaded from disk,
no downloads) and the stand-in backbone of the tiny preset."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lara_g1.core.observation import Observation
from lara_g1.lara.model import ConfigError, LaraPolicy, PolicyConfig
from lara_g1.lara.model.backbone import EagleBackbone, StandInBackbone
from tests.helpers.eagle import IMAGE_TOKEN, eagle_config, save_tiny_eagle


@pytest.fixture(scope="module")
def eagle_dir(tmp_path_factory):
    return save_tiny_eagle(tmp_path_factory.mktemp("eagle"))


def _vlm_inputs(batch: int = 2):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 12, (batch, 49 + 8), generator=g)
    ids[:, :49] = IMAGE_TOKEN
    mask = torch.ones_like(ids)
    mask[1, 53:] = 0
    return torch.randn(batch, 3, 224, 224, generator=g), ids, mask


def test_eagle_features_are_the_chosen_llm_layer(eagle_dir):
    from transformers import AutoModel

    config = eagle_config(eagle_dir)
    backbone = EagleBackbone.from_config(config)
    assert len(backbone.model.language_model.layers) == 2          # layers after the feature layer dropped
    assert config.backbone_hf_config["text_config"]["num_hidden_layers"] == 2  # stored for offline rebuild
    pixels, ids, mask = _vlm_inputs()
    full = AutoModel.from_pretrained(str(eagle_dir)).eval()
    with torch.no_grad():
        feats = backbone(pixels, ids, mask)
        reference = full(input_ids=ids, pixel_values=pixels, attention_mask=mask, output_hidden_states=True)
    assert feats.shape == (2, 57, 64)
    torch.testing.assert_close(feats, reference.hidden_states[2])     # output of decoder layer 2, pre-norm
    assert not torch.allclose(feats, reference.hidden_states[1])


def test_eagle_rebuilds_offline_from_the_stored_config(eagle_dir):
    config = eagle_config(eagle_dir)
    loaded = EagleBackbone.from_config(config)
    rebuilt = EagleBackbone.from_config(config.replace(backbone_path=None))  # no path: config only
    rebuilt.load_state_dict(loaded.state_dict())
    pixels, ids, mask = _vlm_inputs()
    with torch.no_grad():
        assert torch.equal(rebuilt(pixels, ids, mask), loaded(pixels, ids, mask))


def test_eagle_policy_is_frozen_and_produces_vl_tokens(eagle_dir):
    policy = LaraPolicy(eagle_config(eagle_dir)).eval()
    assert not any(p.requires_grad for p in policy.backbone.parameters())
    pixels, ids, mask = _vlm_inputs()
    with torch.no_grad():
        vl = policy.backbone_features(pixels, ids, mask)
        actions = policy.sample(vl, torch.zeros(2, 64), torch.zeros(2, dtype=torch.int64), torch.randn(2, 8, 32))
    assert vl.shape == (2, 57, 64) and actions.shape == (2, 8, 32)


def test_eagle_config_mismatches_are_refused(eagle_dir):
    wide = eagle_config(eagle_dir).replace(vl_dim=128, cross_attention_dim=128)
    with pytest.raises(ConfigError, match="LLM is 64 wide but vl_dim is 128"):
        EagleBackbone.from_config(wide)
    assert wide.backbone_hf_config is None  # a refused checkpoint leaves the config untouched
    with pytest.raises(ConfigError, match="vision tower takes 224 px images but image_size is 256"):
        EagleBackbone.from_config(eagle_config(eagle_dir, image_size=256))
    with pytest.raises(ConfigError, match="backbone_select_layer 5 exceeds the LLM's 3 layers"):
        EagleBackbone.from_config(eagle_config(eagle_dir, backbone_select_layer=5))
    with pytest.raises(ConfigError, match="needs backbone_path"):
        EagleBackbone.from_config(eagle_config(eagle_dir).replace(backbone_path=None))
    with pytest.raises(ConfigError, match="cannot load a transformers config"):
        EagleBackbone.from_config(eagle_config(eagle_dir / "nowhere"))


def test_eagle_bundle_round_trips_with_its_tokenizer(eagle_dir, tmp_path):
    from transformers import AutoTokenizer

    from lara_g1.core.embodiment import load_embodiment
    from lara_g1.lara.bundle import load_bundle, save_bundle
    from lara_g1.lara.processing import NormStats

    config = eagle_config(eagle_dir)
    policy = LaraPolicy(config).eval()
    save_bundle(tmp_path / "b", policy, config, NormStats.from_embodiment(load_embodiment("g1")),
                tokenizer=AutoTokenizer.from_pretrained(str(eagle_dir)))
    bundle = load_bundle(tmp_path / "b")
    inputs = bundle.preprocessor.tokenizer.encode(["pick up the cup"])
    assert inputs[0][0, :49].tolist() == [IMAGE_TOKEN] * 49 and inputs[0][0, 49:53].tolist() == [2, 3, 4, 6]
    assert inputs[1][0].tolist() == [1] * 53 + [0] * 4
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    noise = np.random.default_rng(1).standard_normal((8, 32), dtype=np.float32)
    state = load_embodiment("g1").default_pose
    chunk = bundle.sample_chunk(image, state, "pick up the cup", noise=noise)
    assert chunk.shape == (8, 28) and chunk.dtype == np.float32
    inputs = bundle.preprocessor([Observation({"head": image}, state, "pick up the cup")])
    with torch.no_grad():
        original = policy(*(torch.from_numpy(inputs[k]) for k in ("pixel_values", "input_ids", "attention_mask",
                                                                   "state", "embodiment_id")),
                          torch.from_numpy(noise[None]))
    np.testing.assert_array_equal(chunk, bundle.preprocessor.postprocess(original.numpy())[0])


def test_standin_backbone_ignores_padding_and_reads_both_modalities():
    config = PolicyConfig.from_preset("tiny")
    torch.manual_seed(0)
    backbone = StandInBackbone(config).eval()
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(1, 3, 224, 224, generator=g)
    ids = torch.zeros(1, 16, dtype=torch.int64)
    ids[0, :5] = torch.tensor([1, 70, 71, 72, 2])
    mask = (ids != 0).long()
    with torch.no_grad():
        out = backbone(pixels, ids, mask)
        assert out.shape == (1, 49 + 16, config.vl_dim)
        garbage = ids.clone()
        garbage[0, 5:] = 100                                  # tokens behind a zero mask
        torch.testing.assert_close(backbone(pixels, garbage, mask)[:, :54], out[:, :54])
        other_text = ids.clone()
        other_text[0, 2] = 90
        assert not torch.allclose(backbone(pixels, other_text, mask)[:, :49], out[:, :49])
        assert not torch.allclose(backbone(pixels + 1, ids, mask)[:, 49:], out[:, 49:])
