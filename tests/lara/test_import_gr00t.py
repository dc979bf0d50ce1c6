"""lara-import gr00t against the parity fixtures: GR00T N1.5's and the LARA release's own outputs.

tests/data/gr00t_n15_tiny holds tiny GR00T N1.5 / LARA action heads and an Eagle backbone in
GR00T's key names, with the outputs GR00T's and LARA's code computed from them (README.md
there); tests/data/lara_lam_tiny the LARA release's LAM. The checkpoint is assembled from them
as Hugging Face stores one (sharded, bf16 or fp32), imported through the public entry points,
and the bundle's policy must reproduce those outputs. Reverting any one of the importer's
fixes (the tests named ``*_reverted``) must break the parity.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from lara_g1.lara.bundle import load_bundle
from lara_g1.lara.checkpoints import CheckpointError
from lara_g1.lara.checkpoints import gr00t as gr00t_family
from lara_g1.lara.checkpoints.cli import main as import_main
from lara_g1.lara.checkpoints.importer import import_gr00t
from lara_g1.lara.model.config import PolicyConfig
from lara_g1.lara.model.policy import LaraPolicy, pack_vl
from lara_g1.lara.train.alignment import AlignmentHead, load_alignment
from tests.helpers.eagle import write_gr00t_assets
from tests.helpers.gr00t import EAGLE, LAM, N15, write_checkpoint

ACTION_TOL = 1e-5      # the bound for the sampled actions (fp32)
HIDDEN_TOL = 5e-5      # single DiT passes and the alignment tap (values up to ~10)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_gr00t_assets(tmp_path_factory.mktemp("assets"))


@pytest.fixture(scope="module")
def n15_bundle(tmp_path_factory, assets):
    root = tmp_path_factory.mktemp("n15")
    ckpt = write_checkpoint(root / "ckpt", "gr00t_n1_5", sharded=True)
    assert import_main(["gr00t", str(ckpt), "--out", str(root / "bundle"), "--assets", str(assets),
                        "--no-progress"]) == 0
    return root / "bundle"


@pytest.fixture(scope="module")
def lara_bundle(tmp_path_factory, assets):
    root = tmp_path_factory.mktemp("lara")
    ckpt = write_checkpoint(root / "ckpt", "lara", sharded=True, bf16=False)
    import_gr00t(ckpt, root / "bundle", assets=assets, lam_encoder=LAM / "vit_mae", progress=False)
    return root / "bundle"


def _expected(variant: str) -> dict[str, torch.Tensor]:
    return load_file(str((N15 / "lara" if variant == "lara" else N15) / "expected.safetensors"))


def _g1_ids(ids: torch.Tensor, source_row: int, g1_row: int = 0) -> torch.Tensor:
    """The fixture's embodiment ids after the import swapped ``source_row`` and the G1's row."""
    out = ids.clone()
    out[ids == source_row], out[ids == g1_row] = g1_row, source_row
    return out


def _head_outputs(policy: LaraPolicy, e: dict[str, torch.Tensor], source_row: int):
    with torch.no_grad():
        vl = policy.adapter(e["backbone_features"])
        packed = pack_vl(vl, e["backbone_attention_mask"])
        eid = _g1_ids(e["embodiment_id"], source_row)
        actions = policy.sample(packed, e["state"][:, 0], eid, e["noise"])
        velocity, hidden = policy.velocity(packed, e["state"][:, 0], e["train_noisy_actions"], e["train_t_bucket"],
                                           eid, return_hidden=True)
    return vl, actions, velocity, hidden


def _err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def test_gr00t_n15_actions_match_gr00t(n15_bundle):
    e = _expected("gr00t_n1_5")
    policy = load_bundle(n15_bundle).policy
    assert policy.config.num_future_tokens == 4 and policy.config.num_embodiments == 32
    vl, actions, velocity, _ = _head_outputs(policy, e, source_row=31)
    assert _err(vl, e["vl_embs"]) < 1e-5
    assert _err(actions, e["actions"]) <= ACTION_TOL
    assert _err(velocity, e["train_pred_velocity"]) <= HIDDEN_TOL


def test_lara_actions_alignment_and_lam_match_lara(lara_bundle):
    e = _expected("lara")
    policy = load_bundle(lara_bundle).policy
    cfg = policy.config
    assert cfg.num_future_tokens == 0 and cfg.num_embodiments == 64 and cfg.align_block == cfg.dit_layers - 3
    _, actions, velocity, hidden = _head_outputs(policy, e, source_row=40)
    assert _err(actions, e["actions"]) <= ACTION_TOL
    assert _err(velocity, e["train_pred_velocity"]) <= HIDDEN_TOL
    tap = hidden[cfg.align_hidden_layer][:, -1]
    assert _err(tap, e["align_hidden"]) <= HIDDEN_TOL
    align = AlignmentHead(cfg.width, 256)
    load_alignment(align, lara_bundle / "lam")
    with torch.no_grad():
        assert _err(align.proj(tap), e["align_proj"]) <= HIDDEN_TOL

    from lara_g1.lara.lam import load_lam
    lam = load_lam(lara_bundle / "lam").eval()
    le = load_file(str(LAM / "expected.safetensors"))
    with torch.no_grad():
        out = lam(le["cond_pixel_values"], le["target_pixel_values"])
    assert _err(out.z, le["embed"]) <= ACTION_TOL
    assert torch.equal(out.indices, le["indices"])
    assert _err(out.reconstruction, le["recons_pixel_values"]) <= ACTION_TOL


def test_eagle_features_match_gr00t_backbone(n15_bundle):
    e = load_file(str(EAGLE / "expected.safetensors"))
    policy = load_bundle(n15_bundle).policy
    with torch.no_grad():
        feats = policy.backbone(e["pixel_values"], e["input_ids"], e["attention_mask"])
    real = e["attention_mask"].bool()
    assert _err(feats[real], e["backbone_features"][real]) <= ACTION_TOL


def test_bf16_single_file_checkpoint_imports_as_the_sharded_fp32_one(tmp_path, assets, n15_bundle):
    ckpt = write_checkpoint(tmp_path / "ckpt", "gr00t_n1_5", sharded=False, bf16=True)
    import_gr00t(ckpt, tmp_path / "bundle", assets=assets, progress=False)
    a = load_file(str(tmp_path / "bundle" / "model.safetensors"))
    b = load_file(str(n15_bundle / "model.safetensors"))
    assert a.keys() == b.keys() and all(v.dtype == torch.float32 for v in a.values())
    # bf16 storage: every weight within bf16 rounding of the fp32 import
    assert all(torch.allclose(a[k], b[k], rtol=1e-2, atol=1e-2) for k in a)


# --- each fix, reverted, breaks the parity -------------------------------------------------------------

def _rebuilt(bundle, **changes) -> LaraPolicy:
    """The imported policy with config fields changed and the same weights (minus any that the
    changed config no longer has)."""
    b = load_bundle(bundle)
    config = PolicyConfig.from_dict({**b.config.to_dict(), **changes})
    policy = LaraPolicy(config, load_backbone_weights=False).eval()
    state = {k: v for k, v in b.policy.state_dict().items() if k in policy.state_dict()}
    policy.load_state_dict(state, strict=True)
    return policy


def test_item1_timestep_sinusoid_reverted(n15_bundle):
    e = _expected("gr00t_n1_5")
    _, actions, _, _ = _head_outputs(_rebuilt(n15_bundle, timestep_freq_shift=0), e, 31)
    assert _err(actions, e["actions"]) > 100 * ACTION_TOL


def test_item2_action_encoder_sin_cos_order_reverted(tmp_path, assets, monkeypatch):
    monkeypatch.setattr("lara_g1.lara.checkpoints.importer.swap_timestep_halves", lambda w, width: w)
    import_gr00t(write_checkpoint(tmp_path / "ckpt"), tmp_path / "bundle", assets=assets, progress=False)
    e = _expected("gr00t_n1_5")
    _, actions, _, _ = _head_outputs(load_bundle(tmp_path / "bundle").policy, e, 31)
    assert _err(actions, e["actions"]) > 100 * ACTION_TOL


def test_item3_future_tokens_reverted(n15_bundle):
    e = _expected("gr00t_n1_5")
    _, actions, _, _ = _head_outputs(_rebuilt(n15_bundle, num_future_tokens=0), e, 31)
    assert _err(actions, e["actions"]) > 100 * ACTION_TOL


def test_item4_llm_final_norm_reverted(n15_bundle):
    e = load_file(str(EAGLE / "expected.safetensors"))
    policy = load_bundle(n15_bundle).policy
    policy.backbone.llm.norm = torch.nn.Identity()
    with torch.no_grad():
        feats = policy.backbone(e["pixel_values"], e["input_ids"], e["attention_mask"])
    real = e["attention_mask"].bool()
    assert _err(feats[real], e["backbone_features"][real]) > 100 * ACTION_TOL


def test_item11_alignment_readout_one_block_later_reverted(lara_bundle):
    e = _expected("lara")
    policy = _rebuilt(lara_bundle, align_hidden_layer=-2)   # lara-g1's old read-out: block L-2
    _, _, _, hidden = _head_outputs(policy, e, 40)
    assert _err(hidden[policy.config.align_hidden_layer][:, -1], e["align_hidden"]) > 100 * HIDDEN_TOL


def test_item7_pad_tokens_are_masked_so_padding_changes_nothing(n15_bundle):
    """GR00T has no pad tokens at batch 1; ours pad to a fixed length. With the mask the pads
    change nothing; without it (GR00T's unmasked attention) they would."""
    e = _expected("gr00t_n1_5")
    policy = load_bundle(n15_bundle).policy
    feats = e["backbone_features"]
    padded = torch.cat([torch.randn(2, 5, feats.shape[-1]), feats], dim=1)          # 5 left pads
    mask = torch.cat([torch.zeros(2, 5, dtype=torch.int64), e["backbone_attention_mask"]], dim=1)
    eid = _g1_ids(e["embodiment_id"], 31)
    with torch.no_grad():
        vl = pack_vl(policy.adapter(padded, key_mask=mask), mask)
        actions = policy.sample(vl, e["state"][:, 0], eid, e["noise"])
        unmasked = policy.sample(pack_vl(policy.adapter(padded), torch.ones_like(mask)), e["state"][:, 0], eid,
                                 e["noise"])
    assert _err(actions, e["actions"]) <= ACTION_TOL
    assert _err(unmasked, e["actions"]) > 100 * ACTION_TOL


# --- errors that name what is wrong ----------------------------------------------------------------------

def test_wrong_model_type_is_refused(tmp_path, assets):
    ckpt = write_checkpoint(tmp_path / "ckpt")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model_type"] = "gr00t_n1"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="model_type 'gr00t_n1'"):
        import_gr00t(ckpt, tmp_path / "bundle", assets=assets, progress=False)


def test_missing_tensor_is_named_with_its_shape(tmp_path, assets):
    ckpt = write_checkpoint(tmp_path / "ckpt", drop=("action_head.model.proj_out_2.weight",))
    with pytest.raises(CheckpointError, match=r"head\.dit\.proj_out_2\.weight', \[12, 16\]"):
        import_gr00t(ckpt, tmp_path / "bundle", assets=assets, progress=False)
    assert not (tmp_path / "bundle").exists()


def test_extra_tensor_is_named(tmp_path, assets):
    ckpt = write_checkpoint(tmp_path / "ckpt", add={"action_head.something_new.weight": torch.zeros(3, 4)})
    with pytest.raises(CheckpointError, match=r"action_head\.something_new\.weight', \[3, 4\]"):
        import_gr00t(ckpt, tmp_path / "bundle", assets=assets, progress=False)


def test_size_mismatch_names_key_and_both_shapes(tmp_path, assets):
    ckpt = write_checkpoint(tmp_path / "ckpt", drop=("action_head.model.proj_out_1.bias",),
                            add={"action_head.model.proj_out_1.bias": torch.zeros(31)})
    with pytest.raises(CheckpointError, match=r"proj_out_1\.bias' has shape \[31\] but 'head\.dit\.proj_out_1\.bias' "
                                              r"needs \[32\]"):
        import_gr00t(ckpt, tmp_path / "bundle", assets=assets, progress=False)


def test_lara_without_vit_mae_and_missing_assets_are_clear(tmp_path, assets, capsys):
    ckpt = write_checkpoint(tmp_path / "ckpt", "lara")
    with pytest.raises(CheckpointError, match="--lam-encoder"):
        import_gr00t(ckpt, tmp_path / "b1", assets=assets, progress=False)
    assert import_main(["gr00t", str(ckpt), "--out", str(tmp_path / "b2"), "--no-progress"]) == 2
    assert "pass --assets DIR" in capsys.readouterr().err


def test_row_choice_moves_that_row_to_the_g1(tmp_path, assets):
    ckpt = write_checkpoint(tmp_path / "ckpt")
    import_gr00t(ckpt, tmp_path / "bundle", assets=assets, row=24, progress=False)
    source = load_file(str(N15 / "model.safetensors"))["action_head.state_encoder.layer1.W"]
    imported = load_file(str(tmp_path / "bundle" / "model.safetensors"))["head.state_encoder.layer1.weight"]
    assert torch.equal(imported[0], source[24]) and torch.equal(imported[24], source[0])
    assert torch.equal(imported[5], source[5])
    with pytest.raises(CheckpointError, match="--row 32 is outside the checkpoint's 32 embodiment rows"):
        import_gr00t(ckpt, tmp_path / "b2", assets=assets, row=32, progress=False)


def test_family_table_knows_n15(tmp_path):
    assert "gr00t_n1_5" in gr00t_family.FAMILIES


@pytest.mark.parametrize("variant", ["gr00t_n1_5", "lara"])
def test_full_size_import_trainable_parameters_with_the_backbone_frozen(variant):
    """GR00T N1.5-3B's sizes, built on the meta device (no memory). GR00T's 1.07 B "action head"
    is our adapter + head at 32 embodiment rows; the LARA release's 64 rows add 0.32 B."""
    from lara_g1.lara.checkpoints.importer import policy_config
    from lara_g1.lara.model.eagle import eagle_config_from_gr00t
    from tests.helpers.gr00t import full_size_n15

    head, shapes, eagle = full_size_n15()
    if variant == "lara":
        shapes["action_head.action_encoder.W1.W"] = (64, 32, 1536)
        shapes["action_head.pred_latent_motion_head.weight"] = (256, 1536)
        del shapes["action_head.future_tokens.weight"]
    tr = gr00t_family.Gr00tN15.translate(head, shapes, row=None)
    assert tr.variant == variant
    config = policy_config(tr, eagle_config_from_gr00t(head, eagle), "g1", 32)
    with torch.device("meta"):
        policy = LaraPolicy(config, load_backbone_weights=False)
    count = {name: sum(p.numel() for p in child.parameters()) for name, child in policy.named_children()}
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    assert 1.2e9 < count["backbone"] < 1.5e9                   # SigLIP + Linear + Qwen3[12], frozen
    assert trainable == count["head"] + count["adapter"]
    if variant == "gr00t_n1_5":
        assert 1.05e9 < trainable < 1.09e9
    else:
        assert 1.3e9 < trainable < 1.45e9
