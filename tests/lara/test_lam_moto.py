"""The LARA release's LAM (Moto's LatentMotionTokenizer) port: parity with the release's own outputs.

Fixture: tests/data/lara_lam_tiny (its README says how it was made): a tiny tokenizer with seeded
random weights in the release's two formats, its ViT-MAE, and the release's outputs in eval mode.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lara_g1.lara.lam import LamLoadError, load_lam, save_lam
from lara_g1.lara.lam.moto import (
    GR00T_PREFIX,
    MotoLamConfig,
    MotoLatentActionModel,
    MotoVectorQuantizer,
    config_from_release,
    load_moto_tokenizer,
    moto_from_gr00t_tensors,
    release_key_map,
)
from lara_g1.lara.train.objective import JointObjective

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "lara_lam_tiny"
TOKENIZER_DIR = FIXTURE / "latent_motion_tokenizer"
VIT_MAE_DIR = FIXTURE / "vit_mae"

ATOL = 1e-5  # fp32 max abs error for the float tensors
RTOL_LOSS = 1e-6  # relative error of the scalar losses


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "expected.safetensors"))


@pytest.fixture(scope="module")
def tokenizer_config() -> dict:
    return json.loads((TOKENIZER_DIR / "config.json").read_text())


@pytest.fixture(scope="module")
def release_tensors() -> dict[str, torch.Tensor]:
    return load_file(str(TOKENIZER_DIR / "model.safetensors"))


@pytest.fixture(scope="module")
def gr00t_tensors() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "model.safetensors"))


@pytest.fixture(scope="module")
def model() -> MotoLatentActionModel:
    return load_moto_tokenizer(TOKENIZER_DIR, VIT_MAE_DIR)


@pytest.fixture(scope="module")
def gr00t_model(gr00t_tensors, tokenizer_config) -> MotoLatentActionModel:
    # a GR00T checkpoint holds the rest of the head and the backbone next to the tokenizer
    tensors = {**gr00t_tensors, "backbone.some.weight": torch.zeros(3), "action_head.other.bias": torch.zeros(2)}
    return moto_from_gr00t_tensors(tensors, tokenizer_config, VIT_MAE_DIR)


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs() / b.abs()).item()


def _run(lam: MotoLatentActionModel, e: dict[str, torch.Tensor], shuffled: bool = False):
    noise = (e["mae_noise_cond"], e["mae_noise_target"]) if shuffled else (None, None)
    with torch.no_grad():
        return lam(e["cond_pixel_values"], e["target_pixel_values"], *noise)


def _check_canonical(lam: MotoLatentActionModel, e: dict[str, torch.Tensor]) -> None:
    out = _run(lam, e)
    with torch.no_grad():
        decoded = lam.decode_indices(e["cond_pixel_values"], e["indices"])
    floats = {
        "mae_cond_hidden": out.features_t, "mae_target_hidden": out.features_tk,
        "m_former_latent_tokens": out.motion_tokens, "embed": out.z, "quant": out.quantized,
        "latent_motion_tokens_up": out.motion_tokens_up, "recons_pixel_values": out.reconstruction,
        "decode_image_recons": decoded,
        "align_target_motion_embed": lam.alignment_target(out.z, future_frames=1),
    }
    errors = {name: _max_err(value, e[name]) for name, value in floats.items()}
    assert all(err <= ATOL for err in errors.values()), errors
    assert out.indices.dtype == torch.long and torch.equal(out.indices, e["indices"])
    losses = {"commit_loss": out.commit_loss, "recons_loss": out.reconstruction_loss, "loss_no_lpips": out.loss}
    rel = {name: _rel_err(value, e[name]) for name, value in losses.items()}
    assert all(err <= RTOL_LOSS for err in rel.values()), rel
    assert float(out.indices.unique().numel()) == e["active_code_num"].item()


def test_parity_with_release_tokenizer_dir(model, expected):
    """Every output and intermediate of the release in eval mode, patches in raster order. This also
    guards the legacy details: type-0 token type on every M-Former token, beta on the codebook term."""
    _check_canonical(model, expected)


def test_parity_with_gr00t_checkpoint_tensors(gr00t_model, model, expected):
    _check_canonical(gr00t_model, expected)
    for (name, a), b in zip(model.state_dict().items(), gr00t_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_shuffled_run_reproduces_release_draw(model, expected):
    out = _run(model, expected, shuffled=True)
    floats = {"m_former_latent_tokens": out.motion_tokens, "embed": out.z, "quant": out.quantized,
              "recons_pixel_values": out.reconstruction,
              "align_target_motion_embed": model.alignment_target(out.z)}
    errors = {name: _max_err(value, expected[f"shuffled_{name}"]) for name, value in floats.items()}
    assert all(err <= ATOL for err in errors.values()), errors
    assert torch.equal(out.indices, expected["shuffled_indices"])
    losses = {"commit_loss": out.commit_loss, "recons_loss": out.reconstruction_loss, "loss_no_lpips": out.loss}
    rel = {name: _rel_err(value, expected[f"shuffled_{name}"]) for name, value in losses.items()}
    assert all(err <= RTOL_LOSS for err in rel.values()), rel
    # the shuffle matters: the canonical run differs from it
    assert _max_err(_run(model, expected).z, out.z) > 1e-3


def test_canonical_run_ignores_the_global_rng(model, expected):
    torch.manual_seed(1)
    a = _run(model, expected).z
    torch.manual_seed(2)
    assert torch.equal(a, _run(model, expected).z)


def test_preprocess_is_bit_exact(model, expected):
    frames = expected["frames_uint8"]  # [B, F, 3, H, W]
    hwc = frames.reshape(-1, *frames.shape[2:]).permute(0, 2, 3, 1).contiguous()
    images = model.preprocess(hwc)
    assert images.dtype == torch.float32
    assert torch.equal(images, expected["images"].reshape(-1, *frames.shape[2:]))
    assert torch.equal(model.preprocess(hwc.numpy()), images)
    # the tokenizer's inputs are these images, paired as LARA's head pairs them
    b, f = frames.shape[:2]
    imgs = images.view(b, f, *images.shape[1:])
    assert torch.equal(imgs[:, :1].repeat(1, f - 1, 1, 1, 1).flatten(0, 1), expected["cond_pixel_values"])
    assert torch.equal(imgs[:, 1:].flatten(0, 1), expected["target_pixel_values"])
    with pytest.raises(ValueError, match="uint8 frames"):
        model.preprocess(images)


def test_sizes_and_parameter_counts(model):
    c = model.config
    assert (c.image_size, c.encoder_width, c.mformer_width, c.decoder_width) == (32, 32, 48, 40)
    assert (c.num_queries, c.num_patches, c.decoder_num_patches, c.latent_size) == (8, 17, 16, 256)
    assert c.encoder == str(VIT_MAE_DIR) and c.encoder_config["patch_size"] == 8
    assert sum(p.numel() for p in model.trainable_parameters()) == 107_568  # the release's 90 tensors
    assert sum(p.numel() for p in model.encoder.parameters()) == 23_904
    assert model.encoder.config.mask_ratio == 0.0
    # the key map covers every non-encoder tensor but the usage counts
    mapped = set(release_key_map(c).values())
    ours = {k for k in model.state_dict() if not k.startswith("encoder.")}
    assert ours - mapped == {"quantizer.counts"} and mapped <= ours
    assert len(release_key_map(c)) == 90
    # the release's defaults are LARA's sizes
    real = MotoLamConfig()
    assert (real.image_size, real.num_patches, real.decoder_num_patches, real.latent_size) == (224, 197, 196, 256)


def test_save_load_round_trip(model, expected, tmp_path):
    lam = copy.deepcopy(model)
    lam.train()
    lam(expected["cond_pixel_values"], expected["target_pixel_values"])  # counts some codes
    lam.eval()
    path = save_lam(lam, tmp_path / "lam")
    meta = json.loads((path / "config.json").read_text())
    assert meta["class"] == "lara_g1.lara.lam.moto.MotoLatentActionModel"
    loaded = load_lam(path)
    assert isinstance(loaded, MotoLatentActionModel) and loaded.config == lam.config
    assert lam.state_dict().keys() == loaded.state_dict().keys()
    for (name, a), b in zip(lam.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert int(loaded.quantizer.counts.sum()) == 2 * 8
    a, b = _run(lam, expected), _run(loaded.eval(), expected)
    for name in ("z", "quantized", "reconstruction", "loss"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    _check_canonical(loaded, expected)


def test_load_lam_refuses_unknown_class(model, tmp_path):
    path = save_lam(model, tmp_path / "lam")
    meta = json.loads((path / "config.json").read_text())
    meta["class"] = "somewhere.Else"
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(LamLoadError, match="somewhere.Else"):
        load_lam(path)


@pytest.mark.parametrize("prefix", ["", GR00T_PREFIX])
def test_missing_extra_and_misshaped_tensors_are_named(prefix, release_tensors, tokenizer_config):
    tensors = {prefix + k: v for k, v in release_tensors.items()}
    key = prefix + "m_former.encoder.layer.1.attention.attention.value.bias"

    def load(t):
        return moto_from_gr00t_tensors(t, tokenizer_config, VIT_MAE_DIR, prefix=prefix)

    missing = {k: v for k, v in tensors.items() if k != key}
    with pytest.raises(LamLoadError, match=rf"missing tensor '{key}' \(shape \(48,\)"):
        load(missing)
    bad = {**tensors, key: torch.zeros(47)}
    with pytest.raises(LamLoadError, match=rf"'{key}' has shape \(47,\), the config needs \(48,\)"):
        load(bad)
    extra_key = prefix + "m_former.pooler.dense.weight"
    with pytest.raises(LamLoadError, match=rf"unexpected tensor '{extra_key}' with shape \(2, 2\)"):
        load({**tensors, extra_key: torch.zeros(2, 2)})
    # the frozen encoder and LPIPS, which LARA's save drops, are not taken from the file
    load({**tensors, prefix + "loss_fn_lpips.lin0.model.1.weight": torch.zeros(1),
          prefix + "image_encoder.layernorm.weight": torch.zeros(32)})


def test_tokenizer_dir_errors(tmp_path, tokenizer_config):
    with pytest.raises(LamLoadError, match="config.json is missing"):
        load_moto_tokenizer(tmp_path, VIT_MAE_DIR)
    with pytest.raises(LamLoadError, match="not a ViT-MAE directory"):
        load_moto_tokenizer(TOKENIZER_DIR, tmp_path)
    raw = copy.deepcopy(tokenizer_config)
    raw["m_former_config"]["config"]["legacy"] = False
    with pytest.raises(LamLoadError, match="legacy"):
        config_from_release(raw, {"hidden_size": 32, "image_size": 32, "patch_size": 8})
    raw = copy.deepcopy(tokenizer_config)
    raw["m_former_config"]["config"]["input_hidden_size"] = 64
    with pytest.raises(LamLoadError, match="input_hidden_size 64"):
        config_from_release(raw, {"hidden_size": 32, "image_size": 32, "patch_size": 8})


def test_parity_is_sensitive_to_the_legacy_token_type(model, expected):
    """Row 1 of the token-type table is unused; giving the target frame type 1 (non-legacy) would move
    the outputs far beyond the parity tolerance, so the parity test pins the legacy behaviour."""
    lam = copy.deepcopy(model)
    with torch.no_grad():
        lam.mformer.token_type[1].add_(1.0)
    assert torch.equal(_run(lam, expected).z, _run(model, expected).z)
    lam = copy.deepcopy(model)
    q, p = lam.config.num_queries, lam.config.num_patches
    with torch.no_grad():
        tt = lam.mformer.token_type
        lam.mformer.position[:, q + p + 1:] += tt[1] - tt[0]  # = type 1 on the target's tokens
    out = _run(lam, expected)
    assert _max_err(out.motion_tokens, expected["m_former_latent_tokens"]) > 100 * ATOL
    assert _max_err(out.z, expected["embed"]) > 100 * ATOL


def test_legacy_vq_gradients():
    """Legacy VQ2: commit = mean((sg(e) - z)^2) + beta * mean((e - sg(z))^2); straight-through quant."""
    torch.manual_seed(0)
    vq = MotoVectorQuantizer(16, 4)
    z = torch.randn(3, 5, 4, requires_grad=True)
    q = vq(z)
    e = vq.codebook.weight[q.indices]
    beta = 0.25
    commit = vq.commit_loss(q, beta)
    assert torch.allclose(commit, (1 + beta) * ((e - z) ** 2).mean())
    commit.backward()
    n = z.numel()
    assert torch.allclose(z.grad, 2 * (z - e).detach() / n)  # commitment term, weight 1
    codebook_grad = torch.zeros_like(vq.codebook.weight).index_add_(
        0, q.indices.reshape(-1), (beta * 2 * (e - z) / n).detach().reshape(-1, 4))
    assert torch.allclose(vq.codebook.weight.grad, codebook_grad)  # codebook term, weight beta
    z.grad = None
    weights = torch.randn(3, 5, 4)
    (vq(z).quantized * weights).sum().backward()
    assert torch.allclose(z.grad, weights)  # straight-through


def test_one_training_step_through_the_joint_objective(model, expected):
    lam = copy.deepcopy(model)
    objective = JointObjective(policy=None, lam=lam, align=None).train()
    assert lam.training and not lam.encoder.training
    frames = expected["frames_uint8"].permute(0, 1, 3, 4, 2)  # [B, F, H, W, 3]
    batch = {"image": frames[:, 0].contiguous(), "future_image": frames[:, 1].contiguous()}
    terms = objective(batch)
    # the frames, preprocessed, are the fixture's pairs: the same loss as the release's
    assert _rel_err(terms["loss"].detach(), expected["loss_no_lpips"]) <= RTOL_LOSS
    terms["loss"].backward()
    for name, p in lam.named_parameters():
        if name.startswith("encoder."):
            assert p.grad is None, name
        elif name != "mformer.token_type":  # row 1 is unused, row 0 gets a gradient
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert lam.mformer.token_type.grad[0].abs().sum() > 0 and not lam.mformer.token_type.grad[1].any()
    optimizer = torch.optim.AdamW(lam.trainable_parameters(), lr=1e-3)
    encoder_before = copy.deepcopy(lam.encoder.state_dict())
    optimizer.step()
    for name, value in lam.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[name]), name
    assert int((lam.quantizer.counts > 0).sum()) == terms["codes_active"].item()
    assert lam.codebook_usage()["active_running"] == terms["codes_active"].item()
