"""TensorRT: engine naming, the GPU/version check, build profiles; the engine itself where a GPU is."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from lara_g1.core.extras import MissingExtraError
from lara_g1.lara.manifest import Artifact, FileDigest, Manifest, ManifestError, TensorSpec
from lara_g1.policy_export.trt_build import engine_filename, profile_shapes
from lara_g1.policy_export.trt_session import DeviceInfo, EngineMismatchError, check_compatible
from lara_g1.runtime.engines import load_engine

H100 = DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", "10.9.0.34")


def _engine_artifact(device: DeviceInfo, precision: str = "fp16") -> Artifact:
    name = engine_filename("action_head", precision, device)
    return Artifact(stage="action_head", format="trt", precision=precision,
                    file=FileDigest(f"trt/{name}", "0" * 64, 1),
                    inputs=[TensorSpec("noise", "float32", ("batch", 8, 32))],
                    outputs=[TensorSpec("actions", "float32", ("batch", 8, 32))],
                    build={**device.to_dict(), "max_batch": 8})


def test_engine_file_name_carries_gpu_capability_and_version():
    assert engine_filename("action_head", "fp16", H100) == \
        "action_head.fp16.NVIDIA-H100-80GB-HBM3.sm90.trt10.9.0.34.engine"
    orin = DeviceInfo("Orin (nvgpu)", "8.7", "10.3.0")
    assert engine_filename("backbone", "bf16", orin) == "backbone.bf16.Orin-nvgpu.sm87.trt10.3.0.engine"


def test_engine_for_this_gpu_and_version_is_accepted():
    check_compatible(_engine_artifact(H100), H100)
    # a different build number of the same TensorRT release is the same runtime
    check_compatible(_engine_artifact(H100), DeviceInfo(H100.gpu_name, "9.0", "10.9.0.35"))


@pytest.mark.parametrize("other, what", [
    (DeviceInfo("NVIDIA H200", "9.0", "10.9.0.34"), "GPU 'NVIDIA H100 80GB HBM3'"),
    (DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", "10.11.0.33"), "TensorRT 10.9.0.34"),
    (DeviceInfo("NVIDIA GeForce RTX 4090", "8.9", "10.9.0.34"), "compute capability 9.0"),
])
def test_engine_for_another_gpu_or_version_is_refused_with_rebuild_advice(other, what):
    with pytest.raises(EngineMismatchError) as err:
        check_compatible(_engine_artifact(H100, "bf16"), other, bundle="/robots/g1/policy")
    msg = str(err.value)
    assert what in msg and "rebuild" in msg
    assert "lara-export /robots/g1/policy --trt --precision bf16" in msg
    assert isinstance(err.value, ManifestError)


def test_profile_covers_batch_1_to_max_and_only_batch_is_dynamic():
    shapes = profile_shapes([TensorSpec("pixel_values", "float32", ("batch", 3, 224, 224))], max_batch=8)
    assert shapes == {"pixel_values": ((1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224))}
    with pytest.raises(ManifestError, match="only the batch dimension"):
        profile_shapes([TensorSpec("input_ids", "int64", ("batch", "tokens"))], max_batch=8)


def test_manifest_round_trips_engine_entries(tmp_path):
    m = Manifest(model_id="m", embodiment="g1", embodiment_id=0, horizon=8, denoising_steps=4,
                 max_action_dim=32, max_state_dim=64, opset=17)
    m.add(_engine_artifact(H100))
    m.save(tmp_path)
    back = Manifest.load(tmp_path)
    assert back.to_dict() == m.to_dict()
    assert back.get("action_head", "trt", "fp16").build["gpu_name"] == H100.gpu_name
    with pytest.raises(ManifestError, match="--trt --precision bf16"):
        back.get("action_head", "trt", "bf16")


def _cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed: the missing-extra error cannot occur")
def test_trt_engine_without_tensorrt_names_the_extra(tmp_path):
    from lara_g1.lara.bundle import create_random_bundle

    b = create_random_bundle(tmp_path / "b", preset="tiny", seed=0)
    with pytest.raises(MissingExtraError, match=r"pip install 'lara-g1\[trt\]'"):
        load_engine(b, "trt")


def _trt_skip_reason() -> str | None:
    if not HAVE_TRT:
        return "tensorrt is not installed (pip install 'lara-g1[trt]' on a machine with an NVIDIA GPU)"
    if not _cuda_available():
        return "no CUDA device: TensorRT engines need an NVIDIA GPU"
    return None


@pytest.mark.skipif(_trt_skip_reason() is not None, reason=str(_trt_skip_reason()))
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_trt_engine_matches_torch(tmp_path, precision):
    from lara_g1.core.observation import Observation, make_noise
    from lara_g1.lara.bundle import create_random_bundle
    from lara_g1.policy_export.trt_build import TRT_TOLERANCE, build_trt

    b = create_random_bundle(tmp_path / "b", preset="tiny", seed=0)
    from lara_g1.policy_export.onnx_export import export_onnx
    export_onnx(b, precisions=("fp32", precision), log=lambda _: None)
    build_trt(b, precision, max_batch=4, log=lambda _: None)
    torch_e, trt_e = load_engine(b, "torch"), load_engine(b, "trt", precision=precision)
    try:
        rng = np.random.default_rng(0)
        obs = [Observation({"head": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)},
                           rng.uniform(-0.3, 0.3, 28).astype(np.float32)) for _ in range(3)]
        noise = make_noise(3, 8, 32, seed=1)
        ref = torch_e.spec.preprocessor.stats.action.normalize(torch_e.infer(obs, noise).actions)
        got = trt_e.spec.preprocessor.stats.action.normalize(trt_e.infer(obs, noise).actions)
        assert np.abs(ref - got).max() <= TRT_TOLERANCE[precision]
        again = trt_e.infer(obs, noise).actions          # the CUDA graph replays deterministically
        np.testing.assert_array_equal(again, trt_e.infer(obs, noise).actions)
    finally:
        trt_e.close()
