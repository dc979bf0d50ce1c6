"""Backbones: GR00T N1.5's Eagle 2.5 VL backbone against the parity fixture
(``tests/data/gr00t_n15_tiny/eagle``: tiny random weights in GR00T's names, the features GR00T's
own code computed), GR00T's prompt, and the stand-in backbone of the tiny preset."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from lara_g1.core.observation import Observation
from lara_g1.lara.model import ConfigError, LaraPolicy, PolicyConfig
from lara_g1.lara.model.backbone import EagleBackbone, StandInBackbone
from lara_g1.lara.model.eagle import eagle_config_from_gr00t, eagle_key_map, require_transformers
from lara_g1.lara.prompt import Gr00tPrompt
from tests.helpers.eagle import (
    COMPACT_IDS,
    FIXTURE_DIR,
    FIXTURE_VOCAB,
    IMAGE_TOKEN,
    PAD_TOKEN,
    eagle_config,
    fixture_eagle_config,
    fixture_gr00t_config,
    save_tiny_eagle,
    tiny_tokenizer,
    write_gr00t_assets,
)

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def expected():
    return load_file(str(FIXTURE_DIR / "expected.safetensors"))


@pytest.fixture(scope="module")
def eagle_dir(tmp_path_factory):
    return save_tiny_eagle(tmp_path_factory.mktemp("eagle"))


def _hf_config() -> dict:
    return eagle_config_from_gr00t(fixture_gr00t_config(), fixture_eagle_config())


def _gr00t_state_dict() -> tuple[dict[str, torch.Tensor], list[str]]:
    """The fixture checkpoint in the backbone's names (relative to the backbone), and the dropped names."""
    mapped, dropped = {}, []
    for name, value in load_file(str(FIXTURE_DIR / "model.safetensors")).items():
        new = eagle_key_map(name)
        if new is None:
            dropped.append(name)
        else:
            assert new.startswith("backbone.")
            mapped[new[len("backbone."):]] = value
    return mapped, dropped


def _fixture_backbone() -> EagleBackbone:
    backbone = EagleBackbone(_hf_config())
    state, _ = _gr00t_state_dict()
    backbone.load_state_dict(state, strict=True)
    return backbone.eval()


def _feature_error(backbone: EagleBackbone, expected) -> float:
    with torch.no_grad():
        feats = backbone(expected["pixel_values"], expected["input_ids"], expected["attention_mask"])
    real = expected["attention_mask"].bool()      # pad positions depend on the attention kernel
    assert feats.shape == expected["backbone_features"].shape
    return float((feats - expected["backbone_features"])[real].abs().max())


def test_eagle_backbone_computes_gr00ts_features(expected):
    backbone = _fixture_backbone()
    with torch.no_grad():
        vit = backbone.vision_features(expected["pixel_values"])
    vit_error = float((vit - expected["vit_embeds"]).abs().max())
    feature_error = _feature_error(backbone, expected)
    print(f"max abs error: vit_embeds {vit_error:.2e}, backbone_features {feature_error:.2e}")
    assert vit_error <= TOLERANCE
    assert feature_error <= TOLERANCE
    assert len(backbone.llm.layers) == 2 and backbone.image_tokens == 16


def test_the_key_map_takes_every_tensor_but_the_unused_ones():
    state, dropped = _gr00t_state_dict()
    assert dropped and all(".vision_model.vision_model.head." in n for n in dropped)   # SigLIP's pooling head
    backbone = EagleBackbone(_hf_config())
    assert sorted(state) == sorted(backbone.state_dict())                             # nothing missing or extra
    assert eagle_key_map("backbone.eagle_model.language_model.lm_head.weight") is None  # tied to embed_tokens
    assert eagle_key_map("backbone.eagle_model.vision_model.encoder.layers.0.mlp.fc1.weight") == \
        "backbone.vision.encoder.layers.0.mlp.fc1.weight"                              # flat SigLIP names too
    name = "backbone.eagle_model.language_model.model.layers.2.mlp.up_proj.weight"
    assert eagle_key_map(name) == "backbone.llm.layers.2.mlp.up_proj.weight"
    assert eagle_key_map(name, select_layer=2) is None                                 # after the feature layer
    for bad in ("action_head.model.proj_out_2.weight", "backbone.eagle_linear.weight",
                "backbone.eagle_model.mlp1.1.weight"):
        with pytest.raises(ValueError):
            eagle_key_map(bad)


def test_dropping_the_final_norm_breaks_parity(expected):
    backbone = _fixture_backbone()
    assert _feature_error(backbone, expected) <= TOLERANCE
    backbone.llm.norm = nn.Identity()          # features = layer 2's raw output, as the old backbone had
    assert _feature_error(backbone, expected) > 0.1


def test_the_image_tokens_go_to_the_image_context_positions_in_order(expected):
    backbone = _fixture_backbone()
    ids = expected["input_ids"].clone()
    assert _feature_error(backbone, expected) <= TOLERANCE
    with torch.no_grad():
        swapped = backbone(expected["pixel_values"].flip(0), ids, expected["attention_mask"])
        straight = backbone(expected["pixel_values"], ids, expected["attention_mask"])
    assert not torch.allclose(swapped, straight)             # frame b feeds prompt b
    ids[0, 30] = COMPACT_IDS[" red"]                         # one <IMG_CONTEXT> too few in prompt 0
    with pytest.raises(ValueError, match="must hold 16 <IMG_CONTEXT> tokens"):
        backbone(expected["pixel_values"], ids, expected["attention_mask"])


def test_eagle_config_from_gr00t_cuts_the_llm_and_refuses_other_layouts():
    hf = _hf_config()
    assert hf["text_config"]["num_hidden_layers"] == 2 and hf["llm_select_layer"] == 2
    assert hf["image_token_index"] == IMAGE_TOKEN and hf["select_layer"] == -1   # Eagle's: the vision layer
    assert "auto_map" not in hf and "_attn_implementation" not in hf
    json.dumps(hf)                                                              # stored in a bundle's config.json
    gr00t, assets = fixture_gr00t_config(), fixture_eagle_config()
    refused = [
        ({**gr00t, "backbone_cfg": {**gr00t["backbone_cfg"], "select_layer": 4}}, assets, "exceeds the LLM's 3"),
        ({**gr00t, "backbone_cfg": {**gr00t["backbone_cfg"], "project_to_dim": 1536}}, assets, "project_to_dim"),
        (gr00t, {**assets, "use_pixel_shuffle": True}, "pixel shuffle"),
        (gr00t, {**assets, "mlp_connector_layers": 2}, "mlp_connector_layers"),
        (gr00t, {**assets, "select_layer": -2}, "vision feature layer"),
        ({"backbone_cfg": {}}, assets, "select_layer"),
    ]
    for g, a, message in refused:
        with pytest.raises(ConfigError, match=message):
            eagle_config_from_gr00t(g, a)


def test_transformers_version_check_names_the_requirement(monkeypatch):
    with pytest.raises(ConfigError, match=r"needs transformers >= 4\.51\.0 .*installed: 4\.50\.3"):
        require_transformers("4.50.3")
    require_transformers("5.24.0.dev0")
    import transformers

    monkeypatch.setattr(transformers, "__version__", "4.49.0")
    with pytest.raises(ConfigError, match=r"transformers >= 4\.51\.0.*installed: 4\.49\.0"):
        EagleBackbone.from_config(eagle_config())


# -- GR00T's prompt --------------------------------------------------------------------------


def test_prompt_builds_gr00ts_ids_and_layout(expected):
    prompts = json.loads((FIXTURE_DIR / "prompts.json").read_text())
    prompt = Gr00tPrompt(tiny_tokenizer(), image_tokens=16, max_len=54)
    ids, mask = prompt.encode(prompts["instructions"])
    vocab_map = expected["vocab_map"].numpy()
    assert vocab_map.tolist() == [real for _, real in FIXTURE_VOCAB]
    assert (prompt.pad_id, prompt.im_start_id, prompt.im_end_id, prompt.image_token_id, prompt.img_start_id,
            prompt.img_end_id) == (29, 30, 31, 32, 33, 34)
    qwen = vocab_map[ids]                                     # compact -> real Qwen3 ids
    reference = expected["input_ids_qwen"].numpy()
    for special in (151643, 151644, 151645, 151669, 151670, 151671):     # the layout of the special tokens
        assert ((qwen == special) == (reference == special)).all(), special
    assert ((reference == 151669).sum(1) == 16).all()
    assert mask.tolist() == expected["attention_mask"].tolist()          # left pads: [7, 0]
    np.testing.assert_array_equal(qwen, reference)            # the word-level split matches Qwen3's here
    np.testing.assert_array_equal(ids, expected["input_ids"].numpy())
    assert prompt.template_len == 26 + 16 and prompt.text_budget == 12
    for instruction, text in zip(prompts["instructions"], prompts["prompt_text"]):
        assert prompt.text(instruction) == text.replace("<image-1>", "<image 1><img>" + "<IMG_CONTEXT>" * 16 + "</img>")
        whole = tiny_tokenizer()(prompt.text(instruction), add_special_tokens=False)["input_ids"]
        row = ids[prompts["instructions"].index(instruction)]
        assert row[row != PAD_TOKEN].tolist() == whole            # piecewise = the whole text at once


def test_prompt_refuses_too_long_instructions_and_foreign_tokenizers():
    prompt = Gr00tPrompt.with_text_budget(tiny_tokenizer(), image_tokens=16, max_text_len=4)
    assert prompt.max_len == 42 + 4
    ids, mask = prompt.encode(["pick up the red"])
    assert mask.sum() == prompt.max_len and ids.shape == (1, 46)
    with pytest.raises(ValueError, match=r"is 5 tokens; with the 42-token template \(16 image tokens\) the prompt is "
                                         r"47 tokens, more than max_len 46"):
        prompt.encode(["pick up the red cube"])
    with pytest.raises(ValueError, match="leaves no room"):
        Gr00tPrompt(tiny_tokenizer(), image_tokens=16, max_len=42)
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    plain = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")),
                                    unk_token="<unk>")
    with pytest.raises(ValueError, match="has no <|im_start|> token"):
        Gr00tPrompt(plain, image_tokens=16, max_len=64)


def test_gr00t_assets_dir_holds_the_config_and_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    assets = write_gr00t_assets(tmp_path)
    assert json.loads((assets / "config.json").read_text()) == fixture_eagle_config()
    tok = AutoTokenizer.from_pretrained(str(assets), trust_remote_code=False)   # config.json has auto_map
    assert tok.convert_tokens_to_ids(["<IMG_CONTEXT>", "<img>", "</img>", "<|endoftext|>"]) == [32, 33, 34, 29]
    assert tok("pick up the red cube", add_special_tokens=False)["input_ids"] == [27, 12, 7, 16, 25]


# -- the Eagle backbone in a policy and a bundle ----------------------------------------------


def test_eagle_builds_from_a_directory_and_rebuilds_offline(eagle_dir, expected):
    config = eagle_config(eagle_dir)
    loaded = EagleBackbone.from_config(config).eval()
    assert config.backbone_hf_config == _hf_config()        # stored for the offline rebuild
    assert _feature_error(loaded, expected) <= TOLERANCE     # GR00T names read from the directory
    rebuilt = EagleBackbone.from_config(config.replace(backbone_path=None)).eval()   # config only
    rebuilt.load_state_dict(loaded.state_dict())
    with torch.no_grad():
        args = (expected["pixel_values"], expected["input_ids"], expected["attention_mask"])
        assert torch.equal(rebuilt(*args), loaded(*args))


def test_eagle_config_mismatches_are_refused(eagle_dir, tmp_path):
    wide = eagle_config(eagle_dir, vl_dim=64, cross_attention_dim=64)
    with pytest.raises(ConfigError, match="LLM is 32 wide but vl_dim is 64"):
        EagleBackbone.from_config(wide)
    assert wide.backbone_hf_config is None  # a refused checkpoint leaves the config untouched
    with pytest.raises(ConfigError, match="vision tower takes 56 px images but image_size is 224"):
        EagleBackbone.from_config(eagle_config(eagle_dir, image_size=224))
    with pytest.raises(ConfigError, match="select layer 5 exceeds the LLM's 3 layers"):
        EagleBackbone.from_config(eagle_config(eagle_dir, backbone_select_layer=5))
    with pytest.raises(ConfigError, match="has 2 LLM layers .* but backbone_select_layer is 1"):
        EagleBackbone.from_config(eagle_config(backbone_select_layer=1))
    with pytest.raises(ConfigError, match="needs backbone_path"):
        EagleBackbone.from_config(eagle_config(eagle_dir).replace(backbone_path=None))
    with pytest.raises(ConfigError, match="cannot load the Eagle config"):
        EagleBackbone.from_config(eagle_config(eagle_dir / "nowhere"))
    (tmp_path / "config.json").write_text((eagle_dir / "config.json").read_text())
    with pytest.raises(ConfigError, match="no \\*.safetensors weights"):
        EagleBackbone.from_config(eagle_config(tmp_path))


def test_eagle_policy_is_frozen_and_produces_vl_tokens(eagle_dir, expected):
    policy = LaraPolicy(eagle_config(eagle_dir)).eval()
    assert not any(p.requires_grad for p in policy.backbone.parameters())
    with torch.no_grad():
        vl = policy.backbone_features(expected["pixel_values"], expected["input_ids"], expected["attention_mask"])
        actions = policy.sample(vl, torch.zeros(2, 64), torch.zeros(2, dtype=torch.int64), torch.randn(2, 8, 32))
    assert vl.shape[:2] == (2, 54) and actions.shape == (2, 8, 32)


def test_eagle_bundle_round_trips_with_its_tokenizer(eagle_dir, expected, tmp_path):
    from lara_g1.core.embodiment import load_embodiment
    from lara_g1.lara.bundle import load_bundle, save_bundle
    from lara_g1.lara.processing import NormStats

    config = eagle_config(eagle_dir)
    policy = LaraPolicy(config).eval()
    save_bundle(tmp_path / "b", policy, config, NormStats.from_embodiment(load_embodiment("g1")),
                tokenizer=tiny_tokenizer())
    bundle = load_bundle(tmp_path / "b")
    prompt = bundle.preprocessor.tokenizer
    assert isinstance(prompt, Gr00tPrompt) and prompt.max_len == 42 + 16   # template + image + max_text_len
    ids, mask = prompt.encode(["pick up the red cube"])
    real = expected["attention_mask"][0].bool()
    assert ids[0, -int(real.sum()):].tolist() == expected["input_ids"][0][real].tolist()
    assert mask[0].tolist() == [0] * 11 + [1] * 47
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    noise = np.random.default_rng(1).standard_normal((8, 32), dtype=np.float32)
    state = load_embodiment("g1").default_pose
    chunk = bundle.sample_chunk(image, state, "pick up the red cube", noise=noise)
    assert chunk.shape == (8, 28) and chunk.dtype == np.float32
    inputs = bundle.preprocessor([Observation({"head": image}, state, "pick up the red cube")])
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
