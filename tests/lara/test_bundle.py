"""The policy bundle: round trip, sampling, and refusal of broken or mismatched bundles."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from lara_g1.core.embodiment import load_embodiment
from lara_g1.lara.bundle import BundleError, create_random_bundle, load_bundle, read_bundle_config, save_bundle
from lara_g1.lara.model import LaraPolicy, PolicyConfig
from lara_g1.lara.processing import NormStats

G1 = load_embodiment("g1")


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return create_random_bundle(tmp_path_factory.mktemp("bundles") / "tiny", preset="tiny", seed=0)


@pytest.fixture()
def broken(bundle_dir, tmp_path):
    """A fresh copy of the bundle to damage."""
    path = tmp_path / "copy"
    shutil.copytree(bundle_dir, path)
    return path


def _frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (480, 640, 3), dtype=np.uint8)


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((8, 32), dtype=np.float32)


def _edit_config(path, **changes):
    raw = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        target = raw
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    (path / "config.json").write_text(json.dumps(raw))


def test_random_bundle_samples_g1_chunks(bundle_dir):
    bundle = load_bundle(bundle_dir)
    assert bundle.model_id.startswith("lara-tiny-") and not bundle.policy.training
    chunk = bundle.sample_chunk(_frame(), G1.default_pose, "pick up the cup", noise=_noise(1))
    assert chunk.shape == (8, 28) and chunk.dtype == np.float32
    assert G1.within_limits(chunk, tol=1e-5)                      # stats = joint limits
    again = bundle.sample_chunk(_frame(), G1.default_pose, "pick up the cup", noise=_noise(1)[None])
    assert np.array_equal(chunk, again)                            # same noise, same chunk
    other = bundle.sample_chunk(_frame(), G1.default_pose, "pick up the cup", noise=_noise(2))
    assert np.abs(other - chunk).max() > 1e-3                      # different noise, different chunk
    seen = bundle.sample_chunk(_frame(5), G1.default_pose, "pick up the cup", noise=_noise(1))
    assert np.abs(seen - chunk).max() > 1e-4                       # the image reaches the actions
    told = bundle.sample_chunk(_frame(), G1.default_pose, "wave", noise=_noise(1))
    assert np.abs(told - chunk).max() > 1e-4                       # so does the instruction
    fresh = bundle.sample_chunk(_frame(), G1.default_pose)         # noise drawn inside
    assert fresh.shape == (8, 28) and np.all(np.isfinite(fresh))
    with pytest.raises(ValueError, match=r"noise must have shape \[1, 8, 32\], got \[1, 8, 28\]"):
        bundle.sample_chunk(_frame(), G1.default_pose, noise=np.zeros((8, 28), np.float32))


def test_random_bundles_are_seeded(tmp_path, bundle_dir):
    again = create_random_bundle(tmp_path / "again", seed=0)
    other = create_random_bundle(tmp_path / "other", seed=1)
    assert (again / "model.safetensors").read_bytes() == (bundle_dir / "model.safetensors").read_bytes()
    assert (other / "model.safetensors").read_bytes() != (bundle_dir / "model.safetensors").read_bytes()


def test_bundle_round_trips_bit_exact(tmp_path, bundle_dir):
    first = load_bundle(bundle_dir)
    out = save_bundle(tmp_path / "resaved", first.policy, first.config, first.stats, extra={"step": 3},
                      instructions=["pick up the cup", "wave"])
    second = load_bundle(out)
    a, b = first.policy.state_dict(), second.policy.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
    assert second.config == first.config
    assert second.stats.to_dict() == first.stats.to_dict()
    assert second.model_id == first.model_id                       # id follows the weights' checksum
    assert second.instructions == ["pick up the cup", "wave"] and second.extra == {"step": 3}
    assert (out / "model.safetensors").read_bytes() == (bundle_dir / "model.safetensors").read_bytes()
    np.testing.assert_array_equal(first.sample_chunk(_frame(), G1.default_pose, noise=_noise(3)),
                                  second.sample_chunk(_frame(), G1.default_pose, noise=_noise(3)))


def test_config_json_describes_the_bundle(bundle_dir):
    raw = read_bundle_config(bundle_dir)
    assert raw["format_version"] == 1 and raw["lara_version"]
    policy = raw["policy"]
    assert (policy["horizon"], policy["denoising_steps"], policy["image_size"], policy["cameras"]) == (8, 4, 224, ["head"])
    assert raw["embodiment"]["joint_names"] == list(G1.joint_names)
    assert raw["instructions"] == [policy["default_instruction"]] and raw["extra"]["untrained"] is True


def test_lam_is_saved_beside_the_policy(tmp_path, bundle_dir):
    bundle = load_bundle(bundle_dir)
    lam = torch.nn.Linear(4, 3)
    save_bundle(tmp_path / "b", bundle.policy, bundle.config, bundle.stats, lam=lam)
    meta = json.loads((tmp_path / "b" / "lam" / "config.json").read_text())
    assert meta == {"format_version": 1, "class": "torch.nn.modules.linear.Linear", "config": None}
    state = load_file(str(tmp_path / "b" / "lam" / "model.safetensors"))
    assert torch.equal(state["weight"], lam.weight.detach()) and torch.equal(state["bias"], lam.bias.detach())
    load_bundle(tmp_path / "b")  # the LAM is not needed to serve, and does not disturb loading


def test_missing_pieces_are_named(broken, tmp_path):
    with pytest.raises(BundleError, match="no bundle directory there"):
        load_bundle(tmp_path / "nothing")
    (broken / "stats.json").unlink()
    with pytest.raises(BundleError, match=r"stats.json: missing \(normalisation stats\)"):
        load_bundle(broken)
    (broken / "config.json").unlink()
    with pytest.raises(BundleError, match=r"config.json: missing \(the bundle config\)"):
        load_bundle(broken)


def test_missing_weights_are_named(broken):
    (broken / "model.safetensors").unlink()
    with pytest.raises(BundleError, match=r"model.safetensors: missing \(the policy weights\)"):
        load_bundle(broken)


def test_corrupt_weights_fail_the_checksum(broken):
    data = bytearray((broken / "model.safetensors").read_bytes())
    data[-100] ^= 0xFF
    (broken / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 does not match config.json's weights_sha256"):
        load_bundle(broken)


def test_truncated_safetensors_is_reported_as_unreadable(broken):
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    _edit_config(broken, weights_sha256=None)
    with pytest.raises(BundleError, match="not a readable safetensors file"):
        load_bundle(broken)


def test_shape_mismatch_names_the_tensor(broken):
    tensors = load_file(str(broken / "model.safetensors"))
    name = "head.dit.blocks.1.attn.to_q.weight"
    tensors[name] = torch.zeros(64, 128)
    save_file(tensors, str(broken / "model.safetensors"))
    _edit_config(broken, weights_sha256=None)
    with pytest.raises(BundleError, match=rf"tensor '{name}' has shape \[64, 128\] but the config needs \[128, 128\]"):
        load_bundle(broken)


def test_weights_of_another_config_are_refused(broken):
    _edit_config(broken, **{"policy.dit_layers": 6})  # the file holds 4 blocks
    with pytest.raises(BundleError, match=r"tensor names do not match the config: missing \['head.dit.blocks.4"):
        load_bundle(broken)


def test_format_version_and_embodiment_are_checked(broken):
    _edit_config(broken, format_version=2)
    with pytest.raises(BundleError, match="bundle format_version 2 .*reads format 1"):
        load_bundle(broken)
    _edit_config(broken, format_version=1, **{"policy.embodiment": "h1"})
    with pytest.raises(BundleError, match="config.json: embodiment 'h1' does not load: no embodiment named 'h1'"):
        load_bundle(broken)
    _edit_config(broken, **{"policy.embodiment": "g1", "embodiment.joint_names": ["a"] * 28})
    with pytest.raises(BundleError, match="trained for embodiment joint_names"):
        load_bundle(broken)


def test_bad_config_and_stats_contents_are_explained(broken):
    (broken / "config.json").write_text("{not json")
    with pytest.raises(BundleError, match="config.json: not valid JSON"):
        load_bundle(broken)
    (broken / "config.json").write_text(json.dumps({"format_version": 1, "policy": {"horizon": -1},
                                                    "embodiment": {}, "model_id": "x"}))
    with pytest.raises(BundleError, match="invalid policy config: .*config.json: horizon: must be > 0, got -1"):
        load_bundle(broken)


def test_bad_stats_are_explained(broken):
    stats = json.loads((broken / "stats.json").read_text())
    stats["action"]["q01"] = stats["action"]["q01"][:20]
    (broken / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(BundleError, match=r"stats.json: stats\['action'\]\['q01'\] has 20 values"):
        load_bundle(broken)


def test_save_accepts_dict_stats_and_writes_no_temporary_files(tmp_path):
    config = PolicyConfig.from_preset("tiny", dit_layers=2)
    torch.manual_seed(0)
    policy = LaraPolicy(config)
    path = save_bundle(tmp_path / "b", policy, config, NormStats.from_embodiment(G1).to_dict())
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "stats.json"]
    assert load_bundle(path).config.dit_layers == 2


def test_save_refuses_a_config_the_policy_was_not_built_from(tmp_path, bundle_dir):
    bundle = load_bundle(bundle_dir)
    with pytest.raises(BundleError, match=r"built from a different config than the one given: \['dit_layers'\]"):
        save_bundle(tmp_path / "b", bundle.policy, bundle.config.replace(dit_layers=6), bundle.stats)
    with pytest.raises(BundleError, match=r"cannot save the normalisation stats: .*'action'"):
        save_bundle(tmp_path / "b", bundle.policy, bundle.config, {"state": bundle.stats.state.to_dict()})
    with pytest.raises(BundleError, match="must be JSON-serialisable"):
        save_bundle(tmp_path / "b", bundle.policy, bundle.config, bundle.stats, extra={"when": object()})
    assert not (tmp_path / "b").exists()
    assert "policy" not in repr(bundle) and bundle.model_id in repr(bundle)
