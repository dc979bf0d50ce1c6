"""The torch and ort engines behind one interface, on an exported tiny bundle."""
from __future__ import annotations

import numpy as np
import pytest

from lara_g1.core.extras import MissingExtraError, require
from lara_g1.core.observation import Observation, make_noise
from lara_g1.lara.bundle import create_random_bundle
from lara_g1.policy_export.cli import main as export_main
from lara_g1.runtime.engines import ENGINE_KINDS, EngineError, load_engine
from lara_g1.runtime.engines.base import TIMING_KEYS
from lara_g1.runtime.engines.ort_engine import resolve_provider


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = create_random_bundle(tmp_path_factory.mktemp("engines") / "tiny", preset="tiny", seed=11)
    assert export_main([str(path), "--onnx"]) == 0      # what a user runs: lara-export B --onnx
    return path


@pytest.fixture(scope="module")
def engines(bundle):
    return {"torch": load_engine(bundle, "torch", seed=1), "ort": load_engine(bundle, "ort", provider="cpu", seed=1)}


def _observations(batch: int, seed: int = 0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    return [Observation(images={"head": rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)},
                        state=rng.uniform(-0.5, 0.5, 28).astype(np.float32),
                        instruction=None if i else "wave with the left hand") for i in range(batch)]


@pytest.mark.parametrize("batch", [1, 3])
def test_same_noise_same_chunk_on_every_engine(engines, batch):
    obs, noise = _observations(batch), make_noise(batch, 8, 32, seed=7)
    results = {kind: e.infer(obs, noise) for kind, e in engines.items()}
    for kind, r in results.items():
        assert r.actions.shape == (batch, 8, 28) and r.actions.dtype == np.float32, kind
        assert set(TIMING_KEYS) == set(r.timing_ms) and all(v >= 0 for v in r.timing_ms.values()), kind
    np.testing.assert_allclose(results["ort"].actions, results["torch"].actions, atol=1e-4, rtol=0)
    # and each engine is deterministic given the noise
    np.testing.assert_array_equal(engines["ort"].infer(obs, noise).actions, results["ort"].actions)


def test_different_noise_different_chunks(engines):
    obs = _observations(1)
    for kind, e in engines.items():
        a = e.infer(obs, make_noise(1, 8, 32, seed=1)).actions
        b = e.infer(obs, make_noise(1, 8, 32, seed=2)).actions
        assert np.abs(a - b).max() > 1e-3, kind
        # no noise: the engine draws its own, fresh each call
        c, d = e.infer(obs).actions, e.infer(obs).actions
        assert not np.array_equal(c, d), kind


def test_chunks_are_inside_the_joint_limits(engines):
    from lara_g1.core.embodiment import load_embodiment

    emb = load_embodiment("g1")
    for kind, e in engines.items():
        a = e.infer(_observations(2)).actions
        assert np.all(a >= emb.lower - 1e-5) and np.all(a <= emb.upper + 1e-5), kind


def test_bad_noise_and_empty_batch_are_refused(engines):
    for e in engines.values():
        with pytest.raises(ValueError, match="noise must have shape"):
            e.infer(_observations(2), make_noise(1, 8, 32, seed=0))
        bad = make_noise(1, 8, 32, seed=0)
        bad[0, 0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            e.infer(_observations(1), bad)
        with pytest.raises(ValueError, match="at least one observation"):
            e.infer([])


def test_metadata_describes_the_chunk(engines):
    for kind, e in engines.items():
        m = e.metadata
        assert m["engine"] == kind and m["horizon"] == 8 and m["max_action_dim"] == 32
        assert m["cameras"] == {"head": [224, 224]} and m["embodiment"]["dim"] == 28
        assert m["model_id"] == engines["torch"].metadata["model_id"]
    assert engines["ort"].metadata["provider"] == "CPUExecutionProvider"


def test_provider_choice():
    assert resolve_provider("auto", ["CPUExecutionProvider"]) == "cpu"
    assert resolve_provider("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == "cuda"
    assert resolve_provider("CPU", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == "cpu"
    with pytest.raises(MissingExtraError, match=r"pip install 'lara-g1\[gpu\]'"):
        resolve_provider("cuda", ["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="unknown ONNX Runtime provider"):
        resolve_provider("rocm", ["CPUExecutionProvider"])


def test_unknown_kind_and_missing_extra(tmp_path):
    assert ENGINE_KINDS == ("torch", "ort", "trt")
    with pytest.raises(ValueError, match="unknown engine kind"):
        load_engine(tmp_path, "tensorflow")
    with pytest.raises(MissingExtraError, match=r"pip install 'lara-g1\[trt\]'"):
        require("lara_g1_no_such_module", "trt", "TensorRT")


def test_ort_engine_refuses_another_embodiment_id(engines):
    ort = engines["ort"]
    inputs = ort.spec.preprocessor(_observations(1))
    inputs["embodiment_id"] = inputs["embodiment_id"] + 1
    with pytest.raises(EngineError, match="embodiment id 0"):
        ort.run_model(inputs, make_noise(1, 8, 32, seed=0))


def test_served_ort_chunks_match_torch(bundle, engines):
    """lara-export B --onnx, then serving B with the ort engine over ZMQ: torch's chunks."""
    from lara_g1.runtime.client import PolicyClient
    from lara_g1.runtime.server import PolicyServer

    server = PolicyServer(load_engine(bundle, "ort"), "tcp://127.0.0.1:*", max_batch=4).start()
    client = PolicyClient(server.address, timeout_s=30.0)
    try:
        assert client.metadata()["engine"] == "ort"
        for i, seed in enumerate((5, 6)):
            obs = _observations(1, seed=seed)[0]
            reply = client.infer(obs.state, obs.images, instruction=f"open drawer {i}", noise_seed=seed)
            ref = engines["torch"].infer([Observation(obs.images, obs.state, f"open drawer {i}")],
                                         make_noise(1, 8, 32, seed)).actions[0]
            assert reply.actions.shape == (8, 28)
            np.testing.assert_allclose(reply.actions, ref, atol=1e-4, rtol=0)
    finally:
        client.close()
        server.stop()
