"""GR00T N1.6's backbone (Eagle 3 VL), prompt and image pipeline against the parity fixture
(``tests/data/gr00t_n16_tiny``: tiny random weights in GR00T N1.6's names; ``eagle/`` the features
GR00T's own code computed, ``processor/`` its processor's images and token ids), and the policy on
that backbone exported to ONNX."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lara_g1.core.embodiment import load_embodiment
from lara_g1.core.observation import Observation, make_noise
from lara_g1.lara.model import ConfigError, LaraPolicy, PolicyConfig
from lara_g1.lara.model.backbone import build_backbone
from lara_g1.lara.model.eagle3 import (
    Eagle3Backbone,
    eagle3_config_from_gr00t,
    eagle3_image_tokens,
    eagle3_key_map,
    require_siglip2,
)
from lara_g1.lara.processing import (
    NormStats,
    ObservationError,
    Preprocessor,
    gr00t_n16_image,
    gr00t_n16_resized,
    n16_pixel_shape,
    pixel_shape,
)
from lara_g1.lara.prompt import Gr00tN16Prompt, formalize_language
from tests.helpers.eagle import (
    N16_COMPACT_IDS,
    N16_DIR,
    N16_EAGLE_DIR,
    N16_FIXTURE_VOCAB,
    N16_IMAGE_TOKEN,
    N16_PAD_TOKEN,
    N16_PROCESSOR_DIR,
    N16_SELECT_LAYER,
    fixture_n16_eagle_config,
    fixture_n16_gr00t_config,
    n16_eagle_config,
    tiny_n16_tokenizer,
    write_gr00t_n16_assets,
)

TOLERANCE = 1e-5          # backbone features (the fixture's own stock-transformers route: 3e-6)
IMAGE_TOLERANCE = 1e-6    # pixel values


@pytest.fixture(scope="module")
def expected():
    return load_file(str(N16_EAGLE_DIR / "expected.safetensors"))


@pytest.fixture(scope="module")
def processor_expected():
    return load_file(str(N16_PROCESSOR_DIR / "expected.safetensors"))


@pytest.fixture(scope="module")
def observations() -> dict:
    return json.loads((N16_PROCESSOR_DIR / "observations.json").read_text())


def _hf_config() -> dict:
    return eagle3_config_from_gr00t(fixture_n16_gr00t_config(), fixture_n16_eagle_config())


def _gr00t_state_dict() -> tuple[dict[str, torch.Tensor], list[str]]:
    """The fixture's backbone tensors in the backbone's names (relative to it), and the dropped names."""
    mapped, dropped = {}, []
    for name, value in load_file(str(N16_DIR / "model.safetensors")).items():
        if name.startswith("action_head."):
            continue
        new = eagle3_key_map(name, N16_SELECT_LAYER)
        if new is None:
            dropped.append(name)
        else:
            assert new.startswith("backbone.")
            mapped[new[len("backbone."):]] = value
    return mapped, dropped


@pytest.fixture(scope="module")
def backbone() -> Eagle3Backbone:
    model = Eagle3Backbone(_hf_config())
    model.load_state_dict(_gr00t_state_dict()[0], strict=True)
    return model.eval()


def _feature_error(model: Eagle3Backbone, expected, ids=None) -> float:
    with torch.no_grad():
        feats = model(expected["pixel_values"], expected["input_ids"] if ids is None else ids,
                      expected["attention_mask"])
    real = expected["attention_mask"].bool()      # pad positions depend on the attention kernel
    assert feats.shape == expected["backbone_features"].shape
    return float((feats - expected["backbone_features"])[real].abs().max())


# ---- backbone ---------------------------------------------------------------------------------------------

def test_eagle3_backbone_computes_gr00ts_features(backbone, expected):
    with torch.no_grad():
        siglip = backbone.siglip(expected["pixel_values"])
        tokens = backbone.vision_features(expected["pixel_values"])
    siglip_error = float((siglip.reshape(-1, siglip.shape[-1]) - expected["siglip_out"]).abs().max())
    mlp1_error = float((tokens.reshape(-1, tokens.shape[-1]) - expected["mlp1_out"]).abs().max())
    feature_error = _feature_error(backbone, expected)
    print(f"max abs error: siglip_out {siglip_error:.2e}, mlp1_out {mlp1_error:.2e}, "
          f"backbone_features {feature_error:.2e}")
    assert siglip_error <= TOLERANCE and mlp1_error <= TOLERANCE and feature_error <= TOLERANCE
    assert len(backbone.llm.layers) == 2 and backbone.image_token_id == N16_IMAGE_TOKEN
    assert torch.equal(expected["input_ids"] == N16_IMAGE_TOKEN, expected["image_mask"])


def test_siglip2_is_the_readmes_patch_and_position_embedding():
    """Stock SigLIP2: a Linear over (py, px, c) patch vectors, and the square position grid resized
    as F.interpolate(bilinear, align_corners=False, antialias=True) does, in fp32."""
    require_siglip2()
    emb = Eagle3Backbone(_hf_config()).vision.embeddings
    assert isinstance(emb.patch_embedding, torch.nn.Linear) and emb.patch_embedding.in_features == 14 * 14 * 3
    torch.manual_seed(0)
    for grid, (gh, gw) in ((6, (4, 6)), (6, (8, 10)), (16, (18, 24)), (16, (4, 2))):
        pos = torch.randn(grid, grid, 5)
        ref = F.interpolate(pos.permute(2, 0, 1)[None], size=(gh, gw), mode="bilinear", align_corners=False,
                            antialias=True)[0].permute(1, 2, 0).reshape(gh * gw, 5)
        got = emb.resize_positional_embeddings(pos, torch.tensor([[gh, gw]]), max_length=gh * gw)[0]
        assert float((got - ref).abs().max()) < 1e-5, (grid, gh, gw)


def test_every_image_attends_only_to_itself(backbone, expected):
    pixels = expected["pixel_values"]
    assert not torch.equal(pixels[0], pixels[1])
    with torch.no_grad():
        together = backbone.vision_features(pixels)
        alone = torch.cat([backbone.vision_features(pixels[i:i + 1]) for i in range(2)])
        # GR00T packs the images into one sequence; without the per-image boundaries they would mix
        emb = [backbone.vision.embeddings(*_patches(pixels[i:i + 1])) for i in range(2)]
        packed = backbone.vision.encoder(inputs_embeds=torch.cat(emb, dim=1)).last_hidden_state
        packed = backbone.vision.post_layernorm(packed)[0]
        rows = [backbone(pixels[i:i + 1], expected["input_ids"][i:i + 1], expected["attention_mask"][i:i + 1])
                for i in range(2)]
    assert float((together - alone).abs().max()) < 1e-6
    assert float((packed - expected["siglip_out"]).abs().max()) > 0.05          # cross-image attention: wrong
    for i, row in enumerate(rows):                                              # each sample alone: the same
        real = expected["attention_mask"][i].bool()
        assert float((row[0] - expected["backbone_features"][i])[real].abs().max()) <= TOLERANCE


def _patches(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, h, w = pixels.shape
    gh, gw = h // 14, w // 14
    flat = pixels.reshape(b, c, gh, 14, gw, 14).permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, 14 * 14 * c)
    return flat, torch.tensor([[gh, gw]])


def test_pixel_unshuffle_channel_order_is_eagles(backbone, expected):
    """Channel 4c + 2r + s (F.pixel_unshuffle); LFM2's (r, s, c) order would be wrong."""
    with torch.no_grad():
        x = backbone.siglip(expected["pixel_values"])                            # [2, 24, 32]
        grid = x.transpose(1, 2).reshape(2, 32, 4, 6)
        eagle = F.pixel_unshuffle(grid, 2)                                       # [2, 128, 2, 3]
        lfm = eagle.reshape(2, 32, 2, 2, 2, 3).permute(0, 2, 3, 1, 4, 5).reshape(2, 128, 2, 3)
        errors = [float((backbone.projector(t.flatten(2).transpose(1, 2)).reshape(-1, 48) - expected["mlp1_out"])
                        .abs().max()) for t in (eagle, lfm)]
    assert errors[0] <= TOLERANCE and errors[1] > 0.1


def test_the_image_tokens_go_to_the_image_context_positions_in_order(backbone, expected):
    ids = expected["input_ids"].clone()
    with torch.no_grad():
        swapped = backbone(expected["pixel_values"].flip(0), ids, expected["attention_mask"])
    assert _feature_error(backbone, expected) <= TOLERANCE
    real = expected["attention_mask"].bool()
    assert float((swapped - expected["backbone_features"])[real].abs().max()) > 0.1   # frame b feeds prompt b
    ids[0, 31] = N16_COMPACT_IDS[" red"]                     # one <IMG_CONTEXT> too few in prompt 0
    with pytest.raises(ValueError, match="must hold 6 <IMG_CONTEXT> tokens"):
        backbone(expected["pixel_values"], ids, expected["attention_mask"])
    with pytest.raises(ValueError, match="multiples of 28"):
        backbone(expected["pixel_values"][..., :70], expected["input_ids"], expected["attention_mask"])


def test_the_key_map_takes_every_tensor_but_the_unused_ones():
    state, dropped = _gr00t_state_dict()
    assert sorted(dropped) == sorted([n for n in load_file(str(N16_DIR / "model.safetensors"))
                                      if ".vision_model.vision_model.head." in n]
                                     + ["backbone.model.language_model.lm_head.weight"])
    assert sorted(state) == sorted(Eagle3Backbone(_hf_config()).state_dict())       # nothing missing or extra
    assert eagle3_key_map("backbone.model.mlp1.0.bias") == "backbone.projector.0.bias"
    assert eagle3_key_map("backbone.model.mlp1.3.weight") == "backbone.projector.3.weight"
    assert eagle3_key_map("backbone.model.vision_model.vision_model.encoder.layers.1.mlp.fc1.weight") == \
        "backbone.vision.encoder.layers.1.mlp.fc1.weight"
    name = "backbone.model.language_model.model.layers.16.mlp.up_proj.weight"
    assert eagle3_key_map(name) == "backbone.llm.layers.16.mlp.up_proj.weight"
    assert eagle3_key_map(name, select_layer=16) is None                             # after the feature layer
    assert eagle3_key_map("backbone.model.language_model.model.norm.weight", 16) == "backbone.llm.norm.weight"
    for bad in ("action_head.model.proj_out_2.weight", "backbone.model.mlp1.2.weight",
                "backbone.eagle_model.mlp1.0.weight", "backbone.model.radio.x", "backbone.model.mlp1.1.scale"):
        with pytest.raises(ValueError):
            eagle3_key_map(bad)


def test_eagle3_config_from_gr00t_cuts_the_llm_and_refuses_other_layouts():
    hf = _hf_config()
    assert hf["text_config"]["num_hidden_layers"] == 2 and hf["llm_select_layer"] == 2
    assert hf["image_token_index"] == N16_IMAGE_TOKEN and hf["select_layer"] == -1
    assert "auto_map" not in hf and "_attn_implementation" not in hf and "architectures" not in hf
    json.dumps(hf)                                                              # stored in a bundle's config.json
    assert eagle3_image_tokens(hf, (56, 84)) == 6 and eagle3_image_tokens(hf, (252, 336)) == 108
    with pytest.raises(ConfigError, match="multiples of 28"):
        eagle3_image_tokens(hf, (56, 83))
    gr00t, assets = fixture_n16_gr00t_config(), fixture_n16_eagle_config()
    vision = assets["vision_config"]
    refused = [
        ({**gr00t, "select_layer": 5}, assets, "exceeds the LLM's 4"),
        ({**gr00t, "backbone_embedding_dim": 64}, assets, "backbone_embedding_dim"),
        ({**gr00t, "model_type": "Gr00tN1d5"}, assets, "model_type"),
        ({k: v for k, v in gr00t.items() if k != "select_layer"}, assets, "select_layer"),
        (gr00t, {**assets, "use_pixel_shuffle": False}, "pixel unshuffle"),
        (gr00t, {**assets, "mlp_connector_layers": 1}, "mlp_connector_layers"),
        (gr00t, {**assets, "select_layer": -2}, "vision feature layer"),
        (gr00t, {**assets, "vision_config": {**vision, "use_windows_attn": True}}, "use_windows_attn"),
        (gr00t, {**assets, "vision_config": {**vision, "model_type": "siglip_vision_model"}}, "SigLIP2"),
        (gr00t, {**assets, "use_llm_lora": 1}, "use_llm_lora"),
    ]
    for g, a, match in refused:
        with pytest.raises(ConfigError, match=match):
            eagle3_config_from_gr00t(g, a)


def test_build_backbone_and_config_validation():
    config = n16_eagle_config()
    model = build_backbone(config)
    assert isinstance(model, Eagle3Backbone) and model.select_layer == 2
    with pytest.raises(ConfigError, match="vl_dim"):
        build_backbone(n16_eagle_config(vl_dim=32, cross_attention_dim=32))
    with pytest.raises(ConfigError, match="backbone_select_layer"):
        build_backbone(n16_eagle_config(backbone_select_layer=3))
    with pytest.raises(ConfigError, match="gr00t_n16"):
        PolicyConfig.from_preset("tiny", image_pipeline="gr00t_n16")             # the stand-in takes squares
    with pytest.raises(ConfigError, match="multiples of 28"):
        n16_eagle_config(image_pipeline="resize", image_size=64)


def test_backbone_loads_from_a_backbone_path(tmp_path, expected):
    from safetensors.torch import save_file

    path = write_gr00t_n16_assets(tmp_path)
    tensors = {k: v for k, v in load_file(str(N16_DIR / "model.safetensors")).items() if k.startswith("backbone.")}
    save_file(tensors, str(path / "model.safetensors"))
    config = n16_eagle_config(backbone_hf_config=None, backbone_path=str(path))
    model = build_backbone(config).eval()
    assert config.backbone_hf_config == _hf_config()
    assert _feature_error(model, expected) <= TOLERANCE


# ---- prompt -----------------------------------------------------------------------------------------------

def test_the_tiny_tokenizer_is_the_fixtures_compact_vocabulary(expected):
    assert [real for _, real in N16_FIXTURE_VOCAB] == expected["vocab_map"].tolist()
    assert (N16_IMAGE_TOKEN, N16_PAD_TOKEN) == (28, 25)
    assert fixture_n16_eagle_config()["image_token_index"] == N16_IMAGE_TOKEN


def test_the_prompt_gives_gr00ts_token_ids(expected, observations):
    prompt = Gr00tN16Prompt.with_text_budget(tiny_n16_tokenizer(), 6, 11)
    assert (prompt.template_len, prompt.max_len, prompt.text_budget) == (29, 40, 11)
    assert [formalize_language(t) for t in observations["instructions"]] == observations["language_formalized"]
    assert [prompt.text(t) for t in observations["instructions"]] == observations["prompt_text"]
    ids, mask = prompt.encode(observations["instructions"])
    assert ids.dtype == mask.dtype == np.int64
    np.testing.assert_array_equal(ids, expected["input_ids"].numpy())
    np.testing.assert_array_equal(expected["vocab_map"].numpy()[ids], expected["input_ids_qwen"].numpy())
    np.testing.assert_array_equal(mask, expected["attention_mask"].numpy())
    with pytest.raises(ValueError, match="more than max_len 40"):
        prompt.encode(["pick up the red cube then put it in the bowl wave"])


class _ImagesFirst(Gr00tN16Prompt):
    """N1.5's order (the frame before the instruction): must fail the N1.6 id check."""

    def _row(self, instruction: str) -> list[int]:
        return (self.prefix + self._text("user\n<image 1>") + self.images + self._text(self.language(instruction))
                + self.suffix)


def test_a_prompt_with_the_images_first_fails_the_id_check(expected, observations):
    ids, mask = _ImagesFirst.with_text_budget(tiny_n16_tokenizer(), 6, 11).encode(observations["instructions"])
    np.testing.assert_array_equal(mask, expected["attention_mask"].numpy())     # same lengths ...
    assert not np.array_equal(ids, expected["input_ids"].numpy())               # ... other ids
    assert not np.array_equal(ids == N16_IMAGE_TOKEN, expected["image_mask"].numpy())


def test_the_prompt_without_formalising_keeps_the_text():
    prompt = Gr00tN16Prompt(tiny_n16_tokenizer(), 6, 40, formalize=False)
    assert prompt.language("Wave.") == "Wave." and "Wave.<image 1><img>" in prompt.text("Wave.")
    two = Gr00tN16Prompt(tiny_n16_tokenizer(), [6, 6], 60)
    assert two.image_tokens == 12 and "</img><image 2><img>" in two.text("wave")
    assert two.template_len == 29 + 5 + 2 + 6


# ---- images -----------------------------------------------------------------------------------------------

def test_the_image_pipeline_is_gr00ts(processor_expected):
    raw = processor_expected["raw.video.ego_view"].numpy()
    assert n16_pixel_shape([40, 60], 56, 0.95) == (56, 84)
    assert n16_pixel_shape([480, 640], 256, 0.95) == (252, 336)      # the release's sizes: 108 image tokens
    errors = []
    for b in range(raw.shape[0]):
        transformed, resized = gr00t_n16_resized(raw[b, 0], 56, 0.95)
        np.testing.assert_array_equal(transformed.transpose(2, 0, 1), processor_expected["image_transformed"][b, 0])
        np.testing.assert_array_equal(resized, processor_expected["image_resized"][b, 0])
        pixels = gr00t_n16_image(raw[b, 0], 56, 0.95)
        errors.append(float(np.abs(pixels - processor_expected["pixel_values"][b, 0].numpy()).max()))
        # the release's chain: no letterbox (15ce93d's LetterBoxPad makes square images)
        assert transformed.shape[:2] != processor_expected["image_transformed_letterbox_15ce93d"].shape[-2:]
    print(f"max abs error: pixel_values {max(errors):.2e}")
    assert max(errors) <= IMAGE_TOLERANCE


def _observations(processor_expected, texts, state_dim: int = 28) -> list[Observation]:
    raw = processor_expected["raw.video.ego_view"].numpy()
    rng = np.random.default_rng(0)
    return [Observation({"head": raw[i % raw.shape[0], 0]}, rng.uniform(-0.3, 0.3, state_dim).astype(np.float32), t)
            for i, t in enumerate(texts)]


def test_a_preprocessor_with_the_eagle3_backbone_makes_gr00ts_inputs(processor_expected, expected, observations):
    config = n16_eagle_config()
    pre = Preprocessor(config, NormStats.from_embodiment(load_embodiment("g1")), tiny_n16_tokenizer())
    assert pixel_shape(config) == (56, 84)
    out = pre(_observations(processor_expected, observations["instructions"]))
    assert out["pixel_values"].shape == (2, 3, 56, 84) and out["pixel_values"].dtype == np.float32
    assert out["input_ids"].shape == out["attention_mask"].shape == (2, 40)
    assert float(np.abs(out["pixel_values"] - expected["pixel_values"].numpy()).max()) <= IMAGE_TOLERANCE
    np.testing.assert_array_equal(out["input_ids"], expected["input_ids"].numpy())
    np.testing.assert_array_equal(out["attention_mask"], expected["attention_mask"].numpy())
    frame = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(ObservationError, match="camera_size 40 x 60"):
        pre([Observation({"head": frame}, np.zeros(28, np.float32), "wave")])


# ---- policy and export ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fixture_policy():
    config = n16_eagle_config()
    policy = LaraPolicy(config)
    policy.backbone.load_state_dict(_gr00t_state_dict()[0], strict=True)
    pre = Preprocessor(config, NormStats.from_embodiment(load_embodiment("g1")), tiny_n16_tokenizer())
    return policy.eval(), pre


def test_the_policy_on_the_eagle3_backbone_exports_and_matches_torch(fixture_policy, processor_expected, tmp_path):
    import onnxruntime as ort

    from lara_g1.policy_export.graphs import BACKBONE_INPUTS, BACKBONE_OUTPUTS, BackboneGraph
    from lara_g1.policy_export.onnx_export import DEFAULT_OPSET, export_action_head, export_module

    policy, pre = fixture_policy
    cfg = policy.config
    trace = pre(_observations(processor_expected, ["wave", None]))
    t = {k: torch.from_numpy(v) for k, v in trace.items()}
    with torch.no_grad():
        feats = policy.backbone_features(t["pixel_values"], t["input_ids"], t["attention_mask"])
    assert feats.shape == (2, 40, 48 + 2)                     # the pad and image masks ride along
    batch = {0: "batch"}
    export_module(BackboneGraph(policy).eval(), (t["pixel_values"], t["input_ids"], t["attention_mask"]),
                  tmp_path / "backbone.onnx", BACKBONE_INPUTS, BACKBONE_OUTPUTS,
                  dict.fromkeys(BACKBONE_INPUTS + BACKBONE_OUTPUTS, batch), DEFAULT_OPSET)
    noise = make_noise(2, cfg.horizon, cfg.max_action_dim, seed=0)
    export_action_head(policy, pre.embodiment.embodiment_id, (feats, t["state"], torch.from_numpy(noise)),
                       tmp_path / "head.onnx")

    # another batch size, other prompt lengths (other left padding)
    inputs = pre(_observations(processor_expected, ["pick up the red cube", "Wave!", "put it in the bowl"]))
    noise = make_noise(3, cfg.horizon, cfg.max_action_dim, seed=1)
    backbone = ort.InferenceSession(str(tmp_path / "backbone.onnx"), providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(str(tmp_path / "head.onnx"), providers=["CPUExecutionProvider"])
    got_feats = backbone.run(None, {k: inputs[k] for k in BACKBONE_INPUTS})[0]
    got = head.run(None, {"vl_features": got_feats, "state": inputs["state"], "noise": noise})[0]
    t = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        ref_feats = policy.backbone_features(t["pixel_values"], t["input_ids"], t["attention_mask"])
        ref = policy.sample(ref_feats, t["state"], t["embodiment_id"], torch.from_numpy(noise))
    real = inputs["attention_mask"].astype(bool)
    feat_error = float(np.abs(got_feats - ref_feats.numpy())[real].max())
    chunk_error = float(np.abs(got - ref.numpy()).max())
    print(f"onnx vs torch: backbone features {feat_error:.2e}, chunk {chunk_error:.2e}")
    assert feat_error <= 1e-4 and chunk_error <= 1e-4
    np.testing.assert_array_equal(got_feats[..., -2:], ref_feats.numpy()[..., -2:])   # the masks
