"""lara-import gr00t on GR00T N1.6: the gr00t_n16_tiny fixture is one complete tiny N1.6 checkpoint
written by N1.6's own ``save_pretrained``, with the outputs of N1.6's code (README.md there).

The checkpoint directory is imported as it is (with a test embodiment of the fixture's own joint
layout, tests/data/embodiment/gr00t_n16_tiny.yaml), and the bundle must reproduce the head's
actions, the backbone's features and the processor's end-to-end path. Reverting the text/image
alternation, the prompt order or the relative-action decode breaks the parity.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lara_g1.core.embodiment import load_embodiment
from lara_g1.core.observation import Observation
from lara_g1.lara.bundle import load_bundle
from lara_g1.lara.checkpoints import CheckpointError
from lara_g1.lara.checkpoints.cli import main as import_main
from lara_g1.lara.checkpoints.gr00t import Gr00tN16
from lara_g1.lara.checkpoints.importer import import_gr00t, policy_config
from lara_g1.lara.model.config import PolicyConfig
from lara_g1.lara.model.policy import LaraPolicy, pack_vl
from tests.helpers.eagle import write_gr00t_n16_assets
from tests.helpers.gr00t import DATA, N16, full_size_n16

EMBODIMENT = str(DATA / "embodiment" / "gr00t_n16_tiny.yaml")
KEYS = ("left_arm", "gripper", "head")
TOL = 1e-5


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_gr00t_n16_assets(tmp_path_factory.mktemp("assets16"))


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, assets):
    out = tmp_path_factory.mktemp("n16") / "bundle"
    assert import_main(["gr00t", str(N16), "--out", str(out), "--assets", str(assets), "--embodiment", EMBODIMENT,
                        "--camera-size", "40x60", "--max-text-len", "11", "--no-progress"]) == 0
    return out


def _err(a, b) -> float:
    return float((torch.as_tensor(a) - torch.as_tensor(b)).abs().max())


def _head_actions(policy: LaraPolicy, e: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        vl = pack_vl(policy.adapter(e["backbone_features"]), e["backbone_attention_mask"], e["image_mask"])
        return policy.sample(vl, e["state"][:, 0], e["embodiment_id"], e["noise"])


def test_n16_config_and_processing_come_from_the_checkpoint(bundle_dir):
    b = load_bundle(bundle_dir)
    cfg = b.config
    assert (cfg.backbone, cfg.vl_cross_attention, cfg.adapter_layers, cfg.dit_layers) == ("eagle3", "alternate", 0, 8)
    assert (cfg.horizon, cfg.action_steps, cfg.max_state_dim, cfg.max_action_dim) == (16, 8, 28, 20)
    assert cfg.normalization == {"left_arm": "sin_cos", "gripper": "min_max", "head": "mean_std"}
    assert cfg.relative_action_groups == ["left_arm"]
    assert cfg.align_block == 5                    # LARA's rule (-3) on 8 blocks: block L-3
    assert not b.extra.get("untrained_stats")      # statistics.json described this embodiment


def test_n16_head_actions_match_gr00t(bundle_dir):
    e = load_file(str(N16 / "expected.safetensors"))
    policy = load_bundle(bundle_dir).policy
    with torch.no_grad():
        assert _err(policy.adapter(e["backbone_features"]), e["vl_embs"]) < 1e-6
    assert _err(_head_actions(policy, e), e["actions"]) <= TOL


def test_n16_backbone_features_match_gr00t(bundle_dir):
    e = load_file(str(N16 / "eagle" / "expected.safetensors"))
    policy = load_bundle(bundle_dir).policy
    with torch.no_grad():
        feats = policy.backbone(e["pixel_values"], e["input_ids"], e["attention_mask"])
    real = e["attention_mask"].bool()
    assert _err(feats[real], e["backbone_features"][real]) <= TOL


def test_n16_end_to_end_get_action_matches_gr00t(bundle_dir):
    """Raw observations -> our preprocessor -> backbone -> head -> decode, against Gr00tN1d6.get_action.
    The fixture's LLM has a compact vocabulary; the test tokenizer holds exactly those ids, so our
    prompt must equal GR00T's token for token."""
    p = load_file(str(N16 / "processor" / "expected.safetensors"))
    eagle = load_file(str(N16 / "eagle" / "expected.safetensors"))
    b = load_bundle(bundle_dir)
    texts = json.loads((N16 / "processor" / "observations.json").read_text())["instructions"]
    states = np.concatenate([p[f"raw.state.{k}"][:, -1].numpy() for k in KEYS], axis=-1)
    obs = [Observation(images={b.config.cameras[0]: p["raw.video.ego_view"][i, 0].numpy()}, state=states[i],
                       instruction=texts[i]) for i in range(2)]
    inputs = b.preprocessor(obs)
    assert _err(inputs["pixel_values"], p["pixel_values"][:, 0]) <= 1e-6
    assert np.array_equal(inputs["input_ids"], eagle["input_ids"].numpy())
    assert np.array_equal(inputs["attention_mask"], p["attention_mask"].numpy())
    assert _err(inputs["state"], p["state"][:, 0]) <= 1e-6
    t = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        normalized = b.policy(t["pixel_values"], t["input_ids"], t["attention_mask"], t["state"], t["embodiment_id"],
                              p["e2e_noise"])
    assert _err(normalized, p["e2e_actions_normalized"]) <= TOL
    actions = b.preprocessor.postprocess(normalized.numpy(), states)
    for k in KEYS:
        assert _err(actions[..., b.preprocessor.embodiment.group(k).slice], p[f"e2e_actions.{k}"]) <= TOL


def test_reverted_text_image_alternation_breaks_the_actions(bundle_dir):
    e = load_file(str(N16 / "expected.safetensors"))
    b = load_bundle(bundle_dir)
    flat = PolicyConfig.from_dict({**b.config.to_dict(), "vl_cross_attention": "all"})
    policy = LaraPolicy(flat, load_backbone_weights=False).eval()
    policy.load_state_dict(b.policy.state_dict())
    with torch.no_grad():
        vl = pack_vl(policy.adapter(e["backbone_features"]), e["backbone_attention_mask"])
        actions = policy.sample(vl, e["state"][:, 0], e["embodiment_id"], e["noise"])
    assert _err(actions, e["actions"]) > 100 * TOL


def test_full_size_n16_counts():
    """GR00T N1.6's base sizes on the meta device: the DiT 1.09 B; the checkpoint's 3.27 B includes the
    LLM's stored, unused lm_head (0.31 B), which the import drops."""
    cfg, shapes, eagle = full_size_n16()
    tr = Gr00tN16.translate(cfg, shapes, 10)
    config = policy_config(tr, Gr00tN16.backbone_config(cfg, eagle), "g1", 32, family=Gr00tN16, action_steps=8,
                           normalization={"left_arm": "sin_cos", "right_arm": "sin_cos"},
                           relative_action_groups=["left_arm", "right_arm"])
    with torch.device("meta"):
        policy = LaraPolicy(config, load_backbone_weights=False)
    dit = sum(p.numel() for p in policy.head.dit.parameters())
    total = sum(p.numel() for p in policy.parameters())
    assert 1.08e9 < dit < 1.10e9
    lm_head = 151680 * 2048
    assert 3.2e9 < total + lm_head < 3.3e9
    assert config.align_block == 29 and config.horizon == 50 and config.action_steps == 8


def test_g1_import_uses_the_arm_recipe_and_placeholder_stats(tmp_path, assets):
    """The G1 is not the fixture's new_embodiment: sin/cos arms, relative arm actions, placeholder
    statistics until post-training. The fixture's action width (20) is below the G1's 28: refused."""
    with pytest.raises(CheckpointError, match="28 joints but the policy pads state to 28 and actions to 20"):
        import_gr00t(N16, tmp_path / "g1", assets=assets, progress=False)
    assert not (tmp_path / "g1").exists()
    fields, stats = Gr00tN16.processing(Gr00tN16.read_aux(N16), "new_embodiment", load_embodiment("g1"))
    assert stats is None and fields["relative_action_groups"] == ["left_arm", "right_arm"]


def test_n16_tag_rows_and_errors(tmp_path, assets):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(N16, ckpt)
    with pytest.raises(CheckpointError, match=r"--row 'robot_x' is not in embodiment_id.json"):
        import_gr00t(ckpt, tmp_path / "b", assets=assets, embodiment=EMBODIMENT, row="robot_x", progress=False)
    (ckpt / "embodiment_id.json").unlink()
    with pytest.raises(CheckpointError, match="no embodiment_id.json with a new_embodiment row"):
        import_gr00t(ckpt, tmp_path / "b", assets=assets, embodiment=EMBODIMENT, progress=False)
