"""The lara-serve wire protocol, version 1 (docs/PROTOCOL.md describes it for client authors).

One msgpack map per ZMQ message. Arrays travel as ``{"__nd__": true, "dtype": "<f4", "shape": [..],
"data": <bytes>}`` (raw little-endian bytes, never pickle). Requests carry a version, an id, an
endpoint and a data map; replies echo the id and carry a result or ``{"code", "message"}``.

A second, unversioned dialect is understood for clients written against Isaac-GR00T's
``ExternalRobotInferenceClient``: ``{"endpoint": "get_action", "data": {"video.<cam>": ..,
"state.<group>": .., "annotation...": [..]}}`` with arrays as ``{"__ndarray_class__": true,
"as_npy": <.npy bytes>}``. Its keys map onto the embodiment's joint groups (``state.left_arm`` is
the ``left_arm`` slice of our 28-D vector, and so on), so no joint layout is written down here.
GR00T N1.6's ``PolicyClient`` (nested observation, ``[action, info]`` replies) is read by
:mod:`lara_g1.runtime.gr00t_dialect` on the same socket.

Everything in this module is pure (no sockets): the server and client both build on it.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import msgpack
import numpy as np

from lara_g1.core.errors import LaraError
from lara_g1.core.observation import Observation

PROTOCOL_VERSION = 1
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_IMAGE_SIDE = 4096
MAX_INSTRUCTION_CHARS = 2048

# Error codes (the reply's error.code). docs/PROTOCOL.md lists when each is sent.
BAD_REQUEST = "bad_request"
TOO_LARGE = "too_large"
UNAUTHORIZED = "unauthorized"
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_ENDPOINT = "unknown_endpoint"
BUSY = "busy"
DEADLINE = "deadline"
INTERNAL = "internal"
ERROR_CODES = (BAD_REQUEST, TOO_LARGE, UNAUTHORIZED, UNSUPPORTED_VERSION, UNKNOWN_ENDPOINT, BUSY,
               DEADLINE, INTERNAL)

ENDPOINTS = ("ping", "metadata", "infer", "reset")
GROOT_ENDPOINTS = ("ping", "get_action", "get_modality_config")

# Array dtypes accepted on the wire: plain numeric kinds only (no objects, no void records).
_WIRE_KINDS = "biuf"


class ProtocolError(LaraError):
    """A request the server answers with an error reply instead of a result."""

    def __init__(self, code: str, message: str, request_id: Any = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id


# --------------------------------------------------------------------------------------- arrays

def encode_array(arr: np.ndarray) -> dict:
    """An ndarray as a ``__nd__`` map: little-endian dtype string, shape, C-order raw bytes."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in _WIRE_KINDS:
        raise TypeError(f"cannot send an array of dtype {arr.dtype} (numeric dtypes only)")
    arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False))
    return {"__nd__": True, "dtype": arr.dtype.str, "shape": list(arr.shape), "data": arr.tobytes()}


def decode_array(obj: Mapping) -> np.ndarray:
    """A ``__nd__`` map back to an ndarray (read-only view of the message bytes)."""
    try:
        dtype = np.dtype(obj["dtype"])
        shape = tuple(obj["shape"])
        data = obj["data"]
    except (KeyError, TypeError) as exc:
        raise ProtocolError(BAD_REQUEST, f"array map needs dtype, shape and data ({exc})") from None
    if dtype.kind not in _WIRE_KINDS or dtype.byteorder == ">":
        raise ProtocolError(BAD_REQUEST, f"array dtype {obj['dtype']!r} is not a little-endian numeric dtype")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ProtocolError(BAD_REQUEST, f"array shape {list(shape)} must be non-negative integers")
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError(BAD_REQUEST, "array data must be msgpack bin (bytes)")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise ProtocolError(BAD_REQUEST, f"array of dtype {dtype.str} and shape {list(shape)} needs "
                                         f"{expected} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _decode_groot_array(obj: Mapping) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
    except Exception as exc:  # numpy raises several types for bad .npy bytes
        raise ProtocolError(BAD_REQUEST, f"bad __ndarray_class__ array: {exc}") from None
    if arr.dtype.kind not in _WIRE_KINDS:
        raise ProtocolError(BAD_REQUEST, f"array dtype {arr.dtype} is not numeric")
    return arr


class InvalidArray:
    """Stands in for an array map that failed to decode, so the error can be answered with the
    request's id (the envelope is only read after the whole message is unpacked)."""

    def __init__(self, message: str):
        self.message = message


def _object_hook(obj: dict) -> Any:
    try:
        if obj.get("__nd__") is True:
            return decode_array(obj)
        if obj.get("__ndarray_class__") is True:
            return _decode_groot_array(obj)
    except ProtocolError as exc:
        return InvalidArray(exc.message)
    return obj


def check_arrays(request: Request) -> None:
    """Raise ``bad_request`` (with the request's id) if any array in the data failed to decode."""
    stack: list[Any] = [request.data]
    while stack:
        node = stack.pop()
        if isinstance(node, InvalidArray):
            raise ProtocolError(BAD_REQUEST, node.message, request.request_id)
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return encode_array(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__} in a lara-serve message")


def _groot_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, obj, allow_pickle=False)
        return {"__ndarray_class__": True, "as_npy": buf.getvalue()}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__} in a GR00T-style message")


def pack(obj: Any) -> bytes:
    """Encode a message (numpy arrays become ``__nd__`` maps)."""
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def pack_groot(obj: Any) -> bytes:
    """Encode a reply for a GR00T-style client (arrays as ``__ndarray_class__`` .npy bytes)."""
    return msgpack.packb(obj, default=_groot_default, use_bin_type=True)


def unpack(payload: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Any:
    """Decode one message. Raises :class:`ProtocolError` (``too_large`` or ``bad_request``)."""
    if len(payload) > max_bytes:
        raise ProtocolError(TOO_LARGE, f"message of {len(payload)} bytes exceeds the server's limit "
                                       f"of {max_bytes} bytes")
    try:
        return msgpack.unpackb(payload, raw=False, object_hook=_object_hook, strict_map_key=False)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises ExtraData, FormatError, ValueError, UnicodeDecodeError...
        raise ProtocolError(BAD_REQUEST, f"not a valid msgpack message: {type(exc).__name__}: {exc}") from None


# ------------------------------------------------------------------------------------- messages

@dataclass
class Request:
    endpoint: str
    data: dict
    request_id: Any = None
    token: str | None = None
    groot: bool = False  # the unversioned GR00T-style dialect


def parse_request(message: Any) -> Request:
    """Validate the envelope of a decoded message (the data's arrays: :func:`check_arrays`)."""
    if not isinstance(message, dict):
        raise ProtocolError(BAD_REQUEST, f"a request must be a msgpack map, got {type(message).__name__}")
    if "v" not in message:
        return _parse_groot_request(message)
    request_id = message.get("id")
    if not isinstance(request_id, (int, str)) or isinstance(request_id, bool):
        raise ProtocolError(BAD_REQUEST, "request 'id' must be an integer or a string")
    if message["v"] != PROTOCOL_VERSION:
        raise ProtocolError(UNSUPPORTED_VERSION, f"protocol version {message['v']!r} is not supported; "
                                                 f"this server speaks v{PROTOCOL_VERSION}", request_id)
    endpoint = message.get("endpoint")
    if not isinstance(endpoint, str):
        raise ProtocolError(BAD_REQUEST, "request 'endpoint' must be a string", request_id)
    data = message.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError(BAD_REQUEST, "request 'data' must be a map", request_id)
    token = message.get("token")
    if token is not None and not isinstance(token, str):
        raise ProtocolError(BAD_REQUEST, "request 'token' must be a string", request_id)
    return Request(endpoint, data, request_id, token)


def _parse_groot_request(message: dict) -> Request:
    endpoint = message.get("endpoint", "get_action")  # GR00T's server defaults the same way
    if not isinstance(endpoint, str):
        raise ProtocolError(BAD_REQUEST, "request 'endpoint' must be a string")
    data = message.get("data") or {}
    if not isinstance(data, dict):
        raise ProtocolError(BAD_REQUEST, "request 'data' must be a map")
    token = message.get("api_token")
    if token is not None and not isinstance(token, str):
        raise ProtocolError(BAD_REQUEST, "request 'api_token' must be a string")
    return Request(endpoint, data, None, token, groot=True)


def make_request(endpoint: str, request_id: Any, data: dict | None = None, token: str | None = None) -> dict:
    msg = {"v": PROTOCOL_VERSION, "id": request_id, "endpoint": endpoint, "data": data or {}}
    if token is not None:
        msg["token"] = token
    return msg


def ok_reply(request_id: Any, result: dict) -> dict:
    return {"v": PROTOCOL_VERSION, "id": request_id, "ok": True, "result": result}


def error_reply(request_id: Any, code: str, message: str) -> dict:
    return {"v": PROTOCOL_VERSION, "id": request_id, "ok": False, "error": {"code": code, "message": message}}


def groot_error_reply(code: str, message: str) -> dict:
    """GR00T's client raises on any reply holding an "error" key; the code leads the text."""
    return {"error": f"{code}: {message}"}


# ----------------------------------------------------------------------------------- infer data

@dataclass
class InferRequest:
    observation: Observation
    noise_seed: int | None = None
    deadline_ms: float | None = None
    jpeg: dict[str, bytes] = field(default_factory=dict)  # cameras that arrived as JPEG (for the dashboard)


def decode_jpeg(data: bytes, camera: str) -> np.ndarray:
    """A JPEG (or any Pillow-readable still) to uint8 RGB ``[H, W, 3]``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if max(w, h) > MAX_IMAGE_SIDE:
                raise ProtocolError(BAD_REQUEST, f"image {camera!r} is {w}x{h}; the largest side allowed "
                                                 f"is {MAX_IMAGE_SIDE}")
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except ProtocolError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ProtocolError(BAD_REQUEST, f"image {camera!r}: cannot decode the JPEG bytes ({exc})") from None


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def check_image(image: Any, camera: str) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ProtocolError(BAD_REQUEST, f"image {camera!r} must be an array or {{'jpeg': bytes}}")
    if image.dtype != np.uint8:
        raise ProtocolError(BAD_REQUEST, f"image {camera!r} must be uint8 ('|u1'), got {image.dtype.str}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ProtocolError(BAD_REQUEST, f"image {camera!r} must have shape [H, W, 3], got {list(image.shape)}")
    if max(image.shape[:2]) > MAX_IMAGE_SIDE:
        raise ProtocolError(BAD_REQUEST, f"image {camera!r} is {image.shape[1]}x{image.shape[0]}; the largest "
                                         f"side allowed is {MAX_IMAGE_SIDE}")
    return image


def check_state(state: Any, dim: int, name: str = "state") -> np.ndarray:
    if not isinstance(state, np.ndarray):
        raise ProtocolError(BAD_REQUEST, f"'{name}' must be an array (a __nd__ map)")
    if state.dtype != np.float32:
        raise ProtocolError(BAD_REQUEST, f"'{name}' must be float32 ('<f4'), got {state.dtype.str}")
    if state.shape != (dim,):
        raise ProtocolError(BAD_REQUEST, f"'{name}' must have shape [{dim}], got {list(state.shape)}")
    if not np.all(np.isfinite(state)):
        bad = np.flatnonzero(~np.isfinite(state)).tolist()
        raise ProtocolError(BAD_REQUEST, f"'{name}' holds NaN or infinite values at indices {bad}")
    return state


def check_instruction(instruction: Any) -> str | None:
    if instruction is None:
        return None
    if not isinstance(instruction, str):
        raise ProtocolError(BAD_REQUEST, "'instruction' must be a string")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise ProtocolError(BAD_REQUEST, f"'instruction' is longer than {MAX_INSTRUCTION_CHARS} characters")
    return instruction


def parse_infer(data: dict, state_dim: int, cameras: Sequence[str]) -> InferRequest:
    """Validate an ``infer`` data map into an :class:`InferRequest`."""
    unknown = sorted(set(data) - {"state", "images", "instruction", "noise_seed", "deadline_ms"})
    if unknown:
        raise ProtocolError(BAD_REQUEST, f"unknown infer fields {unknown}")
    if "state" not in data:
        raise ProtocolError(BAD_REQUEST, "infer needs 'state'")
    state = check_state(data["state"], state_dim)
    images_in = data.get("images")
    if not isinstance(images_in, dict):
        raise ProtocolError(BAD_REQUEST, f"infer needs 'images', a map of camera name -> frame; "
                                         f"cameras: {list(cameras)}")
    missing = [c for c in cameras if c not in images_in]
    extra = [c for c in images_in if c not in cameras]
    if missing or extra:
        raise ProtocolError(BAD_REQUEST, f"'images' must hold exactly the cameras {list(cameras)}; "
                                         f"missing {missing}, unexpected {extra}")
    images: dict[str, np.ndarray] = {}
    jpegs: dict[str, bytes] = {}
    for cam in cameras:
        frame = images_in[cam]
        if isinstance(frame, dict):
            jpeg = frame.get("jpeg")
            if set(frame) != {"jpeg"} or not isinstance(jpeg, (bytes, bytearray)):
                raise ProtocolError(BAD_REQUEST, f"image {cam!r}: a compressed frame is {{'jpeg': <bytes>}}")
            images[cam] = decode_jpeg(bytes(jpeg), cam)
            jpegs[cam] = bytes(jpeg)
        else:
            images[cam] = check_image(frame, cam)
    instruction = check_instruction(data.get("instruction"))
    seed = data.get("noise_seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
        raise ProtocolError(BAD_REQUEST, "'noise_seed' must be a non-negative integer below 2**63")
    deadline = data.get("deadline_ms")
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, (int, float))
                                 or not math.isfinite(deadline) or deadline <= 0):
        raise ProtocolError(BAD_REQUEST, "'deadline_ms' must be a positive number of milliseconds")
    return InferRequest(Observation(images=images, state=state, instruction=instruction), seed, deadline, jpegs)


def infer_result(actions: np.ndarray, timing_ms: Mapping[str, float], model: str) -> dict:
    return {"actions": np.ascontiguousarray(actions, dtype=np.float32),
            "timing_ms": {k: float(v) for k, v in timing_ms.items()}, "model": model}


# ------------------------------------------------------------------------- GR00T compatibility

def groot_keys(embodiment: Mapping, cameras: Sequence[str]) -> dict[str, list[str]]:
    """The GR00T-style modality keys this server understands, derived from the embodiment."""
    groups = list(embodiment["groups"])
    return {
        "video": [f"video.{c}" for c in cameras],
        "state": [f"state.{g}" for g in groups],
        "action": [f"action.{g}" for g in groups],
        "language": ["annotation.human.task_description"],
    }


def groot_modality_config(embodiment: Mapping, cameras: Sequence[str], horizon: int) -> dict:
    """``get_modality_config`` reply: GR00T ``ModalityConfig`` objects in their wire form."""
    keys = groot_keys(embodiment, cameras)
    delta = {"video": [0], "state": [0], "action": list(range(horizon)), "language": [0]}
    return {m: {"__ModalityConfig_class__": True,
                "as_json": json.dumps({"delta_indices": delta[m], "modality_keys": keys[m]})}
            for m in ("video", "state", "action", "language")}


def _groot_frame(arr: Any, key: str, batched: bool) -> list[np.ndarray]:
    """GR00T sends video as [T, H, W, 3] (one robot) or [B, T, H, W, 3]; we use the last step."""
    if not isinstance(arr, np.ndarray):
        raise ProtocolError(BAD_REQUEST, f"{key!r} must be an array")
    want = 5 if batched else 4
    if arr.ndim != want:
        raise ProtocolError(BAD_REQUEST, f"{key!r} must have {want} dims ({'[B, ' if batched else '['}"
                                         f"T, H, W, 3]), got shape {list(arr.shape)}")
    frames = arr[:, -1] if batched else arr[-1][None]
    return [check_image(f, key) for f in frames]


def _groot_state(arr: Any, key: str, size: int, batched: bool) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
        raise ProtocolError(BAD_REQUEST, f"{key!r} must be a float array")
    want = 3 if batched else 2
    if arr.ndim != want or arr.shape[-1] != size:
        raise ProtocolError(BAD_REQUEST, f"{key!r} must have shape {'[B, T, ' if batched else '[T, '}{size}], "
                                         f"got {list(arr.shape)}")
    last = arr[:, -1] if batched else arr[-1][None]
    return last.astype(np.float32)


def parse_groot_observation(data: dict, embodiment: Mapping, cameras: Sequence[str]) -> tuple[list[Observation], bool]:
    """A GR00T ``get_action`` data map to observations. Returns ``(observations, batched)``.

    ``state.<group>`` fill the group's slice of the 28-D state; a group the client does not send
    (GR00T's G1 config has no ``state.head``) takes the embodiment's default pose. With a single
    camera, any one ``video.*`` key is accepted (GR00T's G1 config calls it ``video.rs_view``).
    """
    video_keys = [k for k in data if k.startswith("video.")]
    if not video_keys:
        raise ProtocolError(BAD_REQUEST, f"get_action needs video keys {groot_keys(embodiment, cameras)['video']}")
    probe = data[video_keys[0]]
    batched = isinstance(probe, np.ndarray) and probe.ndim == 5
    if len(cameras) == 1 and len(video_keys) == 1:
        cam_keys = {cameras[0]: video_keys[0]}
    else:
        cam_keys = {c: f"video.{c}" for c in cameras}
        missing = [k for k in cam_keys.values() if k not in data]
        if missing:
            raise ProtocolError(BAD_REQUEST, f"get_action is missing video keys {missing}")
    frames = {c: _groot_frame(data[k], k, batched) for c, k in cam_keys.items()}
    batch = len(next(iter(frames.values())))
    if any(len(f) != batch for f in frames.values()):
        raise ProtocolError(BAD_REQUEST, "video keys disagree on the batch size")

    dim = int(embodiment["dim"])
    state = np.tile(np.asarray(embodiment["default_pose"], dtype=np.float32), (batch, 1))
    groups = embodiment["groups"]
    unknown = [k for k in data if k.startswith("state.") and k[len("state."):] not in groups]
    if unknown:
        raise ProtocolError(BAD_REQUEST, f"unknown state keys {unknown}; this embodiment has "
                                         f"{['state.' + g for g in groups]}")
    for g, (start, stop, _unit) in groups.items():
        key = f"state.{g}"
        if key in data:
            vals = _groot_state(data[key], key, stop - start, batched)
            if len(vals) != batch:
                raise ProtocolError(BAD_REQUEST, f"{key!r} has batch {len(vals)}, the video has {batch}")
            state[:, start:stop] = vals
    for row in state:
        check_state(row, dim)

    instructions: list[str | None] = [None] * batch
    lang_keys = [k for k in data if k.startswith("annotation.")]
    if lang_keys:
        lang = data[lang_keys[0]]
        if isinstance(lang, str):
            lang = [lang]
        flat = [x[0] if isinstance(x, (list, tuple)) and x else x for x in lang] if isinstance(lang, (list, tuple)) else None
        if not flat or not all(isinstance(s, str) for s in flat) or len(flat) not in (1, batch):
            raise ProtocolError(BAD_REQUEST, f"{lang_keys[0]!r} must be a string or a list of {batch} strings")
        instructions = [check_instruction(s) for s in (flat * batch if len(flat) == 1 else flat)]
    observations = [Observation(images={c: frames[c][b] for c in frames}, state=state[b], instruction=instructions[b])
                    for b in range(batch)]
    return observations, batched


def groot_actions(actions: np.ndarray, embodiment: Mapping, batched: bool) -> dict[str, np.ndarray]:
    """Our ``[B, H, 28]`` chunk as GR00T ``action.<group>`` arrays (``[H, n]``, or ``[B, H, n]``)."""
    out = {}
    for g, (start, stop, _unit) in embodiment["groups"].items():
        part = np.ascontiguousarray(actions[:, :, start:stop], dtype=np.float32)
        out[f"action.{g}"] = part if batched else part[0]
    return out
