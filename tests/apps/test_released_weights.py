"""The released-weights path end to end on the fixture-sized checkpoints, each step through its
command-line entry point: lara-import gr00t -> lara-train joint --init (frozen backbone, a LAM and
the alignment) -> lara-export -> lara-serve (ONNX Runtime). The LARA release (GR00T N1.5) with its
own LAM; GR00T N1.6 with the LARA release's LAM, asked by a GR00T N1.6 client."""
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
from tests.helpers.eagle import write_gr00t_assets, write_gr00t_n16_assets
from tests.helpers.gr00t import DATA, LAM, N16, write_checkpoint
from tests.helpers.gr00t_client import Gr00tClient
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


# --- GR00T N1.6 + LARA (the paper's GR00T-N1.6-LARA recipe), on the fixture's own joint layout ----------

N16_EMBODIMENT = str(DATA / "embodiment" / "gr00t_n16_tiny.yaml")


def _n16_demos(root, episodes: int = 2, frames: int = 20):
    """Demonstrations in the fixture embodiment's layout (9 joints), camera 40 x 60 as the import says."""
    from lara_g1.lara.data.writer import LeRobotWriter

    emb = load_embodiment(N16_EMBODIMENT)
    rng = np.random.default_rng(0)
    with LeRobotWriter(root, fps=30, cameras={"head": (40, 60)}, embodiment=emb, gop=10) as writer:
        for _ in range(episodes):
            writer.start_episode("pick up the red cube")
            state = emb.default_pose.astype(np.float32)
            for t in range(frames):
                action = emb.clip(state + rng.normal(0, 0.05, emb.dim)).astype(np.float32)
                image = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
                writer.add_frame(state, action, {"head": image}, timestamp=t / 30)
                state = action
            writer.save_episode()
    return root


@pytest.fixture(scope="module")
def n16_post_trained(tmp_path_factory):
    from lara_g1.lara.lam import save_lam
    from lara_g1.lara.lam.moto import load_moto_tokenizer

    root = tmp_path_factory.mktemp("n16-released")
    assets = write_gr00t_n16_assets(root / "assets")
    assert lara_import(["gr00t", str(N16), "--out", str(root / "imported"), "--assets", str(assets),
                        "--embodiment", N16_EMBODIMENT, "--camera-size", "40x60", "--max-text-len", "11",
                        "--no-progress"]) == 0
    lam = save_lam(load_moto_tokenizer(LAM / "latent_motion_tokenizer", LAM / "vit_mae"), root / "lam")
    demos = _n16_demos(root / "demos")
    assert lara_train(["joint", "--init", str(root / "imported"), "--dataset", str(demos), "--lam", str(lam),
                       "--out", str(root / "post"), "--steps", "2", "--batch-size", "2", "--lam-offset", "4",
                       "--no-progress", "--device", "cpu"]) == 0
    assert lara_export([str(root / "post"), "--onnx", "--seed", "0"]) == 0
    return root


def test_n16_post_trained_with_lara_serves_a_gr00t_n16_client(n16_post_trained):
    post = n16_post_trained / "post"
    summary = json.loads((post / "train_summary.json").read_text())
    assert summary["parameters"]["alignment"] == 32 * 256 + 256     # width 32 -> 8 x 32 latent
    assert np.isfinite(summary["last"]["align"])
    stats = json.loads((post / "stats.json").read_text())
    assert np.array(stats["relative"]["left_arm"]["min"]).shape == (16, 5)   # per-step, from the demos
    bundle = load_bundle(post)
    emb = bundle.preprocessor.embodiment
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (2, 1, 40, 60, 3), dtype=np.uint8)
    state = np.stack([emb.default_pose, emb.default_pose + 0.1]).astype(np.float32)[:, None]   # [B, T, 9]
    obs = {"video": {"head": image},
           "state": {g.name: state[..., g.slice] for g in emb.groups},
           "language": {"annotation.human.task_description": [["pick up the red cube"]] * 2}}
    with lara_serve(post, "ort") as (_, address):
        client = Gr00tClient(address)
        try:
            action, info = client.get_action(obs, options={"noise_seed": 5})
        finally:
            client.close()
    assert set(action) == {g.name for g in emb.groups}
    assert all(action[g.name].shape == (2, 8, g.size) for g in emb.groups)       # the served 8 of 16 steps
    chunk = np.concatenate([action[g.name] for g in emb.groups], axis=-1)
    expected = bundle.sample_chunk(image[0, 0], state[0, 0], "pick up the red cube",
                                   noise=make_noise(1, bundle.config.horizon, bundle.config.max_action_dim, seed=5))
    assert np.abs(chunk[0] - expected).max() < 1e-4
