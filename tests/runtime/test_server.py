"""PolicyServer over real ZMQ sockets, serving a real torch engine on a tiny random bundle.

The engine is wrapped in a pass-through that records batch sizes and can hold the worker at a
gate, so busy, deadline and batching are made to happen deterministically (no sleeps racing the
engine). Every error case is followed by a valid request that must still succeed.
"""
from __future__ import annotations

import io
import json
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from lara_g1.core.observation import make_noise
from lara_g1.runtime.client import PolicyClient, ServerError
from lara_g1.runtime.engine import Engine
from lara_g1.runtime.server import PolicyServer, is_loopback

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    from lara_g1.lara.bundle import create_random_bundle

    path = tmp_path_factory.getbasetemp() / "serving-tiny-bundle"
    if not (path / "model.safetensors").exists():  # shared by the serving test modules
        create_random_bundle(path, preset="tiny", seed=0)
    return path


class GatedEngine(Engine):
    """The real engine, plus a record of batch sizes and a gate that can hold the worker."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.kind = inner.kind
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def infer(self, observations, noise=None):
        self.entered.set()
        assert self.gate.wait(60), "test gate never opened"
        self.batches.append(len(observations))
        return self.inner.infer(observations, noise)

    @property
    def metadata(self):
        return self.inner.metadata


@pytest.fixture(scope="module")
def engine(bundle_path):
    from lara_g1.runtime.engines import load_engine

    eng = GatedEngine(load_engine(bundle_path, "torch"))
    yield eng
    eng.inner.close()


@pytest.fixture(scope="module")
def server(engine):
    srv = PolicyServer(engine, "tcp://127.0.0.1:*", max_batch=4, batch_window_ms=50, queue_size=3,
                       max_message_bytes=1 << 20).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def camera(engine):
    return next(iter(engine.metadata["cameras"]))


def image(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    """A smooth RGB image (so JPEG keeps it close), different per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    chans = [127 + 100 * np.sin(xx / rng.uniform(6, 20) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(6, 20))
             for _ in range(3)]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


def state(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.3, 28).astype(np.float32)


def nd(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"__nd__": True, "dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def infer_msg(rid, camera, seed=1, **overrides) -> dict:
    data = {"state": nd(state(seed)), "images": {camera: nd(image(seed))}, "noise_seed": seed}
    data.update(overrides)
    return {"v": 1, "id": rid, "endpoint": "infer", "data": data}


class Raw:
    """A REQ or DEALER socket speaking raw msgpack (independent of runtime.protocol)."""

    def __init__(self, address: str, kind=zmq.REQ):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)
        self.kind = kind

    def send(self, msg, raw: bytes | None = None):
        body = raw if raw is not None else msgpack.packb(msg, use_bin_type=True)
        if self.kind == zmq.DEALER:
            self.sock.send_multipart([b"", body])
        else:
            self.sock.send(body)

    def recv(self, timeout_ms=30000):
        assert self.sock.poll(timeout_ms), "no reply from the server"
        frames = self.sock.recv_multipart()
        return msgpack.unpackb(frames[-1], raw=False)

    def ask(self, msg=None, raw=None):
        self.send(msg, raw)
        return self.recv()

    def close(self):
        self.sock.close(0)
        self.ctx.term()


def actions_of(reply) -> np.ndarray:
    a = reply["result"]["actions"]
    return np.frombuffer(a["data"], dtype=a["dtype"]).reshape(a["shape"])


def assert_serves(server, camera, seed=5):
    """A valid request from a brand-new client still gets a valid chunk."""
    with PolicyClient(server.address, timeout_s=30) as c:
        reply = c.infer(state(seed), {camera: image(seed)}, noise_seed=seed)
    assert reply.actions.shape == (8, 28) and np.all(np.isfinite(reply.actions))


# ------------------------------------------------------------------------------------ basics

def test_ping_metadata_reset(server, engine):
    with PolicyClient(server.address, timeout_s=30) as c:
        assert abs(c.ping() - time.time()) < 60
        meta = c.metadata()
        sessions = server.status()["sessions"]
        c.reset()
        assert server.status()["sessions"] == sessions - 1  # this client's session was forgotten
    emb = engine.metadata["embodiment"]
    assert meta["protocol_version"] == 1 and meta["embodiment"] == emb["name"]
    assert meta["joint_names"] == emb["joint_names"] and len(meta["joint_names"]) == 28
    assert meta["action_horizon"] == 8 and meta["denoising_steps"] == engine.metadata["denoising_steps"]
    assert meta["model_id"] == engine.metadata["model_id"] and meta["engine"] == "torch"
    assert list(meta["cameras"]) == list(engine.metadata["cameras"])
    assert meta["joint_groups"]["head"] == [26, 28]
    # the wire's action_dim is the embodiment's width (what infer returns), not the model's padding
    assert meta["state_dim"] == meta["action_dim"] == emb["dim"] == 28
    assert engine.metadata["max_action_dim"] == 32 and server.max_action_dim == 32 and server.action_dim == 28


def test_same_seed_same_chunk_and_seed_matches_make_noise(server, engine, camera):
    with PolicyClient(server.address, timeout_s=30) as c:
        a = c.infer(state(1), {camera: image(1)}, noise_seed=11).actions
        b = c.infer(state(1), {camera: image(1)}, noise_seed=11).actions
        d = c.infer(state(1), {camera: image(1)}, noise_seed=12).actions
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - d).max() > 1e-4
    from lara_g1.core.observation import Observation
    direct = engine.inner.infer([Observation({camera: image(1)}, state(1))], noise=make_noise(1, 8, 32, 11)).actions[0]
    np.testing.assert_allclose(a, direct, atol=1e-5)


def test_concurrent_clients_get_their_own_replies_in_one_batch(server, engine, camera):
    """Four DEALER clients, two requests each in flight; the worker is held so they batch."""
    clients = [Raw(server.address, zmq.DEALER) for _ in range(4)]
    engine.gate.clear()
    engine.entered.clear()
    engine.batches.clear()
    try:
        clients[0].send(infer_msg("c0-first", camera, seed=100))
        assert engine.entered.wait(30)
        sent = {}
        for i, c in enumerate(clients[1:], start=1):
            rid = f"c{i}-only"
            c.send(infer_msg(rid, camera, seed=100 + i))
            sent[rid] = 100 + i
        time.sleep(0.2)  # let the I/O thread queue them while the worker is held
        engine.gate.set()
        replies = {0: [clients[0].recv()]}
        for i, c in enumerate(clients[1:], start=1):
            replies[i] = [c.recv()]
    finally:
        engine.gate.set()
    assert engine.batches[:2] == [1, 3], engine.batches  # held one, then the other three in ONE call
    from lara_g1.core.observation import Observation
    for i, (reply,) in replies.items():
        assert reply["ok"], reply
        seed = 100 + i
        assert reply["id"] == ("c0-first" if i == 0 else f"c{i}-only")
        expected = engine.inner.infer([Observation({camera: image(seed)}, state(seed))],
                                      noise=make_noise(1, 8, 32, seed)).actions[0]
        np.testing.assert_allclose(actions_of(reply), expected, atol=1e-4)
        assert reply["result"]["timing_ms"]["server"] >= reply["result"]["timing_ms"]["engine"] > 0
    for c in clients:
        c.close()


def test_many_threads_with_client_library(server, camera):
    results, errors = {}, []

    def robot(i):
        try:
            with PolicyClient(server.address, timeout_s=60) as c:
                for k in range(2):
                    results[(i, k)] = c.infer(state(i), {camera: image(i)}, noise_seed=k).actions
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=robot, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with PolicyClient(server.address, timeout_s=30) as c:
        for (i, k), got in results.items():
            np.testing.assert_allclose(got, c.infer(state(i), {camera: image(i)}, noise_seed=k).actions, atol=1e-4)


# ------------------------------------------------------------------------- bad input, then OK

def _bad_cases(camera):
    good = infer_msg(1, camera)
    packed = msgpack.packb(good, use_bin_type=True)

    def with_data(**kw):
        m = infer_msg(1, camera)
        m["data"].update(kw)
        return m

    nan_state = state(1)
    nan_state[4] = np.nan
    return {
        "garbage": (None, b"\xc1\x00\xffnot msgpack", "bad_request"),
        "truncated": (None, packed[: len(packed) // 2], "bad_request"),
        "not_a_map": ([1, 2, 3], None, "bad_request"),
        "oversized": (None, msgpack.packb({"v": 1, "id": 1, "endpoint": "ping", "pad": b"x" * (2 << 20)}), "too_large"),
        "wrong_dtype": (with_data(state=nd(state(1).astype(np.float64))), None, "bad_request"),
        "wrong_shape": (with_data(state=nd(state(1)[:20])), None, "bad_request"),
        "image_dtype": (with_data(images={camera: nd(image(1).astype(np.float32))}), None, "bad_request"),
        "image_shape": (with_data(images={camera: nd(image(1)[..., 0])}), None, "bad_request"),
        "wrong_camera": (with_data(images={"tail": nd(image(1))}), None, "bad_request"),
        "bad_jpeg": (with_data(images={camera: {"jpeg": b"\xff\xd8\xff garbage"}}), None, "bad_request"),
        "byte_count": (with_data(state={"__nd__": True, "dtype": "<f4", "shape": [28], "data": b"\0" * 100}),
                       None, "bad_request"),
        "nan_state": (with_data(state=nd(nan_state)), None, "bad_request"),
        "unknown_endpoint": ({"v": 1, "id": 1, "endpoint": "shutdown"}, None, "unknown_endpoint"),
        "wrong_version": ({"v": 7, "id": 1, "endpoint": "ping"}, None, "unsupported_version"),
        "missing_id": ({"v": 1, "endpoint": "ping"}, None, "bad_request"),
    }


@pytest.mark.parametrize("case", list(_bad_cases("head")))
def test_bad_input_gets_its_code_and_the_server_keeps_serving(server, camera, case):
    msg, raw, code = _bad_cases(camera)[case]
    other = PolicyClient(server.address, timeout_s=30)  # a robot connected before the bad message
    c = Raw(server.address)
    try:
        reply = c.ask(msg, raw)
        assert reply["ok"] is False and reply["error"]["code"] == code, reply
        expected_id = None if case in ("garbage", "truncated", "not_a_map", "oversized", "missing_id") else 1
        assert reply["id"] == expected_id
        ok = c.ask(infer_msg(2, camera))  # same connection, valid request
        assert ok["ok"] and ok["id"] == 2 and actions_of(ok).shape == (8, 28)
        assert other.infer(state(3), {camera: image(3)}).actions.shape == (8, 28)
    finally:
        c.close()
        other.close()


def test_multi_frame_message_is_bad_request(server, camera):
    c = Raw(server.address, zmq.DEALER)
    body = msgpack.packb({"v": 1, "id": 9, "endpoint": "ping"}, use_bin_type=True)
    c.sock.send_multipart([b"", body, body])
    reply = c.recv()
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
    c.send({"v": 1, "id": 10, "endpoint": "ping"})
    assert c.recv()["ok"]
    c.close()
    assert_serves(server, camera)


def test_busy_when_queue_is_full(server, engine, camera):
    """queue_size 3: one request held in the engine, three queued, the fifth is answered busy."""
    clients = [Raw(server.address, zmq.DEALER) for _ in range(5)]
    engine.gate.clear()
    engine.entered.clear()
    try:
        clients[0].send(infer_msg("held", camera))
        assert engine.entered.wait(30)
        for i in range(1, 4):
            clients[i].send(infer_msg(f"queued-{i}", camera))
        time.sleep(0.2)
        clients[4].send(infer_msg("overflow", camera))
        busy = clients[4].recv()  # answered while the engine is still held
        assert busy["ok"] is False and busy["error"]["code"] == "busy" and busy["id"] == "overflow"
    finally:
        engine.gate.set()
    for i in range(4):
        assert clients[i].recv()["ok"]
    for c in clients:
        c.close()
    assert_serves(server, camera)


def test_deadline_passed_is_not_computed(server, engine, camera):
    a, b = Raw(server.address, zmq.DEALER), Raw(server.address, zmq.DEALER)
    engine.gate.clear()
    engine.entered.clear()
    try:
        a.send(infer_msg("slow", camera))
        assert engine.entered.wait(30)
        n_before = len(engine.batches)
        b.send(infer_msg("late", camera, deadline_ms=20))
        time.sleep(0.3)  # the deadline passes while the worker is held
    finally:
        engine.gate.set()
    assert a.recv()["ok"]
    late = b.recv()
    assert late["ok"] is False and late["error"]["code"] == "deadline" and late["id"] == "late"
    # only the held request reached the engine: the late one was dropped, not computed
    assert engine.batches[n_before:] == [1]
    b.send(infer_msg("in-time", camera, deadline_ms=30000))
    assert b.recv()["ok"]
    a.close()
    b.close()


def test_jpeg_and_raw_frames_give_the_same_actions(server, camera):
    from PIL import Image

    img = image(21, 224, 224)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    jpeg = buf.getvalue()
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.int16)
    assert np.abs(decoded - img).mean() < 3.0  # what "JPEG tolerance" means for this frame
    with PolicyClient(server.address, timeout_s=30) as c:
        raw = c.infer(state(21), {camera: img}, noise_seed=3).actions
        via_jpeg = c.infer(state(21), {camera: jpeg}, noise_seed=3).actions
        other_image = c.infer(state(21), {camera: image(99, 224, 224)}, noise_seed=3).actions
    jpeg_err = np.abs(raw - via_jpeg).max()
    image_effect = np.abs(raw - other_image).max()
    assert image_effect > 0, "the policy ignores the image; the comparison would prove nothing"
    assert jpeg_err <= 0.1 * image_effect + 1e-4, (jpeg_err, image_effect)


# ----------------------------------------------------------------------------------- security

def test_token_is_required_and_checked(engine, camera):
    with PolicyServer(engine, "tcp://127.0.0.1:*", token="s3cret") as srv:
        c = Raw(srv.address)
        for token in (None, "wrong", "s3cret-but-longer", ""):
            msg = {"v": 1, "id": 1, "endpoint": "ping"}
            if token is not None:
                msg["token"] = token
            reply = c.ask(msg)
            assert reply["ok"] is False and reply["error"]["code"] == "unauthorized", token
            assert c.ask({**infer_msg(2, camera), "token": "s3cret"})["ok"]  # and it keeps serving
        groot = c.ask({"endpoint": "ping", "api_token": "nope"})
        assert groot["error"].startswith("unauthorized")
        assert c.ask({"endpoint": "ping", "api_token": "s3cret"}) == {"status": "ok", "message": "Server is running"}
        c.close()
        with PolicyClient(srv.address, token="s3cret", timeout_s=30) as good:
            assert good.infer(state(1), {camera: image(1)}).actions.shape == (8, 28)
        with PolicyClient(srv.address, token="bad", timeout_s=30) as bad, pytest.raises(ServerError) as err:
            bad.ping()
        assert err.value.code == "unauthorized"


def test_non_loopback_bind_needs_a_token_or_insecure(engine):
    for bind in ("tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://192.168.1.10:5555", "tcp://eth0:5555"):
        assert not is_loopback(bind)
        with pytest.raises(ValueError, match="without a token"):
            PolicyServer(engine, bind)
        PolicyServer(engine, bind, token="t")          # constructing binds nothing
        PolicyServer(engine, bind, insecure=True)
    for bind in ("tcp://127.0.0.1:5555", "tcp://localhost:*", "tcp://[::1]:5555", "ipc:///tmp/x", "tcp://127.0.0.2:1"):
        assert is_loopback(bind)


# ------------------------------------------------------------------------------ GR00T dialect

def _npy(a: np.ndarray) -> dict:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return {"__ndarray_class__": True, "as_npy": buf.getvalue()}


def _from_npy(obj):
    if "__ndarray_class__" in obj:
        return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
    return obj


def test_groot_client_request_shape_is_answered(server, engine):
    """Requests encoded exactly the way Isaac-GR00T's ExternalRobotInferenceClient does."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.address)

    def call(endpoint, data=None):
        req = {"endpoint": endpoint}
        if data is not None:
            req["data"] = data
        sock.send(msgpack.packb(req, default=lambda o: _npy(o) if isinstance(o, np.ndarray) else o))
        assert sock.poll(30000)
        return msgpack.unpackb(sock.recv(), object_hook=_from_npy)

    try:
        assert call("ping") == {"status": "ok", "message": "Server is running"}
        cfg = call("get_modality_config")
        groups = list(engine.metadata["embodiment"]["groups"])
        assert json.loads(cfg["action"]["as_json"])["modality_keys"] == [f"action.{g}" for g in groups]
        assert json.loads(cfg["state"]["as_json"])["modality_keys"] == [f"state.{g}" for g in groups]

        rng = np.random.default_rng(0)
        obs = {"video.rs_view": image(7, 120, 160)[None],
               "state.left_arm": rng.uniform(-0.2, 0.2, (1, 7)), "state.right_arm": rng.uniform(-0.2, 0.2, (1, 7)),
               "state.left_hand": rng.uniform(0, 1, (1, 6)), "state.right_hand": rng.uniform(0, 1, (1, 6)),
               "annotation.human.task_description": ["pick up the cup"]}
        action = call("get_action", obs)
        assert sorted(action) == sorted(f"action.{g}" for g in groups)
        emb = engine.metadata["embodiment"]
        for g, (s, e, _unit) in emb["groups"].items():
            arr = action[f"action.{g}"]
            assert arr.dtype == np.float32 and arr.shape == (8, e - s) and np.all(np.isfinite(arr))

        batched = dict(obs, **{k: np.repeat(v[None], 2, axis=0) for k, v in obs.items() if k.startswith(("video", "state"))})
        batched["annotation.human.task_description"] = [["pick"], ["place"]]
        out = call("get_action", batched)
        assert out["action.left_arm"].shape == (2, 8, 7)

        bad = call("get_action", {"video.rs_view": image(7)[None], "state.waist": np.zeros((1, 3))})
        assert set(bad) == {"error"} and bad["error"].startswith("bad_request")
        assert "error" in call("kill")  # not offered: a network peer cannot stop the server
        assert call("ping")["status"] == "ok"
    finally:
        sock.close(0)
        ctx.term()


# ----------------------------------------------------------------------------- engine faults

class FaultyEngine(GatedEngine):
    """The real engine, failing on instruction "explode" and emitting NaN for instruction "nan"."""

    def infer(self, observations, noise=None):
        if any(o.instruction == "explode" for o in observations):
            raise ValueError("simulated engine failure")
        result = super().infer(observations, noise)
        for i, o in enumerate(observations):
            if o.instruction == "nan":
                result.actions[i, 3, 5] = np.nan
        return result


def test_engine_faults_only_fail_their_own_request(engine, camera):
    faulty = FaultyEngine(engine.inner)
    with PolicyServer(faulty, "tcp://127.0.0.1:*", max_batch=4, batch_window_ms=50) as srv:
        clients = {name: Raw(srv.address, zmq.DEALER) for name in ("explode", "nan", "fine")}
        faulty.gate.clear()
        faulty.entered.clear()
        try:
            clients["fine"].send(infer_msg("warm", camera))
            assert faulty.entered.wait(30)
            for name, c in clients.items():
                c.send(infer_msg(name, camera, instruction=name))
            time.sleep(0.2)
        finally:
            faulty.gate.set()
        assert clients["fine"].recv()["ok"]
        replies = {name: c.recv() for name, c in clients.items()}
        assert replies["fine"]["ok"] and replies["fine"]["id"] == "fine"
        for name in ("explode", "nan"):
            assert replies[name]["ok"] is False and replies[name]["error"]["code"] == "internal", replies[name]
        assert "non-finite" in replies["nan"]["error"]["message"]
        assert srv.running
        clients["explode"].send(infer_msg("after", camera))
        assert clients["explode"].recv()["ok"]
        for c in clients.values():
            c.close()


def test_ipv6_loopback(engine, camera):
    with PolicyServer(engine, "tcp://[::1]:*") as srv:
        assert srv.address.startswith("tcp://[::1]:")
        with PolicyClient(srv.address, timeout_s=30) as c:
            assert c.infer(state(1), {camera: image(1)}).actions.shape == (8, 28)


def test_one_client_cannot_fill_the_queue_for_everyone(engine, camera):
    """At most max_batch pending requests per client; beyond that only that client gets busy."""
    with PolicyServer(engine, "tcp://127.0.0.1:*", max_batch=2, queue_size=64) as srv:
        greedy, polite = Raw(srv.address, zmq.DEALER), Raw(srv.address, zmq.DEALER)
        engine.gate.clear()
        engine.entered.clear()
        try:
            greedy.send(infer_msg("g1", camera))
            assert engine.entered.wait(30)
            greedy.send(infer_msg("g2", camera))
            greedy.send(infer_msg("g3", camera))
            busy = greedy.recv()
            assert busy["id"] == "g3" and busy["error"]["code"] == "busy" and "per client" in busy["error"]["message"]
            polite.send(infer_msg("p1", camera))
        finally:
            engine.gate.set()
        assert {greedy.recv()["id"], greedy.recv()["id"]} == {"g1", "g2"}
        reply = polite.recv()
        assert reply["ok"] and reply["id"] == "p1"
        greedy.send(infer_msg("g4", camera))  # its slots are free again
        assert greedy.recv()["ok"]
        greedy.close()
        polite.close()


def test_back_to_back_requests_never_find_their_own_slot_taken(engine, camera):
    """A REQ client sends its next request the moment it reads a reply; with max_batch 1 its one
    slot must already be free by then (regression: the slot was freed after the reply was sent)."""
    with PolicyServer(engine, "tcp://127.0.0.1:*", max_batch=1) as srv, PolicyClient(srv.address, timeout_s=30) as c:
        for i in range(25):
            c.infer(state(i), {camera: image(1, 32, 32)})
