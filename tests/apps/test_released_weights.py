"""The released-weights path end to end on the fixture-sized LARA checkpoint:
lara-import gr00t -> lara-train joint --init (frozen backbone, the imported LAM and alignment)
-> lara-export -> lara-serve (ONNX Runtime), each through its command-line entry point."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lara_g1.core.embodiment import load_embodiment
from lara_g1.core.observation import make_noise
from lara_g1.lara.bundle import load_bundle
from lara_g1.lara.checkpoints.cli import main as lara_import
from lara_g1.lara.train.cli import main as lara_train
from lara_g1.policy_export.cli import main as lara_export
from lara_g1.runtime.client import PolicyClient
from tests.helpers.eagle import write_gr00t_assets
from tests.helpers.gr00t import LAM, write_checkpoint
from tests.helpers.serve import lara_serve
from tests.helpers.synthetic import write_synthetic_dataset


@pytest.fixture(scope="module")
def post_trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    ckpt = write_checkpoint(root / "ckpt", "lara", sharded=True, bf16=True)
    assets = write_gr00t_assets(root / "assets")
    assert lara_import(["gr00t", str(ckpt), "--out", str(root / "imported"), "--assets", str(assets),
                        "--lam-encoder", str(LAM / "vit_mae"), "--no-progress"]) == 0
    dataset = write_synthetic_dataset(root / "demos", episodes=2, frames_per_episode=24, image_size=(64, 64))
    assert lara_train(["joint", "--init", str(root / "imported"), "--dataset", str(dataset), "--out",
                       str(root / "post"), "--steps", "3", "--batch-size", "2", "--lam-offset", "4",
                       "--no-progress", "--device", "cpu"]) == 0
    return root


def test_post_training_keeps_the_backbone_and_trains_head_lam_and_alignment(post_trained, capsys):
    imported = load_file(str(post_trained / "imported" / "model.safetensors"))
    trained = load_file(str(post_trained / "post" / "model.safetensors"))
    assert imported.keys() == trained.keys()
    backbone = [k for k in imported if k.startswith("backbone.")]
    assert backbone and all(torch.equal(imported[k], trained[k]) for k in backbone)          # frozen
    assert not torch.equal(imported["head.dit.blocks.0.attn.to_q.weight"], trained["head.dit.blocks.0.attn.to_q.weight"])
    summary = json.loads((post_trained / "post" / "train_summary.json").read_text())
    params = summary["parameters"]
    assert params["lam"] > 0 and params["alignment"] == 16 * 256 + 256
    assert params["policy_trainable"] == params["policy"] - sum(imported[k].numel() for k in backbone)
    last = summary["last"]
    assert np.isfinite([last["flow"], last["align"], last["lam"]]).all()
    # the post-trained bundle carries the data's statistics, the imported LAM and the alignment
    bundle = load_bundle(post_trained / "post")
    assert not bundle.extra.get("untrained_stats")
    assert (post_trained / "post" / "lam" / "alignment.safetensors").is_file()
    assert json.loads((post_trained / "post" / "lam" / "config.json").read_text())["class"].endswith(
        "MotoLatentActionModel")


def test_post_trained_import_exports_and_serves(post_trained):
    bundle_dir = post_trained / "post"
    assert lara_export([str(bundle_dir), "--onnx", "--seed", "0"]) == 0
    bundle = load_bundle(bundle_dir)
    embodiment = load_embodiment("g1")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    state = embodiment.default_pose.astype(np.float32)
    with lara_serve(bundle_dir, "ort") as (_, address), PolicyClient(address, timeout_s=30) as client:
        reply = client.infer(state, {"head": image}, "pick up the red cube", noise_seed=7)
    assert reply.actions.shape == (bundle.config.horizon, embodiment.dim)
    noise = make_noise(1, bundle.config.horizon, bundle.config.max_action_dim, seed=7)
    expected = bundle.sample_chunk(image, state, "pick up the red cube", noise=noise)
    assert np.abs(reply.actions - expected).max() < 1e-4
