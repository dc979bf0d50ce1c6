"""lara-train end to end on a synthetic LeRobot dataset: learning, resume, CLI, bundle, LAM stage."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lara_g1.lara.bundle import load_bundle
from lara_g1.lara.lam import load_lam
from lara_g1.lara.train import trainer as trainer_module
from lara_g1.lara.train.checkpoint import CheckpointError, list_checkpoints
from lara_g1.lara.train.cli import main
from lara_g1.lara.train.trainer import LOG_NAME, TrainError, TrainSettings, train
from tests.helpers.synthetic import write_synthetic_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "ds", episodes=6,
                                   frames_per_episode=24, seed=0, image_size=(64, 64))


def _log(out) -> list[dict]:
    return [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]


def _settings(dataset, out, **kw) -> TrainSettings:
    base = {"stage": "joint", "dataset": dataset, "out": out, "preset": "tiny", "steps": 6, "batch_size": 4,
                "checkpoint_every": 0, "progress": False, "lam_offset": 4}
    base.update(kw)
    return TrainSettings(**base)


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~90 s on 2 idle cores; far longer on a shared, loaded machine
def test_tiny_preset_learns(dataset, tmp_path):
    """A learning test: the flow loss of the tiny preset, trained jointly (alignment and LAM
    on), falls at least 5x between the mean of the first and of the last 10 steps.

    The tiny DiT first fits the mean action (loss ~1.4 -> ~1.05) and then learns to carry the
    noisy action through to the velocity, which is where the loss keeps falling; hence a few
    hundred small steps (one loader worker overlaps the collation with the model's step).
    """
    out = train(_settings(dataset, tmp_path / "b", steps=400, batch_size=8, lr=1e-3,
                          num_workers=1))
    log = _log(out)
    assert [r["step"] for r in log] == list(range(400))
    first = np.mean([r["flow"] for r in log[:10]])
    last = np.mean([r["flow"] for r in log[-10:]])
    assert first > 5 * last, (first, last)
    # the alignment and the LAM reconstruction are optimised too
    assert np.mean([r["align"] for r in log[-10:]]) < 0.5 * np.mean([r["align"] for r in log[:10]])
    assert np.mean([r["lam"] for r in log[-10:]]) < 0.5 * np.mean([r["lam"] for r in log[:10]])


def test_resume_continues_identically(dataset, tmp_path, monkeypatch):
    straight = train(_settings(dataset, tmp_path / "a", steps=4))

    real_save = trainer_module.save_checkpoint

    def save_then_crash(out, step, *args, **kwargs):
        path = real_save(out, step, *args, **kwargs)
        if step == 2:
            raise KeyboardInterrupt("simulated kill after the step-2 checkpoint")
        return path

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(_settings(dataset, tmp_path / "b", steps=4, checkpoint_every=2))
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["step-0000002.pt"]
    with pytest.raises(TrainError, match="--resume"):
        train(_settings(dataset, tmp_path / "b", steps=4, checkpoint_every=2))
    with pytest.raises(CheckpointError, match="seed"):
        train(_settings(dataset, tmp_path / "b", steps=4, checkpoint_every=2, seed=1, resume=True))
    resumed = train(_settings(dataset, tmp_path / "b", steps=4, checkpoint_every=2, resume=True))

    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la, lb = load_file(straight / "lam/model.safetensors"), load_file(resumed / "lam/model.safetensors")
    for k in la:
        assert torch.equal(la[k], lb[k]), k
    log_a, log_b = _log(straight), _log(resumed)
    assert [r["step"] for r in log_b] == list(range(4))
    for ra, rb in zip(log_a, log_b):
        assert ra["loss"] == rb["loss"] and ra["flow"] == rb["flow"], ra["step"]


def test_cli_joint_writes_a_bundle_that_samples(dataset, tmp_path):
    out = tmp_path / "bundle"
    assert main(["joint", "--preset", "tiny", "--dataset", str(dataset), "--steps", "20",
                 "--out", str(out), "--batch-size", "4", "--no-progress"]) == 0
    bundle = load_bundle(out)
    frame = np.zeros((64, 64, 3), np.uint8)
    state = np.asarray(bundle.preprocessor.embodiment.default_pose, np.float32)
    chunk = bundle.sample_chunk(frame, state, "reach the red target with the left hand",
                                noise=np.zeros((8, 32), np.float32))
    assert chunk.shape == (8, 28) and chunk.dtype == np.float32 and np.isfinite(chunk).all()
    lam = load_lam(out / "lam")
    assert lam.config.latent_size == 256
    assert (out / "lam" / "alignment.safetensors").is_file()
    log = _log(out)
    assert len(log) == 20 and {"flow", "align", "lam", "codes_active"} <= set(log[0])
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps_run"] == 20 and summary["parameters"]["lam_trainable"] > 0
    # normalisation stats come from the dataset
    ds_stats = json.loads((dataset / "meta" / "stats.json").read_text())
    assert np.allclose(bundle.stats.action.q99, ds_stats["action"]["q99"], atol=1e-6)
    assert bundle.instructions == ["reach the red target with the left hand",
                                   "reach the blue target with the right hand"]


def test_lam_stage_then_frozen_lam_joint(dataset, tmp_path):
    lam_out = tmp_path / "lam_run"
    assert main(["lam", "--preset", "tiny", "--dataset", str(dataset), "--steps", "4",
                 "--out", str(lam_out), "--batch-size", "4", "--no-progress"]) == 0
    assert not (lam_out / "model.safetensors").exists()  # no policy in stage 1
    assert "flow" not in _log(lam_out)[0]
    pretrained = load_file(lam_out / "lam" / "model.safetensors")

    out = tmp_path / "frozen"
    assert main(["joint", "--preset", "tiny", "--dataset", str(dataset), "--steps", "3",
                 "--out", str(out), "--batch-size", "4", "--lam", str(lam_out), "--freeze-lam",
                 "--no-progress"]) == 0
    after = load_file(out / "lam" / "model.safetensors")
    for k in pretrained:  # a frozen LAM leaves training exactly as it came in
        assert torch.equal(pretrained[k], after[k]), k
    assert "align" in _log(out)[0]

    # post-training from the bundle: the LAM and the projection come along and train on
    post = tmp_path / "post"
    assert main(["joint", "--init", str(out), "--dataset", str(dataset), "--steps", "2",
                 "--out", str(post), "--batch-size", "4", "--no-progress"]) == 0
    assert load_bundle(post).config.preset == "tiny"
    moved = load_file(post / "lam" / "model.safetensors")
    assert any(not torch.equal(moved[k], after[k]) for k in after if k.startswith("mformer."))


def test_lam_stage_takes_action_free_video_too(dataset, tmp_path, capsys):
    video = write_synthetic_dataset(tmp_path / "video", episodes=3, frames_per_episode=10, seed=1, image_size=(64, 64))
    out = tmp_path / "lam_video"
    assert main(["lam", "--preset", "tiny", "--dataset", str(dataset), "--video", str(video), "--steps", "3",
                 "--out", str(out), "--batch-size", "4", "--no-progress"]) == 0
    assert "the LAM sees 174 frames (144 of" in capsys.readouterr().out
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["frames"] == {"dataset": 6 * 24, "video": 3 * 10}
    assert summary["settings"]["video"] == [str(video)]
    assert load_lam(out / "lam") is not None
    with pytest.raises(TrainError, match="belongs to the lam stage"):
        _settings(dataset, tmp_path / "j", video=[video])
    with pytest.raises(TrainError, match="is not a directory"):
        _settings(dataset, tmp_path / "l", stage="lam", video=[tmp_path / "nowhere"])


def test_only_a_fresh_lam_gets_its_codebook_from_the_data(dataset, tmp_path, monkeypatch):
    calls = []
    real = trainer_module._init_codebook
    monkeypatch.setattr(trainer_module, "_init_codebook", lambda lam, *a: calls.append(lam) or real(lam, *a))
    out = train(_settings(dataset, tmp_path / "fresh", stage="lam", steps=1))
    assert len(calls) == 1
    codebook = calls[0].quantizer.codebook.weight
    assert codebook.abs().max() > 1 / 128                    # no longer the default's tiny ball
    train(_settings(dataset, tmp_path / "given", steps=1, lam=out))      # a trained LAM keeps its codes
    assert len(calls) == 1


def test_codebook_restart_reaches_the_quantizer(dataset, tmp_path, monkeypatch):
    seen = []
    real = trainer_module._init_codebook
    monkeypatch.setattr(trainer_module, "_init_codebook", lambda lam, *a: seen.append(lam) or real(lam, *a))
    out = train(_settings(dataset, tmp_path / "r", stage="lam", steps=2, codebook_restart=1))
    assert seen[0].quantizer.restart_every == 1 and seen[0].quantizer.restarted > 0
    assert json.loads((out / "train_summary.json").read_text())["settings"]["codebook_restart"] == 1


def test_no_align_bundle_has_no_lam(dataset, tmp_path):
    out = train(_settings(dataset, tmp_path / "dit_only", steps=2, no_align=True))
    assert not (out / "lam").exists()
    assert "align" not in _log(out)[0] and "lam" not in _log(out)[0]


@pytest.mark.parametrize("argv, message", [
    (["joint", "--preset", "tiny", "--steps", "2", "--freeze-lam"], "--freeze-lam needs a trained LAM"),
    (["joint", "--preset", "tiny", "--steps", "2", "--no-align", "--freeze-lam"], "--no-align"),
    (["joint", "--steps", "2"], "--preset"),
    (["joint", "--preset", "tiny", "--steps", "0"], "--steps"),
])
def test_cli_refuses_bad_settings(dataset, tmp_path, capsys, argv, message):
    assert main(argv + ["--dataset", str(dataset), "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x" / "model.safetensors").exists()
