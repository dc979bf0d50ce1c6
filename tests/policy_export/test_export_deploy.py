"""lara-export --deploy: a serving-only copy that the ORT engine serves identically, that holds
no torch weights, and that is refused for torch with a message saying what it is."""
from __future__ import annotations

import numpy as np
import pytest

from lara_g1.core.observation import Observation
from lara_g1.lara.bundle import BundleError, create_random_bundle, load_bundle
from lara_g1.lara.manifest import ManifestError
from lara_g1.policy_export.cli import main as export_main
from lara_g1.policy_export.deploy import DeployError, write_deployment
from lara_g1.runtime.engines import load_engine


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = create_random_bundle(tmp_path_factory.mktemp("deploy") / "tiny", preset="tiny", seed=11)
    (path / "lam").mkdir()
    (path / "lam" / "model.safetensors").write_bytes(b"training only")
    assert export_main([str(path), "--onnx", "--seed", "0"]) == 0
    return path


def _observation(seed: int) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(images={"head": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)},
                       state=rng.uniform(-0.5, 0.5, 28).astype(np.float32), instruction="pick")


def test_deployment_serves_the_same_chunks_without_the_torch_weights(exported, tmp_path):
    out = tmp_path / "deployed"
    assert export_main([str(exported), "--deploy", str(out), "--seed", "0"]) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["config.json", "manifest.json", "onnx/action_head.onnx", "onnx/backbone.onnx", "stats.json"]
    noise = np.random.default_rng(1).standard_normal((1, 8, 32), dtype=np.float32)
    want = load_engine(exported, "ort", threads=1).infer([_observation(2)], noise).actions
    got = load_engine(out, "ort", threads=1).infer([_observation(2)], noise).actions
    np.testing.assert_array_equal(got, want)
    with pytest.raises(BundleError, match="serving-only bundle.*--engine ort or trt"):
        load_bundle(out)


def test_deploy_checks_the_files_and_never_overwrites_other_directories(exported, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DeployError, match="not a deployment"):
        write_deployment(exported, other)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(DeployError, match="the bundle itself"):
        write_deployment(exported, exported)

    out = write_deployment(exported, tmp_path / "d")
    write_deployment(exported, out)   # a deployment is replaced by a fresh one
    assert (out / "manifest.json").is_file()

    broken = tmp_path / "broken"
    import shutil
    shutil.copytree(exported, broken)
    (broken / "onnx" / "backbone.onnx").write_bytes(b"not the exported graph")
    with pytest.raises(ManifestError, match="bytes"):
        write_deployment(broken, tmp_path / "d2")
    assert not (tmp_path / "d2").exists()
    assert not any(p.name.startswith(".d2.") for p in tmp_path.iterdir())


def test_an_unexported_bundle_cannot_be_deployed(tmp_path):
    b = create_random_bundle(tmp_path / "fresh", preset="tiny", seed=5)
    with pytest.raises(ManifestError, match="lara-export"):
        write_deployment(b, tmp_path / "out")
