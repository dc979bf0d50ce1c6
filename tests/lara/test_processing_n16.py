"""GR00T N1.6's state encodings and relative actions through our Preprocessor, against the fixture
(tests/data/gr00t_n16_tiny/processor/README.md: GR00T's own processor and ``decode_action``).

The fixture's ``new_embodiment`` is a test embodiment loaded by path
(tests/data/embodiment/gr00t_n16_tiny.yaml): left_arm 5 (sin/cos state, RELATIVE action),
gripper 2 (min/max), head 2 (mean/std); horizon 16, of which the first 8 steps are served.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from lara_g1.core.embodiment import load_embodiment
from lara_g1.core.errors import ConfigError
from lara_g1.lara.model import PolicyConfig
from lara_g1.lara.processing import NormStats, Preprocessor, StatsError

DATA = Path(__file__).resolve().parents[1] / "data"
FIXTURE = DATA / "gr00t_n16_tiny"
EMBODIMENT = str(DATA / "embodiment" / "gr00t_n16_tiny.yaml")
KEYS = ("left_arm", "gripper", "head")      # GR00T's state and action key order = our group order
TOLERANCE = 1e-6


def _config(**overrides) -> PolicyConfig:
    base = {"embodiment": EMBODIMENT, "horizon": 16, "action_steps": 8, "max_state_dim": 28,
            "max_action_dim": 20, "normalization": {"left_arm": "sin_cos", "gripper": "min_max", "head": "mean_std"},
            "relative_action_groups": ["left_arm"]}
    return PolicyConfig.from_preset("tiny", **{**base, **overrides})


def _fixture_stats() -> dict:
    """The fixture's statistics.json (new_embodiment) as our stats.json: per-key vectors concatenated in
    group order, the per-step relative statistics under ``relative``."""
    raw = json.loads((FIXTURE / "statistics.json").read_text())["new_embodiment"]
    out = {part: {stat: np.concatenate([raw[part][k][stat] for k in KEYS]).tolist()
                  for stat in ("min", "max", "mean", "std", "q01", "q99")} for part in ("state", "action")}
    out["relative"] = raw["relative_action"]
    return out


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    return load_file(str(FIXTURE / "processor" / "expected.safetensors"))


@pytest.fixture(scope="module")
def pre() -> Preprocessor:
    emb = load_embodiment(EMBODIMENT)
    return Preprocessor(_config(), NormStats.from_dict(_fixture_stats(), emb.dim))


def _raw_state(expected) -> np.ndarray:
    """The raw states [B, 9] in group order (the fixture's one state step)."""
    return np.concatenate([expected[f"raw.state.{k}"][:, -1] for k in KEYS], axis=-1)


def _split(actions: np.ndarray, pre: Preprocessor) -> dict[str, np.ndarray]:
    return {k: actions[..., pre.embodiment.group(k).slice] for k in KEYS}


def _max_errors(got: dict[str, np.ndarray], expected, prefix: str) -> dict[str, float]:
    errors = {}
    for k in KEYS:
        want = expected[f"{prefix}.{k}"]
        assert got[k].shape == want.shape, (k, got[k].shape, want.shape)
        errors[k] = float(np.abs(got[k] - want).max())
    return errors


def test_a_test_embodiment_loads_by_path():
    emb = load_embodiment(EMBODIMENT)
    assert emb.name == "gr00t_n16_tiny" and emb.embodiment_id == 10 and emb.dim == 9
    assert [(g.name, g.size) for g in emb.groups] == [("left_arm", 5), ("gripper", 2), ("head", 2)]
    assert load_embodiment("g1").dim == 28          # bundled names still load by name


def test_state_matches_gr00t_n16s_processor(pre, expected):
    state = pre.normalize_state(_raw_state(expected))[:, None]    # [B, 1, 28]: one state step
    assert pre.state_width == 14 and state.shape == expected["state"].shape == (2, 1, 28)
    assert state.dtype == np.float32
    error = float(np.abs(state - expected["state"]).max())
    assert error <= TOLERANCE, error
    # the per-key parts, as GR00T lays them out: sin/cos doubles left_arm's width
    for k, (start, stop) in {"left_arm": (0, 10), "gripper": (10, 12), "head": (12, 14)}.items():
        np.testing.assert_allclose(state[..., start:stop], expected[f"state_normalized.{k}"], atol=TOLERANCE)
    assert np.all(state[..., 14:] == 0)


def test_decode_matches_gr00t_n16s_decode_action(pre, expected):
    actions = pre.postprocess(expected["decode_in_normalized"], _raw_state(expected))
    assert actions.shape == (2, 8, 9) and actions.dtype == np.float32     # the first action_steps steps
    errors = _max_errors(_split(actions, pre), expected, "decode_out")
    assert max(errors.values()) <= TOLERANCE, errors


def test_end_to_end_actions_decode_as_gr00t_n16s_policy(pre, expected):
    actions = pre.postprocess(expected["e2e_actions_normalized"], _raw_state(expected))
    errors = _max_errors(_split(actions, pre), expected, "e2e_actions")
    assert max(errors.values()) <= TOLERANCE, errors


def test_decoding_without_adding_the_state_back_fails_the_fixture(pre, expected, monkeypatch):
    """The check has teeth: a decode that forgets the relative group's state misses by far."""
    state = _raw_state(expected)
    # the relative group decoded against a zero state: the un-normalised delta alone
    wrong = pre.postprocess(expected["decode_in_normalized"], np.zeros_like(state))
    errors = _max_errors(_split(wrong, pre), expected, "decode_out")
    assert errors["left_arm"] > 0.1 and errors["gripper"] <= TOLERANCE and errors["head"] <= TOLERANCE
    # and a preprocessor that does not treat left_arm as relative at all (absolute min/max) misses too
    absolute = Preprocessor(_config(relative_action_groups=[]), pre.stats)
    errors = _max_errors(_split(absolute.postprocess(expected["decode_in_normalized"]), pre), expected, "decode_out")
    assert errors["left_arm"] > 0.1


def test_relative_targets_round_trip_and_need_the_state(pre, expected):
    state = _raw_state(expected)
    chunk = pre.postprocess(expected["decode_in_normalized"], state)          # [2, 8, 9], inside the ranges
    normalized = pre.normalize_actions(chunk, state)
    assert normalized.shape == (2, 8, 20) and np.all(normalized[..., 9:] == 0)
    clipped = np.clip(expected["decode_in_normalized"][:, :8, :9], -1, 1)
    arm, grip = pre.embodiment.group("left_arm").slice, pre.embodiment.group("gripper").slice
    np.testing.assert_allclose(normalized[..., arm], clipped[..., arm], atol=2e-5)
    np.testing.assert_allclose(normalized[..., grip][..., 0], clipped[..., grip][..., 0], atol=2e-5)
    with pytest.raises(ValueError, match=r"relative action groups \['left_arm'\] need the raw state"):
        pre.postprocess(expected["decode_in_normalized"])
    with pytest.raises(ValueError, match=r"normalize_actions: .*need the raw state"):
        pre.normalize_actions(chunk)
    with pytest.raises(ValueError, match=r"state must have shape \[2, 9\]"):
        pre.postprocess(expected["decode_in_normalized"], state[:1])
    # more steps than the relative statistics cover
    with pytest.raises(StatsError, match="cover 8"):
        pre.normalize_actions(np.zeros((2, 9, 9), np.float32), state)


def test_configs_that_do_not_fit_are_refused(pre):
    stats = pre.stats
    with pytest.raises(ConfigError, match=r"encoded state is 14 wide .* max_state_dim is 12"):
        Preprocessor(_config(max_state_dim=12), stats)
    with pytest.raises(ConfigError, match=r"relative_action_groups names joint groups \['torso'\]"):
        Preprocessor(_config(relative_action_groups=["torso"]), stats)
    no_relative = NormStats(state=stats.state, action=stats.action)
    with pytest.raises(StatsError, match="no per-step relative statistics"):
        Preprocessor(_config(), no_relative)
    with pytest.raises(StatsError, match=r"needs \[>= 16, 5\]"):
        Preprocessor(_config(action_steps=None), stats)          # all 16 steps served, stats cover 8


def test_relative_stats_round_trip_through_stats_json(pre):
    raw = pre.stats.to_dict()
    assert list(raw["relative"]) == ["left_arm"] and np.shape(raw["relative"]["left_arm"]["min"]) == (8, 5)
    again = NormStats.from_dict(json.loads(json.dumps(raw)), 9)
    for key in ("min", "max", "q01", "q99"):
        np.testing.assert_array_equal(getattr(again.relative["left_arm"], key), getattr(pre.stats.relative["left_arm"], key))
    without = NormStats(state=pre.stats.state, action=pre.stats.action).to_dict()
    assert "relative" not in without                              # old bundles' stats.json: unchanged
    with pytest.raises(StatsError, match=r"\[steps, joints\] array"):
        NormStats.from_dict({**raw, "relative": {"left_arm": {**raw["relative"]["left_arm"], "min": [1.0] * 5}}}, 9)
    with pytest.raises(StatsError, match=r"has shape \[8, 4\], expected \[8, 5\]"):
        bad = {**raw["relative"]["left_arm"], "max": [row[:4] for row in raw["relative"]["left_arm"]["max"]]}
        NormStats.from_dict({**raw, "relative": {"left_arm": bad}}, 9)


def test_untrained_stats_cover_relative_groups():
    emb = load_embodiment(EMBODIMENT)
    stats = NormStats.from_embodiment(emb, ["left_arm"], steps=16)
    assert stats.relative["left_arm"].min.shape == (16, 5)
    np.testing.assert_allclose(stats.relative["left_arm"].max[0], emb.upper[:5] - emb.lower[:5])
    pre = Preprocessor(_config(action_steps=None), stats)
    chunk = pre.postprocess(np.zeros((1, 16, 20), np.float32), np.full((1, 9), 0.5, np.float32))
    np.testing.assert_allclose(chunk[0, :, :5], 0.5, atol=1e-6)      # a zero delta keeps the arm where it is


# ------------------------------------------------------------------ training and serving, on the G1

G1_N16 = {"normalization": {"left_arm": "sin_cos", "right_arm": "sin_cos"},
          "relative_action_groups": ["left_arm", "right_arm"]}


def test_relative_stats_cover_the_samplers_chunks(tmp_path):
    """Per-step stats of a[t + k] - s[t] equal those of the dataset's own samples (chunks clamped at
    the episode's end)."""
    from lara_g1.lara.data.samples import LaraSampleDataset
    from tests.helpers.synthetic import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path / "ds", episodes=2, frames_per_episode=10, image_size=(32, 32))
    ds = LaraSampleDataset(root, horizon=4, lam_offset=1)
    arm = load_embodiment("g1").group("left_arm").slice
    got = ds.relative_action_stats(arm)
    deltas = np.stack([ds[i]["actions"][:, arm] - ds[i]["state"][arm] for i in range(len(ds))])   # [N, 4, 7]
    assert got["min"].shape == (4, 7) and got["count"].tolist() == [20]
    for key, fn in (("min", np.min), ("max", np.max), ("mean", np.mean)):
        np.testing.assert_allclose(got[key], fn(deltas.astype(np.float64), axis=0), atol=1e-6)
    np.testing.assert_allclose(got["q99"], np.quantile(deltas.astype(np.float64), 0.99, axis=0), atol=1e-6)


def test_training_with_relative_groups_gives_finite_losses_and_a_servable_bundle(tmp_path):
    from lara_g1.lara.bundle import create_random_bundle, load_bundle
    from lara_g1.lara.train.trainer import TrainSettings, train
    from tests.helpers.synthetic import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path / "ds", episodes=2, frames_per_episode=12, image_size=(64, 64))
    init = create_random_bundle(tmp_path / "init", "tiny", seed=0, **G1_N16)
    out = train(TrainSettings(stage="joint", dataset=root, out=tmp_path / "out", init=init, steps=2, batch_size=4,
                              no_align=True, checkpoint_every=0, progress=False))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(r["loss"]) and np.isfinite(r["flow"]) for r in log)
    stats = json.loads((out / "stats.json").read_text())
    assert sorted(stats["relative"]) == ["left_arm", "right_arm"]
    assert np.shape(stats["relative"]["left_arm"]["min"]) == (8, 7)          # [horizon, group width]
    bundle = load_bundle(out)
    g1 = load_embodiment("g1")
    chunk = bundle.sample_chunk(np.zeros((64, 64, 3), np.uint8), g1.default_pose, noise=np.zeros((8, 32), np.float32))
    assert chunk.shape == (8, 28) and np.all(np.isfinite(chunk))


def test_served_chunks_have_action_steps_and_decode_against_the_state(tmp_path):
    """action_steps: engines and the server hand out the first steps (the noise keeps the horizon);
    relative groups move with the observation's state."""
    import torch

    from lara_g1.core.observation import Observation, make_noise
    from lara_g1.lara.bundle import create_random_bundle, load_bundle
    from lara_g1.runtime.client import PolicyClient
    from lara_g1.runtime.engines import load_engine
    from lara_g1.runtime.server import PolicyServer

    path = create_random_bundle(tmp_path / "b", "tiny", seed=0, action_steps=3, **G1_N16)
    g1 = load_embodiment("g1")
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    states = np.stack([g1.default_pose, g1.default_pose + 0.1]).astype(np.float32)
    obs = [Observation({"head": image}, s) for s in states]
    noise = make_noise(2, 8, 32, seed=3)
    bundle = load_bundle(path)
    engine = load_engine(path, "torch")
    try:
        assert engine.metadata["horizon"] == 8 and engine.metadata["action_steps"] == 3
        got = engine.infer(obs, noise=noise).actions
        assert got.shape == (2, 3, 28)
        np.testing.assert_allclose(got, bundle.infer(obs, noise), atol=1e-5)
        # the same model output, decoded against another state, moves the relative groups by as much
        inputs = {k: torch.from_numpy(v) for k, v in bundle.preprocessor(obs).items()}
        with torch.inference_mode():
            raw = bundle.policy(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"], inputs["state"],
                                inputs["embodiment_id"], torch.from_numpy(noise)).numpy()
        assert raw.shape == (2, 8, 32)                                  # the model's chunk: the whole horizon
        shifted = bundle.preprocessor.postprocess(raw, states + 0.05)
        arms = np.r_[g1.group("left_arm").slice, g1.group("right_arm").slice]
        np.testing.assert_allclose(shifted[..., arms] - got[..., arms], 0.05, atol=1e-5)
        np.testing.assert_allclose(shifted[..., 14:], got[..., 14:], atol=1e-6)
        with PolicyServer(engine, "tcp://127.0.0.1:*") as server, PolicyClient(server.address, timeout_s=60) as c:
            assert c.metadata()["action_horizon"] == 3
            reply = c.infer(states[0], {"head": image}, noise_seed=1)
            assert reply.actions.shape == (3, 28) and np.all(np.isfinite(reply.actions))
    finally:
        engine.close()
