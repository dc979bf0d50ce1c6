"""The Latent Action Model: frozen ViT-MAE encoder, VQ straight-through, codebook usage, I/O."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lara_g1.lara.lam import LamConfig, LamLoadError, LatentActionModel, count_parameters, load_lam, save_lam
from lara_g1.lara.lam.quantizer import VectorQuantizer


def _frames(seed: int, n: int = 4, size: int = 40) -> torch.Tensor:
    g = np.random.default_rng(seed)
    return torch.from_numpy(g.integers(0, 256, (n, size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def mae_dir(tmp_path_factory):
    """A tiny random ViT-MAE saved with save_pretrained: the real loading path, offline."""
    from transformers import ViTMAEConfig, ViTMAEModel

    torch.manual_seed(1)
    cfg = ViTMAEConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, image_size=32, patch_size=8)  # mask_ratio 0.75
    path = tmp_path_factory.mktemp("mae")
    ViTMAEModel(cfg).save_pretrained(path)
    return path


@pytest.fixture()
def lam():
    torch.manual_seed(0)
    return LatentActionModel(LamConfig.from_preset("tiny"))


def test_pretrained_encoder_is_loaded_frozen_and_unmasked(mae_dir):
    from transformers import ViTMAEModel

    config = LamConfig.from_preset("tiny", encoder=str(mae_dir))
    lam = LatentActionModel(config)
    assert config.encoder_config["hidden_size"] == 32 and config.image_size == 32
    saved = ViTMAEModel.from_pretrained(mae_dir)
    for (name, p), q in zip(lam.encoder.named_parameters(), saved.parameters()):
        assert torch.equal(p, q), name
    assert lam.encoder.config.mask_ratio == 0.0
    x = lam.preprocess(_frames(0))
    torch.manual_seed(5)
    a = lam.encode_frames(x)
    torch.manual_seed(6)
    b = lam.encode_frames(x)
    assert a.shape == (4, 1 + 16, 32)  # CLS + every one of the 4 x 4 patches
    assert torch.equal(a, b)  # no random patch shuffling
    # patches stay in place: the features equal a plain ViT pass without MAE's masking step
    emb = saved.embeddings
    with torch.no_grad():
        pos = emb.position_embeddings
        h = torch.cat([(emb.cls_token + pos[:, :1]).expand(4, -1, -1),
                       emb.patch_embeddings(x) + pos[:, 1:]], dim=1)
        for layer in saved.eval().layers:
            h = layer(h, None)
            h = h[0] if isinstance(h, tuple) else h
        ref = saved.layernorm(h)
    assert torch.allclose(a, ref, atol=1e-6)

    out = lam(x, lam.preprocess(_frames(1)))
    out.loss.backward()
    assert all(p.grad is None for p in lam.encoder.parameters())
    assert not lam.train().encoder.training


def test_shapes_and_loss_terms(lam):
    x, y = lam.preprocess(_frames(0)), lam.preprocess(_frames(1))
    assert x.shape == (4, 3, 64, 64)
    out = lam(x, y)
    assert out.z.shape == out.quantized.shape == (4, 8, 32)
    assert out.indices.shape == (4, 8) and out.indices.dtype == torch.long
    assert out.reconstruction.shape == y.shape
    expected = out.reconstruction_loss + out.codebook_loss + 0.25 * out.commitment_loss
    assert torch.allclose(out.loss, expected)
    assert torch.allclose(out.reconstruction_loss, ((out.reconstruction - y) ** 2).mean())


def test_preprocess_rejects_bad_frames(lam):
    with pytest.raises(ValueError, match="uint8 frames"):
        lam.preprocess(torch.zeros(2, 3, 64, 64))


def test_quantizer_straight_through_and_losses():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4)
    z = torch.randn(3, 5, 4, requires_grad=True)
    q = vq(z)
    codes = vq.codebook.weight[q.indices]
    assert torch.allclose(q.quantized, codes)  # forward value: the nearest code
    dist = ((z.detach()[:, :, None, :] - vq.codebook.weight[None, None]) ** 2).sum(-1)
    assert torch.equal(q.indices, dist.argmin(-1))
    assert torch.allclose(q.commitment_loss, ((z - codes) ** 2).mean())
    assert torch.allclose(q.codebook_loss, q.commitment_loss)
    # straight-through: d quantized / d z is the identity
    weights = torch.randn(3, 5, 4)
    (q.quantized * weights).sum().backward()
    assert torch.allclose(z.grad, weights)
    assert vq.codebook.weight.grad is None or not vq.codebook.weight.grad.any()
    # the codebook learns only from the codebook loss, the encoder only from the commitment loss
    z.grad = None
    q = vq(z)
    q.codebook_loss.backward()
    assert z.grad is None or not z.grad.any()
    assert vq.codebook.weight.grad[q.indices.unique()].abs().sum() > 0


def test_codebook_init_from_data_puts_every_code_on_a_latent():
    vq = VectorQuantizer(size=8, dim=4)
    assert vq.codebook.weight.abs().max() <= 1 / 8          # the default init: a tiny ball at 0
    z = torch.randn(5, 3, 4) * 3.0                           # 15 latents, far outside it
    vq.init_from_data(z, torch.Generator().manual_seed(0))
    flat = z.reshape(-1, 4)
    codes = vq.codebook.weight
    matches = [int((flat - c).abs().sum(1).argmin()) for c in codes]
    assert all(torch.equal(codes[i], flat[j]) for i, j in enumerate(matches))
    assert len(set(matches)) == 8                            # distinct latents while there are enough
    few = torch.randn(3, 4)
    vq.init_from_data(few)                                   # fewer latents than codes: reused
    assert {tuple(c.tolist()) for c in vq.codebook.weight} == {tuple(r.tolist()) for r in few}
    with pytest.raises(ValueError, match="no latents"):
        vq.init_from_data(torch.zeros(0, 4))


def test_dead_codes_are_restarted_onto_latents_after_the_window():
    torch.manual_seed(0)
    vq = VectorQuantizer(size=6, dim=2).train()
    vq.codebook.weight.data = torch.tensor([[0.0, 0.0], [9.0, 9.0], [-9.0, 9.0], [9.0, -9.0], [-9, -9], [50, 50]])
    vq.restart_every = 2
    z = torch.tensor([[[0.1, 0.0], [0.0, 0.1], [8.9, 9.0]]])       # codes 0 and 1 chosen, 2..5 dead
    vq(z)
    assert vq.restarted == 0                                        # the window is not over yet
    vq(z)
    assert vq.restarted == 4
    moved = vq.codebook.weight[2:]
    assert all(any(torch.equal(c, row) for row in z[0]) for c in moved)    # each onto a latent
    assert torch.equal(vq.codebook.weight[1], torch.tensor([9.0, 9.0]))   # a used code stays
    vq.eval()
    vq(z), vq(z)
    assert vq.restarted == 4                                        # never outside training


def test_reconstruction_gradient_reaches_mformer_through_quantizer(lam):
    out = lam(lam.preprocess(_frames(0)), lam.preprocess(_frames(1)))
    out.reconstruction_loss.backward()  # reconstruction only: no direct path to z but the VQ's
    for name, module in (("mformer", lam.mformer), ("down_resampler", lam.down_resampler)):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name


def test_codebook_usage_batch_and_running(lam):
    x, y = lam.preprocess(_frames(0, n=6)), lam.preprocess(_frames(1, n=6))
    lam.eval()
    with torch.no_grad():
        out = lam(x, y)
    usage = lam.codebook_usage(out.indices)
    assert usage["active_batch"] == len(out.indices.unique())
    assert usage["active_running"] == 0  # eval passes are not counted
    assert 1.0 <= usage["perplexity_batch"] <= usage["active_batch"] + 1e-4
    lam.train()
    out1 = lam(x, y)
    out2 = lam(y, x)
    both = torch.cat([out1.indices, out2.indices]).unique()
    usage = lam.codebook_usage()
    assert usage["active_running"] == len(both)
    assert int(lam.quantizer.counts.sum()) == 2 * 6 * 8


def test_save_load_round_trip(lam, tmp_path):
    x, y = lam.preprocess(_frames(0)), lam.preprocess(_frames(1))
    lam.train()
    lam(x, y)
    save_lam(lam, tmp_path / "lam")
    loaded = load_lam(tmp_path / "lam")
    assert loaded.config == lam.config
    for (name, a), b in zip(lam.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    lam.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(lam(x, y).reconstruction, loaded(x, y).reconstruction)


def test_load_refuses_bad_directories(lam, tmp_path):
    with pytest.raises(LamLoadError, match="config.json is missing"):
        load_lam(tmp_path)
    path = save_lam(lam, tmp_path / "lam")
    meta = json.loads((path / "config.json").read_text())
    meta["config"]["latent_dim"] = 16
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(LamLoadError, match="has shape"):
        load_lam(path)
    meta["format_version"] = 99
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(LamLoadError, match="version 99"):
        load_lam(path)


def test_parameter_counts_on_meta_device():
    paper = count_parameters(LamConfig.from_preset("paper"))
    # ViT-MAE-Large's encoder (24 x 1024) is ~303 M parameters
    assert 300e6 < paper["encoder"] < 306e6
    assert paper["quantizer"] == 128 * 32
    assert paper["total"] == paper["trainable"] + paper["encoder"]
    tiny = count_parameters(LamConfig.from_preset("tiny"))
    assert tiny["trainable"] < paper["trainable"] / 100
