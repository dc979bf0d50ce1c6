"""lara-serve answering Isaac-GR00T N1.6's ``PolicyClient`` (runtime/gr00t_dialect.py).

The GR00T client here is written from the facts of docs/PROTOCOL.md section 7.2 (what GR00T's
client puts on the wire), not from GR00T's code: msgpack maps, ndarrays as
``{"__ndarray_class__": True, "as_npy": <np.save bytes>}``, requests ``{"endpoint", "data",
"api_token"}``, ``get_action``'s data ``{"observation": nested, "options": ...}``, replies
``[action, info]`` or ``{"error": str}``.

The end-to-end tests run a real ``lara-serve --engine ort`` subprocess on an exported tiny
bundle and compare its GR00T answers with its answers to our own PolicyClient for the same
inputs and noise seeds. The in-process tests use a stub engine whose actions are a known
function of the noise and the state, so the mapping of keys, steps and seeds is checked exactly.
"""
from __future__ import annotations

import os

import msgpack
import numpy as np
import pytest

from lara_g1.core.embodiment import load_embodiment
from lara_g1.core.observation import InferenceResult, make_noise
from lara_g1.runtime import gr00t_dialect as G16
from lara_g1.runtime import protocol as P
from lara_g1.runtime.client import PolicyClient
from lara_g1.runtime.engine import Engine
from lara_g1.runtime.server import PolicyServer
from tests.helpers.gr00t_client import Gr00tClient, ModalityConfig
from tests.helpers.serve import lara_serve

pytestmark = pytest.mark.timeout(180)


def _image(seed: int, h: int = 60, w: int = 80) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    chans = [127 + 100 * np.sin(xx / rng.uniform(4, 12) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(4, 12))
             for _ in range(3)]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


def _states(seed: int, batch: int, steps: int, dim: int = 28) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.4, 0.4, (batch, steps, dim)).astype(np.float32)


def _observation(groups: dict, camera: str, images: np.ndarray, states: np.ndarray, tasks: list[str]) -> dict:
    """Nested N1.6 observation: images uint8 [B, T, H, W, 3], states float32 [B, T, 28] split by group."""
    return {"video": {camera: images},
            "state": {g: np.ascontiguousarray(states[:, :, s:e]) for g, (s, e, _u) in groups.items()},
            "language": {"annotation.human.task_description": [[t] for t in tasks]}}


def _joined(action: dict, groups: dict) -> np.ndarray:
    """{group: [B, H, n]} back to [B, H, 28] in the embodiment's order."""
    return np.concatenate([action[g] for g in groups], axis=-1)


# -------------------------------------------------------------------- lara-serve, as a subprocess

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from lara_g1.lara.bundle import create_random_bundle
    from lara_g1.policy_export.cli import main as lara_export

    path = tmp_path_factory.mktemp("gr00t-n16") / "bundle"
    create_random_bundle(path, preset="tiny", seed=1)
    assert lara_export([str(path), "--onnx", "--seed", "0"]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with lara_serve(path, "ort", env=env) as (_proc, address), PolicyClient(address, timeout_s=60) as ours:
        meta = ours.metadata()
        yield {"address": address, "ours": ours, "meta": meta,
               "groups": {g: (s, e, None) for g, (s, e) in meta["joint_groups"].items()},
               "camera": next(iter(meta["cameras"]))}


@pytest.fixture
def gr00t(served):
    client = Gr00tClient(served["address"])
    yield client
    client.close()


def test_ping_and_modality_config(served, gr00t):
    assert gr00t.ping() == {"status": "ok", "message": "Server is running"}
    assert gr00t.reset() == {}  # N1.6-only request: this connection now gets N1.6's config form
    cfg = gr00t.get_modality_config()
    groups, meta = list(served["groups"]), served["meta"]
    assert cfg["video"] == ModalityConfig([0], [served["camera"]])
    assert cfg["state"] == ModalityConfig([0], groups)
    assert cfg["action"] == ModalityConfig(list(range(meta["action_horizon"])), groups)
    assert cfg["language"].modality_keys == [G16.LANGUAGE_KEY]


def test_get_action_batch_equals_our_protocol(served, gr00t):
    ours, groups, cam = served["ours"], served["groups"], served["camera"]
    horizon, model = served["meta"]["action_horizon"], served["meta"]["model_id"]
    # B = 2, T = 2: step 0 holds other values; only the last step may count
    images = np.stack([np.stack([_image(10 + b), _image(20 + b)]) for b in range(2)])
    states = _states(3, batch=2, steps=2)
    tasks = ["pick up the cup", "open the drawer"]
    obs = _observation(groups, cam, images, states, tasks)

    reply = gr00t.get_action(obs, options={"noise_seed": 11})
    assert isinstance(reply, list) and len(reply) == 2, reply
    action, info = reply
    assert list(action) == list(groups)
    for g, (s, e, _u) in groups.items():
        assert action[g].dtype == np.float32 and action[g].shape == (2, horizon, e - s), (g, action[g].shape)
        assert np.all(np.isfinite(action[g]))
    assert info["model"] == model and {"engine", "server"} <= set(info["timing_ms"])
    chunk = _joined(action, groups)

    for b in range(2):  # our protocol, one observation at a time, seed 11 + b
        mine = ours.infer(states[b, -1], {cam: images[b, -1]}, instruction=tasks[b], noise_seed=11 + b).actions
        np.testing.assert_allclose(chunk[b], mine, rtol=0, atol=1e-5, err_msg=f"row {b}")
    # ...and the comparison can fail: other noise, or step 0 instead of the last step, differ
    other_seed = ours.infer(states[0, -1], {cam: images[0, -1]}, instruction=tasks[0], noise_seed=99).actions
    first_step = ours.infer(states[0, 0], {cam: images[0, 0]}, instruction=tasks[0], noise_seed=11).actions
    assert np.abs(other_seed - chunk[0]).max() > 1e-3
    assert np.abs(first_step - chunk[0]).max() > 1e-3
    assert np.abs(chunk[0] - chunk[1]).max() > 1e-3

    # a list of seeds gives each row its own
    swapped = _joined(gr00t.get_action(obs, options={"noise_seed": [12, 11]})[0], groups)
    for b, seed in ((0, 12), (1, 11)):
        mine = ours.infer(states[b, -1], {cam: images[b, -1]}, instruction=tasks[b], noise_seed=seed).actions
        np.testing.assert_allclose(swapped[b], mine, rtol=0, atol=1e-5, err_msg=f"row {b}, seed {seed}")

    # no options at all (what PolicyClient.get_action(obs) sends): fresh noise, right shapes
    plain, _info = gr00t.get_action(obs)
    assert _joined(plain, groups).shape == (2, horizon, 28) and np.all(np.isfinite(_joined(plain, groups)))


def _error(reply) -> str:
    assert isinstance(reply, dict) and set(reply) == {"error"}, reply
    return reply["error"]


def test_bad_requests_get_error_replies_and_the_server_keeps_serving(served, gr00t):
    groups, cam = served["groups"], served["camera"]
    images = _image(1)[None, None]
    good = _observation(groups, cam, images, _states(1, 1, 1), ["stack"])

    def with_state(**change):
        state = {k: v for k, v in good["state"].items() if k not in change}
        state.update({k: v for k, v in change.items() if v is not None})
        return {**good, "state": state}

    cases = [
        (with_state(waist=np.zeros((1, 1, 3), np.float32)), ["bad_request", "unknown ['waist']"]),
        (with_state(head=None), ["bad_request", "missing ['head']"]),
        (with_state(left_arm=np.zeros((1, 1, 6), np.float32)), ["[B, T, 7]"]),
        (with_state(left_arm=np.full((1, 1, 7), np.nan, np.float32)), ["NaN"]),
        (with_state(left_arm=np.zeros((2, 1, 7), np.float32)), ["batch size"]),
        ({**good, "video": {"wrist": images}}, ["unknown video views ['wrist']", "head"]),
        ({**good, "video": {cam: images.astype(np.float32)}}, ["uint8"]),
        ({**good, "video": {cam: images[0]}}, ["[B, T, H, W, 3]"]),
        ({**good, "language": {"task": [["a"], ["b"]]}}, ["list of 1 rows"]),
        ({"video.head": images}, ["unknown modalities"]),
        ({**good, "video": {cam: np.repeat(images, 9, axis=0)},
          "state": {k: np.repeat(v, 9, axis=0) for k, v in good["state"].items()}}, ["--max-batch 8"]),
    ]
    for obs, fragments in cases:
        message = _error(gr00t.get_action(obs))
        assert all(f in message for f in fragments), (fragments, message)
        assert gr00t.ping()["status"] == "ok"
    assert "noise_seed" in _error(gr00t.get_action(good, options={"noise_seed": -1}))
    assert "noise_seed" in _error(gr00t.get_action(good, options={"noise_seed": [1, 2]}))
    assert "'observation' and 'options'" in _error(gr00t.call("get_action", {"observation": good, "seed": 1}))
    assert "unknown_endpoint" in _error(gr00t.call("kill", requires_input=False))  # a peer cannot stop it
    assert "error" in gr00t.raw(b"\xc1 not msgpack")
    assert "error" in gr00t.raw(msgpack.packb({"endpoint": "get_action", "data": {"observation": {
        "video": {cam: {"__ndarray_class__": True, "as_npy": b"garbage"}}}}}))
    # still serving, both dialects
    action, _info = gr00t.get_action(good, options={"noise_seed": 3})
    assert action["left_arm"].shape == (1, served["meta"]["action_horizon"], 7)
    assert served["ours"].ping()


def test_reset_and_our_own_client_on_the_same_socket(served, gr00t):
    ours, groups, cam = served["ours"], served["groups"], served["camera"]
    assert gr00t.reset({"episode": 1}) == {}
    assert "reset takes only 'options'" in _error(gr00t.call("reset", {"options": None, "x": 1}))
    obs = _observation(groups, cam, _image(5)[None, None], _states(5, 1, 1), ["wave"])
    action, _info = gr00t.get_action(obs, {"noise_seed": 4})
    mine = ours.infer(_states(5, 1, 1)[0, -1], {cam: _image(5)}, instruction="wave", noise_seed=4).actions
    np.testing.assert_allclose(_joined(action, groups)[0], mine, rtol=0, atol=1e-5)
    assert ours.metadata()["model_id"] == served["meta"]["model_id"]
    ours.reset()
    assert gr00t.ping()["status"] == "ok"


# ---------------------------------------------------------------- in process, with a stub engine

class StubEngine(Engine):
    """actions[b, t, j] = noise[b, t, j] + state_b[j]: the reply shows which noise and state were used."""

    kind = "stub"

    def __init__(self):
        self.instructions: list = []
        self._meta = {"embodiment": load_embodiment("g1").to_dict(), "horizon": 4, "denoising_steps": 1,
                      "max_action_dim": 32, "cameras": {"head": [32, 32]}, "default_instruction": "idle",
                      "model_id": "stub-model", "engine": "stub"}

    def infer(self, observations, noise=None):
        self.instructions.extend(o.instruction for o in observations)
        states = np.stack([o.state for o in observations])
        return InferenceResult(actions=noise[:, :, :28] + states[:, None, :], timing_ms={"total": 0.1})

    @property
    def metadata(self):
        return self._meta


@pytest.fixture
def stub_server():
    engine = StubEngine()
    with PolicyServer(engine, "tcp://127.0.0.1:*", token="s3cret", max_batch=4) as srv:
        yield srv, engine


def test_stub_mapping_of_groups_steps_views_and_seeds(stub_server):
    srv, engine = stub_server
    groups = {g: tuple(v) for g, v in engine.metadata["embodiment"]["groups"].items()}
    states = _states(7, batch=3, steps=2)
    images = np.stack([np.stack([_image(b, 16, 16)] * 2) for b in range(3)])
    obs = _observation(groups, "ego_view", images, states, ["a", "b", "c"])  # GR00T's G1 view name
    client = Gr00tClient(srv.address, api_token="s3cret")
    try:
        action, info = client.get_action(obs, {"noise_seed": 40})
        assert info["model"] == "stub-model"
        got = _joined(action, groups)
        expected = np.stack([make_noise(1, 4, 32, 40 + b)[0, :, :28] + states[b, -1] for b in range(3)])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        assert engine.instructions[-3:] == ["a", "b", "c"]
        no_language = {k: v for k, v in obs.items() if k != "language"}
        client.get_action(no_language)
        assert engine.instructions[-3:] == [None] * 3  # the bundle's default instruction applies
        cfg = client.get_modality_config()  # after an N1.6 request: N1.6's form
        assert cfg["action"] == ModalityConfig([0, 1, 2, 3], list(groups))
    finally:
        client.close()
    wrong = Gr00tClient(srv.address, api_token="nope")
    try:
        assert _error(wrong.get_action(obs)).startswith("unauthorized")
    finally:
        wrong.close()


def test_get_modality_config_form_follows_the_connection(stub_server):
    srv, _engine = stub_server
    fresh = Gr00tClient(srv.address, api_token="s3cret")
    try:
        reply = fresh.call("get_modality_config", requires_input=False)  # unseen connection: N1.5's form
        assert isinstance(reply["state"]["as_json"], str)
        fresh.reset()
        assert isinstance(fresh.get_modality_config()["state"], ModalityConfig)
    finally:
        fresh.close()


def test_server_option_for_the_modality_config_form():
    with pytest.raises(ValueError, match="gr00t_modality_config"):
        PolicyServer(StubEngine(), gr00t_modality_config="n2")
    with PolicyServer(StubEngine(), "tcp://127.0.0.1:*", gr00t_modality_config="n1.6") as srv:
        client = Gr00tClient(srv.address)
        try:
            assert client.get_modality_config()["video"] == ModalityConfig([0], ["head"])
        finally:
            client.close()


# ---------------------------------------------------------------------------------- pure parsing

EMB = load_embodiment("g1").to_dict()


def test_detection_of_the_n16_shape():
    assert G16.is_n16("get_action", {"observation": {}, "options": None})
    assert G16.is_n16("reset", {})
    assert not G16.is_n16("get_action", {"video.rs_view": 1, "state.left_arm": 2})  # N1.5's flat form
    assert not G16.is_n16("ping", {}) and not G16.is_n16("get_modality_config", {})
    assert P.parse_request({"endpoint": "get_action", "data": {"observation": {}}}).groot


def test_parse_get_action_errors_name_the_keys():
    groups = {g: tuple(v) for g, v in EMB["groups"].items()}
    obs = _observation(groups, "head", _image(0, 8, 8)[None, None], _states(0, 1, 1), ["x"])
    observations, seeds = G16.parse_get_action({"observation": obs, "options": None}, EMB, ["head"], 8)
    assert len(observations) == 1 and seeds == [None] and observations[0].instruction == "x"
    two = {**obs, "video": {"head": obs["video"]["head"], "ego_view": obs["video"]["head"]}}
    with pytest.raises(P.ProtocolError, match="both name camera 'head'"):
        G16.parse_get_action({"observation": two}, EMB, ["head"], 8)
    with pytest.raises(P.ProtocolError, match="missing cameras"):
        G16.parse_get_action({"observation": {**obs, "video": {"wrist": obs["video"]["head"]}}},
                             EMB, ["head", "wrist"], 8)
    with pytest.raises(P.ProtocolError, match="one key"):
        G16.parse_get_action({"observation": {**obs, "language": {"a": [["x"]], "b": [["y"]]}}}, EMB, ["head"], 8)
    with pytest.raises(P.ProtocolError, match="needs 'observation'"):
        G16.parse_get_action({"options": {}}, EMB, ["head"], 8)
