"""The latent report (lara/train/latent_report.py) on a tiny synthetic dataset with a fresh tiny LAM."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lara_g1.lara.data.samples import LaraSampleDataset
from lara_g1.lara.lam import LamConfig, LatentActionModel, save_lam
from lara_g1.lara.train.latent_report import (
    LatentSamples,
    choose_items,
    collect,
    latent_report,
    main,
    probe_r2,
    split_heldout,
    summarise,
    with_latent,
)
from lara_g1.lara.train.trainer import SUMMARY_NAME, TrainSettings, train
from tests.helpers.synthetic import write_synthetic_dataset

FIELDS = ("samples", "episodes", "codebook_size", "tokens", "codes_active", "perplexity", "z_dim",
          "z_spread", "z_abs_mean", "z_spread_ratio", "recon_mse", "copy_mse", "recon_ratio", "motion_dim",
          "motion_abs_mean", "probe_split", "probe_train", "probe_heldout", "probe_ridge", "probe_r2_z",
          "probe_r2_frame", "probe_r2_frame_z", "lam_offset")
OFFSET = 3


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "ds", episodes=12,
                                   frames_per_episode=8, seed=0, image_size=(64, 64))


@pytest.fixture(scope="module")
def dataset(root):
    return LaraSampleDataset(root, horizon=1, lam_offset=OFFSET, camera="head")


@pytest.fixture(scope="module")
def lam():
    torch.manual_seed(0)
    return LatentActionModel(LamConfig.from_preset("tiny"))


@pytest.fixture(scope="module")
def collected(lam, dataset):
    return collect(lam, dataset, samples=len(dataset))


def test_report_has_every_field_finite_and_json(lam, dataset):
    lam.train()
    counts = lam.quantizer.counts.clone()
    report = latent_report(lam, dataset, samples=40, seed=0)
    assert set(report) == set(FIELDS)
    for key, value in report.items():
        if key != "probe_split":
            assert isinstance(value, (int, float)) and math.isfinite(value), (key, value)
    assert report["samples"] == 40 and report["lam_offset"] == OFFSET
    assert 1 <= report["codes_active"] <= report["codebook_size"]
    assert 1.0 - 1e-9 <= report["perplexity"] <= report["codes_active"] + 1e-9
    assert report["tokens"] == 40 * lam.config.num_queries
    assert report["probe_train"] + report["probe_heldout"] == 40 and report["probe_split"] == "episode"
    assert report["z_spread"] > 0 and report["copy_mse"] > 0 and report["motion_abs_mean"] > 0
    json.loads(json.dumps(report))
    # the report leaves the LAM as it found it: mode and running code counts
    assert lam.training and torch.equal(lam.quantizer.counts, counts)


def test_perplexity_and_active_codes():
    def samples(indices):
        n = len(indices)
        return LatentSamples(z=np.random.default_rng(0).normal(size=(n, 3)), indices=np.asarray(indices),
                             frame_features=np.ones((n, 2)), motion=np.random.default_rng(1).normal(size=(n, 2)),
                             episodes=np.arange(n) // 2, recon_mse=np.ones(n), copy_mse=np.ones(n),
                             codebook_size=8)

    one = summarise(samples([[5, 5]] * 8))
    assert one["codes_active"] == 1 and one["perplexity"] == pytest.approx(1.0)
    four = summarise(samples([[0, 1], [2, 3]] * 4))
    assert four["codes_active"] == 4 and four["perplexity"] == pytest.approx(4.0)


def test_copy_baseline_and_reconstruction_are_direct_mses(lam, dataset, collected):
    items = choose_items(len(dataset), len(dataset), 0)
    rows = [dataset[int(i)] for i in items]
    frame_t = lam.preprocess(np.stack([r["image"] for r in rows]))
    frame_tk = lam.preprocess(np.stack([r["future_image"] for r in rows]))
    report = summarise(collected)
    assert report["copy_mse"] == pytest.approx(float(((frame_t - frame_tk) ** 2).mean()), rel=1e-5)
    lam.eval()
    with torch.no_grad():
        recon = float(lam(frame_t, frame_tk).reconstruction_loss)
    assert report["recon_mse"] == pytest.approx(recon, rel=1e-4)
    assert report["recon_ratio"] == pytest.approx(report["recon_mse"] / report["copy_mse"])
    # the target really is state[t + k] - state[t], clamped at the episode's end
    pos, t = dataset.locate(int(items[5]))
    future = dataset[int(items[5]) + min(OFFSET, int(dataset._lengths[pos]) - 1 - t)]
    np.testing.assert_allclose(collected.motion[5], future["state"] - rows[5]["state"], atol=1e-6)
    assert np.abs(collected.motion).max() > 0


def test_probe_reads_the_true_motion_and_not_a_constant(collected):
    truth = summarise(with_latent(collected, collected.motion))
    assert truth["probe_r2_z"] > 0.95
    constant = summarise(with_latent(collected, np.full_like(collected.z, 0.7)))
    assert constant["probe_r2_z"] <= 0.05
    assert constant["z_spread"] < 1e-12 and constant["z_spread_ratio"] < 1e-12
    # frame t + z: the true motion adds what frame t lacks; a constant z adds nothing
    assert truth["probe_r2_frame_z"] > truth["probe_r2_frame"] + 0.2 or truth["probe_r2_frame"] > 0.9
    assert constant["probe_r2_frame_z"] == pytest.approx(constant["probe_r2_frame"], rel=1e-3)
    assert collected.frame_features.shape[1] > collected.z.shape[1] // 8     # patch features, not pooled


def test_probe_r2_is_on_heldout_samples_only(collected):
    """Noise wider than the training split fits the training rows (almost) exactly; only a
    held-out R² shows that it carries nothing."""
    noise = np.random.default_rng(3).normal(size=(len(collected.z), 400))
    train, held, how = split_heldout(collected.episodes, 0.25, seed=0)
    assert how == "episode"
    assert probe_r2(noise, collected.motion, train, train) > 0.9  # in-sample: looks perfect
    assert summarise(with_latent(collected, noise))["probe_r2_z"] < 0.2


def test_split_holds_out_whole_episodes():
    episodes = np.repeat(np.arange(8), 10)
    train, held, how = split_heldout(episodes, 0.25, seed=1)
    assert how == "episode" and held.sum() == 20 and not (train & held).any()
    assert not set(episodes[train]) & set(episodes[held])
    train, held, how = split_heldout(np.zeros(20, int), 0.25, seed=1)
    assert how == "sample" and held.sum() == 5 and train.sum() == 15


def test_cli_prints_and_writes_json(lam, root, tmp_path, capsys):
    save_lam(lam, tmp_path / "run" / "lam")
    out = tmp_path / "report.json"
    assert main(["--lam", str(tmp_path / "run"), "--dataset", str(root), "--samples", "24",
                 "--lam-offset", str(OFFSET), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == set(FIELDS) and report["samples"] == 24 and report["lam_offset"] == OFFSET
    printed = capsys.readouterr().out
    assert "latent report: 24 samples" in printed and "probe R²" in printed


def test_lam_stage_summary_has_a_latent_section(root, tmp_path):
    out = train(TrainSettings(stage="lam", dataset=root, out=tmp_path / "lam_run", preset="tiny", steps=1,
                              batch_size=4, checkpoint_every=0, progress=False, lam_offset=OFFSET,
                              latent_samples=16))
    latent = json.loads((out / SUMMARY_NAME).read_text())["latent"]
    assert latent["samples"] == 16 and set(latent) == set(FIELDS)
