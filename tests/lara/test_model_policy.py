"""The policy's structure: presets, parameter counts, the DiT, the embodiment gather, ONNX export."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lara_g1.lara.model import ConfigError, LaraPolicy, PolicyConfig
from lara_g1.lara.model.dit import DiT
from lara_g1.lara.model.embodiment_mlp import EmbodimentLinear
from lara_g1.lara.model.policy import ActionHead, parameter_counts


def _tiny(**overrides) -> LaraPolicy:
    torch.manual_seed(0)
    return LaraPolicy(PolicyConfig.from_preset("tiny", **overrides)).eval()


def _head_inputs(cfg: PolicyConfig, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 6, cfg.vl_dim, generator=g), torch.randn(batch, cfg.max_state_dim, generator=g),
            torch.randn(batch, cfg.horizon, cfg.max_action_dim, generator=g),
            torch.tensor([0, 500][:batch], dtype=torch.int64), torch.zeros(batch, dtype=torch.int64))


def test_paper_dit_has_groot_n15_size_on_meta_device():
    cfg = PolicyConfig.from_preset("paper")
    assert (cfg.dit_layers, cfg.dit_heads, cfg.dit_head_dim, cfg.width) == (16, 32, 48, 1536)
    assert (cfg.dit_output_dim, cfg.cross_attention_dim, cfg.adapter_layers, cfg.vl_dim) == (1024, 2048, 4, 2048)
    with torch.device("meta"):
        dit = DiT(cfg.width, cfg.dit_heads, cfg.dit_head_dim, cfg.dit_layers, cfg.dit_output_dim,
                  cfg.cross_attention_dim, cfg.timestep_embed_dim)
    assert all(p.is_meta for p in dit.parameters())
    counts = parameter_counts(dit)
    assert 530e6 < counts["total"] < 570e6, counts
    assert counts["blocks"] > 0.98 * counts["total"]


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_every_preset_head_runs_shape_checked_on_meta(preset):
    """Shapes flow through adapter and action head of each preset (meta tensors: no memory, no compute)."""
    from lara_g1.lara.model.adapter import VLAdapter

    cfg = PolicyConfig.from_preset(preset)
    with torch.device("meta"):
        adapter, head = VLAdapter(cfg), ActionHead(cfg)
        vl = adapter(torch.empty(2, 10, cfg.vl_dim))
        v, hidden = head(vl, torch.empty(2, cfg.max_state_dim), torch.empty(2, cfg.horizon, cfg.max_action_dim),
                         torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))
    assert v.shape == (2, cfg.horizon, cfg.max_action_dim)
    seq = 1 + cfg.num_future_tokens + cfg.horizon
    assert len(hidden) == cfg.dit_layers + 1 and hidden[cfg.align_hidden_layer].shape == (2, seq, cfg.width)


def test_presets_load_validate_and_apply_overrides():
    tiny = PolicyConfig.from_preset("tiny", horizon=16)
    assert tiny.preset == "tiny" and tiny.horizon == 16 and tiny.backbone == "standin"
    assert PolicyConfig.from_preset("tiny").horizon == 8
    assert PolicyConfig.from_dict(tiny.to_dict()) == tiny
    with pytest.raises(ConfigError, match="no preset named 'huge'"):
        PolicyConfig.from_preset("huge")
    with pytest.raises(ConfigError, match="dit_depth: unknown key"):
        PolicyConfig.from_preset("tiny", dit_depth=3)
    with pytest.raises(ConfigError, match="standin_patch_size 30 must divide image_size 224"):
        PolicyConfig.from_preset("tiny", standin_patch_size=30)
    with pytest.raises(ConfigError, match="denoising_steps 3 must divide"):
        PolicyConfig.from_preset("tiny", denoising_steps=3)
    with pytest.raises(ConfigError, match="horizon: must be > 0, got 0"):
        PolicyConfig.from_preset("tiny", horizon=0)


def test_dit_alternates_cross_and_self_attention():
    cfg = PolicyConfig.from_preset("tiny")
    dit = _tiny().head.dit
    for i, block in enumerate(dit.blocks):
        assert block.cross == (i % 2 == 0)
        assert block.attn.to_k.in_features == (cfg.cross_attention_dim if i % 2 == 0 else cfg.width)


def test_velocity_shapes_hidden_states_and_conditioning():
    policy = _tiny()
    cfg = policy.config
    vl, state, noisy, t, eid = _head_inputs(cfg)
    with torch.no_grad():
        v, hidden = policy.velocity(vl, state, noisy, t, eid, return_hidden=True)
        assert v.shape == (2, cfg.horizon, 32) and v.dtype == torch.float32
        assert len(hidden) == cfg.dit_layers + 1 and all(h.shape == (2, 1 + cfg.horizon, cfg.width) for h in hidden)
        assert torch.equal(policy.velocity(vl, state, noisy, t, eid), v)
        # each input conditions the output
        for changed in ((vl + 1, state, noisy, t, eid), (vl, state + 1, noisy, t, eid),
                        (vl, state, noisy, t + 100, eid)):
            assert not torch.allclose(policy.velocity(*changed), v)
        # samples in a batch are independent
        v0 = policy.velocity(vl[:1], state[:1], noisy[:1], t[:1], eid[:1])
    torch.testing.assert_close(v0, v[:1], atol=1e-5, rtol=1e-5)


def test_embodiment_linear_gathers_each_samples_row():
    layer = EmbodimentLinear(64, 3, 2)
    x = torch.randn(3, 4, 3)
    ids = torch.tensor([5, 0, 63])
    out = layer(x, ids)
    for b, e in enumerate(ids.tolist()):
        torch.testing.assert_close(out[b], x[b] @ layer.weight[e] + layer.bias[e])


def test_policy_uses_the_embodiment_row_of_its_id():
    policy = _tiny()
    cfg = policy.config
    vl, state, noisy, t, _ = _head_inputs(cfg)
    ids = torch.tensor([0, 7])
    with torch.no_grad():
        before = policy.velocity(vl, state, noisy, t, ids)
        for mod in policy.head.modules():
            if isinstance(mod, EmbodimentLinear):
                mod.weight[7].mul_(-1.5)
        after = policy.velocity(vl, state, noisy, t, ids)
    assert torch.equal(after[0], before[0])          # row 0 untouched -> sample 0 unchanged
    assert not torch.allclose(after[1], before[1])   # row 7 changed -> sample 1 changed


def test_policy_rejects_padding_narrower_than_the_embodiment_and_takes_wider():
    with pytest.raises(ConfigError, match="has 28 joints but the policy pads state to 64 and actions to 16"):
        LaraPolicy(PolicyConfig.from_preset("tiny", max_action_dim=16))
    wide = LaraPolicy(PolicyConfig.from_preset("tiny", max_state_dim=128, max_action_dim=128))   # GR00T N1.6's
    assert wide.head.action_decoder.layer2.weight.shape[-1] == 128


def test_frozen_backbone_has_no_trainable_parameters():
    policy = _tiny(tune_backbone=False)
    assert not any(p.requires_grad for p in policy.backbone.parameters())
    assert all(p.requires_grad for p in policy.head.parameters())
    policy.train()
    assert policy.head.training and policy.adapter.training and not policy.backbone.training
    assert _tiny().train().backbone.training  # a tuned backbone trains


def test_inference_path_exports_to_onnx_with_parity(tmp_path):
    """The contract the export engineer relies on: backbone + 4-step Euler loop trace with
    torch.onnx.export(dynamo=False) and onnxruntime reproduces torch within 1e-4."""
    import onnxruntime as ort

    policy = _tiny(standin_layers=1, dit_layers=2)
    cfg = policy.config
    g = torch.Generator().manual_seed(0)
    inputs = (torch.randn(2, 3, 224, 224, generator=g), torch.randint(3, 259, (2, cfg.max_text_len), generator=g),
              torch.ones(2, cfg.max_text_len, dtype=torch.int64), torch.randn(2, 64, generator=g),
              torch.zeros(2, dtype=torch.int64), torch.randn(2, cfg.horizon, 32, generator=g))
    inputs[2][1, 10:] = 0
    names = ["pixel_values", "input_ids", "attention_mask", "state", "embodiment_id", "noise"]
    path = tmp_path / "policy.onnx"
    torch.onnx.export(policy, inputs, str(path), input_names=names, output_names=["actions"],
                      dynamic_axes={n: {0: "batch"} for n in names + ["actions"]}, opset_version=17, dynamo=False)
    with torch.no_grad():
        expected = policy(*inputs).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]
    assert got.shape == (2, cfg.horizon, 32)
    assert np.abs(got - expected).max() <= 1e-4
    one = session.run(None, {n: t[:1].numpy() for n, t in zip(names, inputs)})[0]  # batch axis is dynamic
    assert np.abs(one - expected[:1]).max() <= 1e-4
