"""runtime.protocol: message encoding, validation and the GR00T compatibility mapping (no sockets)."""
from __future__ import annotations

import io
import json

import msgpack
import numpy as np
import pytest

from lara_g1.core.embodiment import load_embodiment
from lara_g1.runtime import protocol as P

EMB = load_embodiment("g1").to_dict()
CAMS = ["head"]


def _state(value: float = 0.1) -> np.ndarray:
    return np.full(EMB["dim"], value, dtype=np.float32)


def _image(seed: int = 0, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("dtype", ["<f4", "<f8", "|u1", "<i8", "<i4", "<u2", "|b1"])
def test_array_roundtrip_keeps_dtype_shape_and_values(dtype):
    arr = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    out = P.unpack(P.pack({"a": arr}))["a"]
    assert out.dtype == np.dtype(dtype) and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)


def test_array_wire_form_is_documented_map():
    raw = msgpack.unpackb(P.pack(np.arange(3, dtype=np.float32)), raw=False)
    assert raw == {"__nd__": True, "dtype": "<f4", "shape": [3],
                   "data": np.arange(3, dtype="<f4").tobytes()}


def test_big_endian_input_is_sent_little_endian():
    arr = np.arange(4, dtype=">f4")
    raw = msgpack.unpackb(P.pack(arr), raw=False)
    assert raw["dtype"] == "<f4"
    np.testing.assert_array_equal(P.unpack(P.pack(arr)), arr)


@pytest.mark.parametrize("bad, fragment", [
    ({"__nd__": True, "dtype": "<f4", "shape": [3], "data": b"\0" * 11}, "needs 12 bytes"),
    ({"__nd__": True, "dtype": "|O", "shape": [1], "data": b"\0" * 8}, "numeric"),
    ({"__nd__": True, "dtype": ">f4", "shape": [1], "data": b"\0" * 4}, "little-endian"),
    ({"__nd__": True, "dtype": "<f4", "shape": [-1], "data": b""}, "non-negative"),
    ({"__nd__": True, "dtype": "<f4", "shape": [1]}, "dtype, shape and data"),
    ({"__nd__": True, "dtype": "<f4", "shape": [1], "data": "abcd"}, "bin"),
])
def test_bad_arrays_are_bad_requests_that_keep_the_request_id(bad, fragment):
    message = P.unpack(msgpack.packb({"v": 1, "id": 5, "endpoint": "infer", "data": {"x": [bad]}}, use_bin_type=True))
    request = P.parse_request(message)
    with pytest.raises(P.ProtocolError) as err:
        P.check_arrays(request)
    assert err.value.code == P.BAD_REQUEST and fragment in err.value.message and err.value.request_id == 5


def test_garbage_truncated_and_oversized_payloads():
    good = P.pack(P.make_request("ping", 1))
    for payload in (b"\xc1\xc1\xc1", good[:-3], good + b"\x00"):
        with pytest.raises(P.ProtocolError) as err:
            P.unpack(payload)
        assert err.value.code == P.BAD_REQUEST
    with pytest.raises(P.ProtocolError) as err:
        P.unpack(good, max_bytes=len(good) - 1)
    assert err.value.code == P.TOO_LARGE


def test_pickle_is_never_accepted():
    arr = np.arange(3, dtype=object)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    message = P.unpack(msgpack.packb({"endpoint": "get_action",
                                      "data": {"a": {"__ndarray_class__": True, "as_npy": buf.getvalue()}}}))
    request = P.parse_request(message)
    assert request.groot
    with pytest.raises(P.ProtocolError) as err:
        P.check_arrays(request)
    assert err.value.code == P.BAD_REQUEST
    with pytest.raises(TypeError):
        P.pack(arr)


def test_parse_request_envelope():
    req = P.parse_request(P.make_request("infer", "r-1", {"a": 1}, token="t"))
    assert (req.endpoint, req.request_id, req.data, req.token, req.groot) == ("infer", "r-1", {"a": 1}, "t", False)
    with pytest.raises(P.ProtocolError) as err:
        P.parse_request({"v": 2, "id": 7, "endpoint": "ping"})
    assert err.value.code == P.UNSUPPORTED_VERSION and err.value.request_id == 7
    for bad in ([1, 2], {"v": 1, "endpoint": "ping"}, {"v": 1, "id": 1.5, "endpoint": "ping"},
                {"v": 1, "id": 1, "endpoint": 3}, {"v": 1, "id": 1, "endpoint": "x", "data": [1]},
                {"v": 1, "id": True, "endpoint": "ping"}):
        with pytest.raises(P.ProtocolError) as err:
            P.parse_request(bad)
        assert err.value.code == P.BAD_REQUEST


def test_unversioned_request_is_the_groot_dialect():
    req = P.parse_request({"endpoint": "get_action", "data": {"x": 1}, "api_token": "k"})
    assert req.groot and req.endpoint == "get_action" and req.token == "k"
    assert P.parse_request({"data": {}}).endpoint == "get_action"  # GR00T's default endpoint


def test_parse_infer_accepts_raw_and_jpeg_frames():
    img = _image()
    raw = P.parse_infer({"state": _state(), "images": {"head": img}, "noise_seed": 4, "deadline_ms": 50}, 28, CAMS)
    np.testing.assert_array_equal(raw.observation.images["head"], img)
    assert raw.noise_seed == 4 and raw.deadline_ms == 50 and raw.observation.instruction is None
    jpg = P.parse_infer({"state": _state(), "images": {"head": {"jpeg": P.encode_jpeg(img, 95)}},
                         "instruction": "pick"}, 28, CAMS)
    assert jpg.observation.images["head"].shape == img.shape and jpg.observation.instruction == "pick"
    assert "head" in jpg.jpeg


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d.update(state=np.zeros(28, np.float64)), "float32"),
    (lambda d: d.update(state=np.zeros(27, np.float32)), "shape [28]"),
    (lambda d: d.update(state=[0.0] * 28), "must be an array"),
    (lambda d: d["state"].__setitem__(3, np.nan), "NaN"),
    (lambda d: d["state"].__setitem__(5, np.inf), "indices [5]"),
    (lambda d: d.pop("state"), "needs 'state'"),
    (lambda d: d.update(images={"head": np.zeros((8, 8, 3), np.float32)}), "uint8"),
    (lambda d: d.update(images={"head": np.zeros((8, 8), np.uint8)}), "[H, W, 3]"),
    (lambda d: d.update(images={"wrist": np.zeros((8, 8, 3), np.uint8)}), "missing ['head']"),
    (lambda d: d.update(images={"head": {"jpeg": b"not a jpeg"}}), "cannot decode"),
    (lambda d: d.update(images={"head": {"png": b""}}), "jpeg"),
    (lambda d: d.update(images={"head": np.zeros((5000, 1, 3), np.uint8)}), "largest side"),
    (lambda d: d.update(noise_seed=-1), "noise_seed"),
    (lambda d: d.update(noise_seed="7"), "noise_seed"),
    (lambda d: d.update(deadline_ms=0), "deadline_ms"),
    (lambda d: d.update(instruction=5), "instruction"),
    (lambda d: d.update(colour="red"), "unknown infer fields"),
])
def test_parse_infer_rejects_bad_inputs(mutate, fragment):
    data = {"state": _state().copy(), "images": {"head": _image()}}
    mutate(data)
    with pytest.raises(P.ProtocolError) as err:
        P.parse_infer(data, 28, CAMS)
    assert err.value.code == P.BAD_REQUEST and fragment in err.value.message


def test_groot_keys_follow_the_embodiment_groups():
    keys = P.groot_keys(EMB, CAMS)
    assert keys["state"] == [f"state.{g}" for g in EMB["groups"]]
    assert "state.left_arm" in keys["state"] and "action.right_hand" in keys["action"]
    cfg = P.groot_modality_config(EMB, CAMS, horizon=8)
    action = json.loads(cfg["action"]["as_json"])
    assert cfg["action"]["__ModalityConfig_class__"] is True
    assert action == {"delta_indices": list(range(8)), "modality_keys": keys["action"]}


def test_groot_observation_maps_groups_onto_the_28d_state():
    rng = np.random.default_rng(1)
    groups = EMB["groups"]
    data = {"video.rs_view": rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8),
            "annotation.human.task_description": ["stack the cups"]}
    expected = np.asarray(EMB["default_pose"], dtype=np.float32).copy()
    for g in ("left_arm", "right_arm", "left_hand", "right_hand"):  # GR00T's G1 config has no head
        s, e, _ = groups[g]
        vals = rng.uniform(0, 0.5, (1, e - s))
        data[f"state.{g}"] = vals  # float64, as GR00T's examples send it
        expected[s:e] = vals[0]
    (obs,), batched = P.parse_groot_observation(data, EMB, CAMS)
    assert not batched and obs.instruction == "stack the cups"
    np.testing.assert_allclose(obs.state, expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(obs.images["head"], data["video.rs_view"][-1])

    actions = np.arange(2 * 8 * 28, dtype=np.float32).reshape(2, 8, 28)
    out = P.groot_actions(actions[:1], EMB, batched=False)
    s, e, _ = groups["right_hand"]
    np.testing.assert_array_equal(out["action.right_hand"], actions[0, :, s:e])
    assert P.groot_actions(actions, EMB, batched=True)["action.head"].shape == (2, 8, 2)


def test_groot_observation_errors():
    img = np.zeros((1, 16, 16, 3), np.uint8)
    for data, fragment in (
        ({"state.left_arm": np.zeros((1, 7))}, "video"),
        ({"video.head": img, "state.left_arm": np.zeros((1, 6))}, "shape [T, 7]"),
        ({"video.head": img, "state.tail": np.zeros((1, 3))}, "unknown state keys"),
        ({"video.head": img, "state.head": np.full((1, 2), np.nan)}, "NaN"),
        ({"video.head": np.zeros((16, 16, 3), np.uint8)}, "4 dims"),
    ):
        with pytest.raises(P.ProtocolError) as err:
            P.parse_groot_observation(data, EMB, CAMS)
        assert err.value.code == P.BAD_REQUEST and fragment in err.value.message, err.value.message
