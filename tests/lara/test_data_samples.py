"""LaraSampleDataset: right frames, states and padded chunks across episode boundaries; the
synthetic dataset is valid and learnable."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lara_g1.core.embodiment import load_embodiment
from lara_g1.lara.data.format import DatasetFormatError
from lara_g1.lara.data.lerobot import LeRobotDataset
from lara_g1.lara.data.samples import LaraSampleDataset
from lara_g1.lara.data.validate import validate_dataset
from tests.helpers.data import LENGTHS, TASKS, action_of, state_of, write_known_dataset
from tests.helpers.synthetic import COLOURS, GAIN, goal_pose, write_synthetic_dataset
from tests.helpers.synthetic import TASKS as SYN_TASKS


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return write_known_dataset(tmp_path_factory.mktemp("samples") / "known")


def test_items_across_episode_boundaries(known):
    samples = LaraSampleDataset(known, horizon=8, lam_offset=3)
    frames = [LeRobotDataset(known).frames("head", e) for e in range(3)]
    assert len(samples) == sum(LENGTHS)
    for item_index in range(len(samples)):
        item = samples[item_index]
        e, t = item["episode_index"], item["frame_index"]
        n = LENGTHS[e]
        assert item_index == sum(LENGTHS[:e]) + t and 0 <= t < n
        assert item["instruction"] == TASKS[e]
        np.testing.assert_array_equal(item["state"], state_of(e, t))
        np.testing.assert_array_equal(item["image"], frames[e][t])
        np.testing.assert_array_equal(item["future_image"], frames[e][min(t + 3, n - 1)])
        valid = [s for s in range(t, t + 8) if s < n]
        assert item["action_mask"].tolist() == [True] * len(valid) + [False] * (8 - len(valid))
        expected = [action_of(e, min(s, n - 1)) for s in range(t, t + 8)]
        np.testing.assert_array_equal(item["actions"], expected)  # padding repeats the last
        assert item["actions"].dtype == np.float32 and item["image"].dtype == np.uint8

    # the chunk at the end of episode 0 never contains episode 1's actions
    last_of_0 = samples[LENGTHS[0] - 1]
    assert last_of_0["action_mask"].sum() == 1
    assert (last_of_0["actions"] < 100).all()  # episode 1's values are >= 100


def test_auto_frame_cache_decodes_each_episode_once(known, monkeypatch):
    """Training samples uniformly over episodes: with the cache sized to the dataset
    (frame_cache_bytes=None), each episode's video is decoded once, however the items interleave."""
    import lara_g1.lara.data.lerobot as lerobot
    import lara_g1.lara.data.samples as samples_mod

    monkeypatch.setattr(samples_mod, "DEFAULT_FRAME_CACHE_BYTES", 1024)  # smaller than one episode
    real = lerobot.read_frames
    order = np.random.default_rng(0).permutation(sum(LENGTHS))

    def decodes(cache_bytes):
        decoded = []
        monkeypatch.setattr(lerobot, "read_frames", lambda path, *a, **k: decoded.append(path) or real(path, *a, **k))
        samples = LaraSampleDataset(known, horizon=4, lam_offset=2, frame_cache_bytes=cache_bytes)
        for _ in range(2):
            for i in order:
                samples[int(i)]
        return len(decoded)

    assert decodes(None) == len(LENGTHS)
    assert decodes(1024) == 2 * len(order)  # too small a cache: a seek-and-decode per item


def test_auto_frame_cache_falls_back_to_the_default_when_memory_is_short(known, monkeypatch):
    import lara_g1.lara.data.samples as samples_mod

    monkeypatch.setattr(samples_mod, "available_memory_bytes", lambda: 1000)
    samples = LaraSampleDataset(known, horizon=4, lam_offset=2, frame_cache_bytes=None)
    assert samples.dataset.frame_cache_bytes == samples_mod.DEFAULT_FRAME_CACHE_BYTES


def test_a_subset_of_episodes(known):
    samples = LaraSampleDataset(known, horizon=3, lam_offset=1, episodes=[2, 0])
    assert len(samples) == LENGTHS[2] + LENGTHS[0]
    first, later = samples[0], samples[LENGTHS[2]]
    assert (first["episode_index"], first["frame_index"]) == (2, 0)
    assert (later["episode_index"], later["frame_index"]) == (0, 0)
    np.testing.assert_array_equal(later["state"], state_of(0, 0))
    np.testing.assert_array_equal(samples[LENGTHS[2] - 1]["actions"], [action_of(2, 19)] * 3)
    with pytest.raises(IndexError, match="episode 5 out of range"):
        LaraSampleDataset(known, horizon=3, lam_offset=1, episodes=[5])
    with pytest.raises(ValueError, match="without repeats"):
        LaraSampleDataset(known, horizon=3, lam_offset=1, episodes=[1, 1])


def test_batches_through_a_dataloader(known):
    samples = LaraSampleDataset(known, horizon=4, lam_offset=0)
    batch = next(iter(torch.utils.data.DataLoader(samples, batch_size=5, shuffle=False)))
    assert batch["image"].shape == (5, 48, 64, 3) and batch["image"].dtype == torch.uint8
    assert batch["actions"].shape == (5, 4, 28) and batch["action_mask"].dtype == torch.bool
    assert torch.equal(batch["image"], batch["future_image"])  # lam_offset 0: the same frame
    assert batch["instruction"] == [TASKS[0]] * 5
    assert samples.stats["action"]["q99"].shape == (28,)


def test_bad_arguments(known):
    with pytest.raises(ValueError, match="horizon"):
        LaraSampleDataset(known, horizon=0, lam_offset=1)
    with pytest.raises(ValueError, match="lam_offset"):
        LaraSampleDataset(known, horizon=8, lam_offset=-1)
    with pytest.raises(KeyError, match="no camera 'wrist'"):
        LaraSampleDataset(known, horizon=8, lam_offset=1, camera="wrist")
    with pytest.raises(IndexError):
        LaraSampleDataset(known, horizon=8, lam_offset=1)[sum(LENGTHS)]
    assert len(LaraSampleDataset(known, horizon=8, lam_offset=1, embodiment="g1")) == sum(LENGTHS)
    g1 = load_embodiment("g1")
    swapped = dataclasses.replace(g1, joint_names=(g1.joint_names[7:14] + g1.joint_names[:7]
                                                   + g1.joint_names[14:]))
    with pytest.raises(DatasetFormatError, match="value 0 is 'left_shoulder_pitch', embodiment "
                                                 "'g1' has 'right_shoulder_pitch'"):
        LaraSampleDataset(known, horizon=8, lam_offset=1, embodiment=swapped)


def test_synthetic_dataset_is_valid_and_actions_follow_image_and_state(tmp_path):
    root = write_synthetic_dataset(tmp_path / "syn", episodes=4, frames_per_episode=24, seed=3)
    assert validate_dataset(root) == []
    ds = LeRobotDataset(root)
    emb = load_embodiment("g1")
    assert ds.num_episodes == 4 and ds.tasks == list(SYN_TASKS)
    firsts = []
    for e in range(4):
        ep = ds.episode(e)
        side = SYN_TASKS.index(ep.task)
        # the state follows the actions
        np.testing.assert_allclose(ep.states[1:], ep.actions[:-1], atol=1e-6)
        # the action moves the state towards one goal pose, fixed for the episode
        goal = ep.states + (ep.actions - ep.states) / GAIN
        np.testing.assert_allclose(goal, np.broadcast_to(goal[0], goal.shape), atol=1e-3)
        np.testing.assert_allclose(goal[0], emb.clip(goal[0]), atol=1e-6)
        # the target in the image has the task's colour
        frame = ds.frames("head", e)[0].astype(int)
        colour = np.array(COLOURS[side])
        assert (np.abs(frame - colour).sum(-1) < 60).sum() >= 9
        firsts.append(goal[0])
    assert not np.allclose(firsts[0], firsts[2]), "targets (and goals) differ between episodes"
    assert goal_pose(emb, 0, (0.5, 0.5)).shape == (28,)
