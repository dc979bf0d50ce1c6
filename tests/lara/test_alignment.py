"""LARA's alignment: where its gradient goes with the LAM trained, frozen, or absent."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lara_g1.core.embodiment import load_embodiment
from lara_g1.lara.lam import LamConfig, LatentActionModel
from lara_g1.lara.model.config import PolicyConfig
from lara_g1.lara.model.policy import LaraPolicy
from lara_g1.lara.processing import NormStats, Preprocessor
from lara_g1.lara.train.alignment import AlignmentHead, alignment_loss, load_alignment, save_alignment
from lara_g1.lara.train.batches import BatchCollator, to_device
from lara_g1.lara.train.objective import JointObjective, LossWeights

B = 3


@pytest.fixture(scope="module")
def config():
    return PolicyConfig.from_preset("tiny")


@pytest.fixture(scope="module")
def batch(config):
    emb = load_embodiment("g1")
    rng = np.random.default_rng(0)
    items = [{
        "image": rng.integers(0, 256, (48, 48, 3), dtype=np.uint8),
        "future_image": rng.integers(0, 256, (48, 48, 3), dtype=np.uint8),
        "state": emb.default_pose.astype(np.float32),
        "actions": np.repeat(emb.default_pose[None], config.horizon, 0).astype(np.float32),
        "action_mask": np.arange(config.horizon) < config.horizon - i,
        "instruction": "pick the cup",
    } for i in range(B)]
    pre = Preprocessor(config, NormStats.from_embodiment(emb))
    return to_device(BatchCollator(pre, config.cameras[0])(items), torch.device("cpu"))


def _modules(config, seed=0):
    torch.manual_seed(seed)
    policy = LaraPolicy(config)
    lam = LatentActionModel(LamConfig.from_preset("tiny"))
    align = AlignmentHead(config.width, lam.config.latent_size)
    return policy, lam, align


def _grad_sum(module) -> float:
    return float(sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None))


def test_batch_matches_the_model_inputs(batch, config):
    assert batch["pixel_values"].shape == (B, 3, config.image_size, config.image_size)
    assert batch["actions"].shape == (B, config.horizon, config.max_action_dim)
    assert batch["state"].shape == (B, config.max_state_dim)
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (B, 48, 48, 3)
    assert batch["action_mask"].sum().item() == 3 * config.horizon - 3


def test_alignment_loss_is_one_minus_cosine():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[[3.0, 0.0]], [[1.0, 0.0]]])  # [B, Q, D], flattened to [B, 2]
    assert torch.allclose(alignment_loss(p, z), torch.tensor(0.5))  # (0 + 1) / 2
    assert torch.allclose(alignment_loss(-p, z), torch.tensor(1.5))  # (2 + 1) / 2


def test_alignment_reads_the_last_action_token_of_block_l_minus_3(config, batch):
    policy, lam, align = _modules(config)
    vl = policy.backbone_features(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    out = policy.flow_loss(vl, batch["state"], batch["actions"], batch["action_mask"],
                           batch["embodiment_id"], generator=torch.Generator().manual_seed(0))
    # LARA's all_hidden_states[-3]: the list starts with the DiT's input, so block L-3 (0-based)
    assert config.align_hidden_layer == -3 and config.align_block == config.dit_layers - 3
    blocks = []
    hooks = [b.register_forward_hook(lambda m, i, o: blocks.append(o)) for b in policy.head.dit.blocks]
    policy.flow_loss(vl, batch["state"], batch["actions"], batch["action_mask"],
                     batch["embodiment_id"], generator=torch.Generator().manual_seed(0))
    for h in hooks:
        h.remove()
    assert torch.equal(out["hidden"], blocks[config.align_block])
    assert out["hidden"].shape == (B, 1 + config.horizon, config.width)
    proj = align(out["hidden"])
    assert proj.shape == (B, 256)
    assert torch.allclose(proj, align.proj(out["hidden"][:, -1]))


def test_alignment_gradient_reaches_the_lam_mformer(config, batch):
    policy, lam, align = _modules(config)
    objective = JointObjective(policy, lam, align)
    terms = objective(batch, generator=torch.Generator().manual_seed(0))
    assert set(terms) >= {"flow", "align", "lam", "loss"}
    expected = terms["flow"] + 0.01 * terms["align"] + 0.01 * terms["lam"]
    assert torch.allclose(terms["loss"], expected)
    terms["align"].backward()  # the alignment term alone
    assert _grad_sum(lam.mformer) > 0  # z is not detached: the alignment trains the LAM
    assert _grad_sum(lam.down_resampler) > 0
    assert _grad_sum(align) > 0
    assert _grad_sum(policy.head.dit.blocks[config.align_block]) > 0
    # nothing downstream of z's quantisation or above block L-3 is touched by it
    assert _grad_sum(lam.decoder) == 0 and _grad_sum(lam.quantizer) == 0
    assert _grad_sum(policy.head.dit.blocks[config.align_block + 1]) == 0
    assert all(p.grad is None for p in lam.encoder.parameters())  # frozen ViT-MAE


def test_freeze_lam_stops_every_gradient_into_the_lam(config, batch):
    policy, lam, align = _modules(config)
    before = {k: v.clone() for k, v in lam.state_dict().items()}
    objective = JointObjective(policy, lam, align, freeze_lam=True).train()
    terms = objective(batch, generator=torch.Generator().manual_seed(0))
    assert "align" in terms and terms["align"].requires_grad
    assert not terms["lam"].requires_grad  # reported, not trained
    assert torch.allclose(terms["loss"], terms["flow"] + 0.01 * terms["align"])
    terms["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in lam.parameters())
    assert _grad_sum(align) > 0 and _grad_sum(policy.head) > 0
    for k, v in lam.state_dict().items():  # not even the usage counters move
        assert torch.equal(v, before[k]), k


def test_no_align_has_no_alignment_term(config, batch):
    policy, _, _ = _modules(config)
    objective = JointObjective(policy, None, None, LossWeights(align=1.0, lam=1.0))
    terms = objective(batch, generator=torch.Generator().manual_seed(0))
    assert "align" not in terms and "lam" not in terms
    assert torch.equal(terms["loss"], terms["flow"])
    assert not any(isinstance(m, (AlignmentHead, LatentActionModel)) for m in objective.modules())


def test_weights_scale_the_terms(config, batch):
    policy, lam, align = _modules(config)
    objective = JointObjective(policy, lam, align, LossWeights(align=0.5, lam=2.0))
    terms = objective(batch, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(terms["loss"], terms["flow"] + 0.5 * terms["align"] + 2.0 * terms["lam"])


def test_objective_refuses_inconsistent_parts(config):
    policy, lam, align = _modules(config)
    with pytest.raises(ValueError, match="needs both"):
        JointObjective(policy, None, align)
    with pytest.raises(ValueError, match="freeze_lam"):
        JointObjective(None, lam, None, freeze_lam=True)


def test_alignment_head_round_trip(config, tmp_path):
    head = AlignmentHead(config.width, 256)
    save_alignment(head, tmp_path)
    other = AlignmentHead(config.width, 256)
    load_alignment(other, tmp_path)
    assert torch.equal(head.proj.weight, other.proj.weight)
    with pytest.raises(ValueError, match="this policy needs"):
        load_alignment(AlignmentHead(config.width * 2, 256), tmp_path)
