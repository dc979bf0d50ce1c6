"""The numpy pre/post-processing shared by every engine."""
from __future__ import annotations

import numpy as np
import pytest

from lara_g1.core.embodiment import load_embodiment
from lara_g1.core.observation import Observation
from lara_g1.lara.model import PolicyConfig
from lara_g1.lara.processing import (
    ByteTokenizer,
    FeatureStats,
    NormStats,
    ObservationError,
    Preprocessor,
    StatsError,
    center_crop,
    resize_bilinear,
)

G1 = load_embodiment("g1")


def _stats(seed: int = 0) -> NormStats:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(500, G1.dim)).astype(np.float32) * 0.3 + G1.default_pose
    data[:, 27] = 0.25  # a joint that never moved
    raw = {"min": data.min(0), "max": data.max(0), "mean": data.mean(0), "std": data.std(0),
           "q01": np.quantile(data, 0.01, axis=0), "q99": np.quantile(data, 0.99, axis=0)}
    return NormStats.from_dict({"observation.state": raw, "action": raw, "count": [500]}, G1.dim)


@pytest.fixture(scope="module")
def pre() -> Preprocessor:
    return Preprocessor(PolicyConfig.from_preset("tiny"), _stats())


def test_byte_tokenizer_is_deterministic_padded_and_truncated():
    tok = ByteTokenizer(8)
    ids, mask = tok.encode(["ab", "é", "a long instruction"])
    assert ids.dtype == np.int64 and ids.shape == (3, 8)
    assert ids[0].tolist() == [1, ord("a") + 3, ord("b") + 3, 2, 0, 0, 0, 0]
    assert ids[1, :4].tolist() == [1, 0xC3 + 3, 0xA9 + 3, 2]      # UTF-8 bytes of é
    assert ids[2].tolist()[-1] == 2 and (ids[2] > 0).all()         # cut, still ends in eos
    assert mask.tolist()[0] == [1, 1, 1, 1, 0, 0, 0, 0]
    assert np.array_equal(tok.encode(["ab"])[0], ids[:1])


def test_resize_bilinear_matches_known_values():
    img = np.array([[0, 100], [200, 255]], dtype=np.uint8)[..., None].repeat(3, axis=2)
    up = resize_bilinear(img, 4)[..., 0]
    # half-pixel centres: output x=1 samples input x=0.25
    np.testing.assert_allclose(up[0], [0, 25, 75, 100])
    np.testing.assert_allclose(up[:, 0], [0, 50, 150, 200])
    flat = np.full((480, 640, 3), 77, dtype=np.uint8)
    out = resize_bilinear(flat, 224)
    assert out.shape == (224, 224, 3) and out.dtype == np.float32 and np.all(out == 77)
    same = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    assert np.array_equal(resize_bilinear(same, 224), same.astype(np.float32))


def test_preprocessor_builds_the_model_inputs(pre):
    rng = np.random.default_rng(0)
    obs = [Observation({"head": rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)}, G1.default_pose.copy(),
                       "pick the cup"),
           Observation({"head": np.zeros((224, 224, 3), np.uint8)}, G1.default_pose.copy(), None)]
    batch = pre(obs)
    assert batch["pixel_values"].shape == (2, 3, 224, 224) and batch["pixel_values"].dtype == np.float32
    assert np.all(batch["pixel_values"][1] == -1.0)                  # black -> (0 - 0.5) / 0.5
    assert batch["input_ids"].shape == (2, 16) and batch["input_ids"].dtype == np.int64
    assert np.array_equal(batch["input_ids"][1], ByteTokenizer(16).encode(["do the task"])[0][0])  # default
    assert batch["attention_mask"].dtype == np.int64
    assert batch["state"].shape == (2, 64) and batch["state"].dtype == np.float32
    assert np.all(batch["state"][:, 28:] == 0) and np.all(np.abs(batch["state"]) <= 1)
    assert batch["embodiment_id"].tolist() == [G1.embodiment_id] * 2


def test_normalisation_round_trips_inside_the_quantile_range(pre):
    st = pre.stats.action
    rng = np.random.default_rng(1)
    x = st.q01 + rng.uniform(0, 1, size=(5, 8, 28)).astype(np.float32) * (st.q99 - st.q01)
    y = pre.normalize_actions(x)
    assert y.shape == (5, 8, 32) and np.all(y[..., 28:] == 0) and np.all(np.abs(y) <= 1)
    back = pre.postprocess(y)
    assert back.shape == (5, 8, 28) and back.dtype == np.float32
    np.testing.assert_allclose(back[..., :27], x[..., :27], atol=1e-5)
    np.testing.assert_allclose(back[..., 27], 0.25)                     # never-moved joint -> its value
    assert np.all(y[..., 27] == 0)
    # out-of-range model output is clipped to the demonstrated range
    wild = pre.postprocess(np.full((1, 8, 32), 3.0, np.float32))
    np.testing.assert_allclose(wild[0, 0, :27], st.q99[:27], atol=1e-6)


def test_bad_observations_are_refused_with_clear_messages(pre):
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ObservationError, match=r"no image from camera 'head' \(got \['wrist'\]\)"):
        pre([Observation({"wrist": img}, G1.default_pose)])
    with pytest.raises(ObservationError, match=r"must be uint8 \[H, W, 3\] RGB, got float32 \[10, 10, 3\]"):
        pre([Observation({"head": img.astype(np.float32)}, G1.default_pose)])
    with pytest.raises(ObservationError, match=r"observation 1: state must have shape \(28,\), got \[27\]"):
        pre([Observation({"head": img}, G1.default_pose), Observation({"head": img}, G1.default_pose[:27])])
    bad = G1.default_pose.copy()
    bad[3] = np.nan
    with pytest.raises(ObservationError, match=r"non-finite values at \[3\]"):
        pre([Observation({"head": img}, bad)])
    with pytest.raises(ObservationError, match="no observations"):
        pre([])


def test_stats_are_validated():
    good = FeatureStats.from_range(G1.lower, G1.upper).to_dict()
    with pytest.raises(StatsError, match=r"need 'state' \(or 'observation.state'\) and 'action'"):
        NormStats.from_dict({"action": good}, 28)
    with pytest.raises(StatsError, match=r"stats\['action'\]\['q99'\] has 27 values, the embodiment has 28"):
        NormStats.from_dict({"state": good, "action": {**good, "q99": good["q99"][:27]}}, 28)
    with pytest.raises(StatsError, match=r"stats\['state'\] is missing \['q01'\]"):
        NormStats.from_dict({"state": {k: v for k, v in good.items() if k != "q01"}, "action": good}, 28)
    swapped = {**good, "q01": good["q99"], "q99": good["q01"]}
    with pytest.raises(StatsError, match="q01 > q99 at dimensions"):
        NormStats.from_dict({"state": good, "action": swapped}, 28)
    nan = {**good, "mean": [float("nan")] * 28}
    with pytest.raises(StatsError, match="non-finite"):
        NormStats.from_dict({"state": nan, "action": good}, 28)


def test_limit_stats_map_the_joint_range_onto_unit_interval():
    pre = Preprocessor(PolicyConfig.from_preset("tiny"), NormStats.from_embodiment(G1))
    norm = pre.normalize_state(np.stack([G1.lower, G1.upper]))
    np.testing.assert_allclose(norm[:, :28], [[-1] * 28, [1] * 28], atol=1e-6)
    np.testing.assert_allclose(pre.postprocess(np.zeros((8, 32), np.float32)), np.tile((G1.lower + G1.upper) / 2, (8, 1)),
                               atol=1e-6)


def test_normalisation_modes_per_joint_group_follow_gr00t():
    """GR00T's modes per group: q99 (default), min_max, mean_std, binary; each inverts."""
    cfg = PolicyConfig.from_preset("tiny", normalization={"left_arm": "min_max", "right_arm": "mean_std",
                                                          "left_hand": "binary"})
    pre = Preprocessor(cfg, _stats())
    st = pre.stats.action
    x = np.array(G1.default_pose, np.float32) + 0.1
    x[14:20] = [0.2, 0.7, 0.5, 0.9, 0.0, 1.0]          # left hand: open fractions
    y = pre.normalize_actions(x)[:28]
    la, ra, lh, rh = slice(0, 7), slice(7, 14), slice(14, 20), slice(20, 26)
    np.testing.assert_allclose(y[la], np.clip(2 * (x[la] - st.min[la]) / (st.max[la] - st.min[la]) - 1, -1, 1),
                               rtol=1e-6)
    np.testing.assert_allclose(y[ra], (x[ra] - st.mean[ra]) / st.std[ra], rtol=1e-5)
    np.testing.assert_array_equal(y[lh], [0, 1, 0, 1, 0, 1])
    np.testing.assert_allclose(y[rh], np.clip(2 * (x[rh] - st.q01[rh]) / (st.q99[rh] - st.q01[rh]) - 1, -1, 1),
                               rtol=1e-6)
    back = pre.postprocess(np.pad(y, (0, 4))[None])[0]
    np.testing.assert_allclose(back[la], x[la], atol=1e-5)
    np.testing.assert_allclose(back[ra], x[ra], atol=1e-5)     # mean_std is not clipped
    np.testing.assert_array_equal(back[lh], [0, 1, 0, 1, 0, 1])
    # a mode for a group the embodiment does not have is refused, naming it
    bad = PolicyConfig.from_preset("tiny", normalization={"torso": "q99"})
    with pytest.raises(StatsError, match=r"\['torso'\].*left_arm"):
        Preprocessor(bad, _stats())


def test_center_crop_keeps_the_middle_as_torchvision_does():
    img = np.arange(480 * 640 * 3, dtype=np.int64).reshape(480, 640, 3).astype(np.uint8)
    out = center_crop(img, 0.95)
    assert out.shape == (456, 608, 3)                  # int(480 * .95), int(640 * .95)
    assert np.array_equal(out, img[12:468, 16:624])    # round((480 - 456) / 2), round((640 - 608) / 2)
    assert center_crop(img, 1.0) is img
    cfg = PolicyConfig.from_preset("tiny", image_crop_scale=0.5)
    pre = Preprocessor(cfg, _stats())
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[16:48, 16:48] = 255                          # the crop is all white
    px = pre.image({"head": frame})
    np.testing.assert_allclose(px, (1.0 - 0.5) / 0.5, rtol=1e-6)
