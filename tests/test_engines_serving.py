"""`lara-export B --onnx`, then serving B with the ort engine over ZMQ, gives torch's chunks."""
from __future__ import annotations

import numpy as np
import pytest

from lara.bundle import create_random_bundle
from policy_export.cli import main as export_main
from runtime.client import PolicyClient
from runtime.engine import Observation, make_noise
from runtime.engines import load_engine
from runtime.server import PolicyServer


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = create_random_bundle(tmp_path_factory.mktemp("serve") / "tiny", preset="tiny", seed=21)
    assert export_main([str(path), "--onnx"]) == 0
    return path


def test_served_ort_chunks_match_torch(bundle):
    torch_engine = load_engine(bundle, "torch")
    server = PolicyServer(load_engine(bundle, "ort"), "tcp://127.0.0.1:*", max_batch=4).start()
    client = PolicyClient(server.address, timeout_s=30.0)
    try:
        assert client.metadata()["engine"] == "ort"
        rng = np.random.default_rng(0)
        for seed in (5, 6):
            image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
            state = rng.uniform(-0.3, 0.3, 28).astype(np.float32)
            reply = client.infer(state, {"head": image}, instruction="open the drawer", noise_seed=seed)
            ref = torch_engine.infer([Observation({"head": image}, state, "open the drawer")],
                                     make_noise(1, 8, 32, seed)).actions[0]
            assert reply.actions.shape == (8, 28)
            np.testing.assert_allclose(reply.actions, ref, atol=1e-4, rtol=0)
    finally:
        client.close()
        server.stop()
