"""A GR00T N1.6 ``PolicyClient`` written from the facts of docs/PROTOCOL.md section 7.2 (what GR00T's
client puts on the wire), not from GR00T's code: msgpack maps, ndarrays as
``{"__ndarray_class__": True, "as_npy": <np.save bytes>}``, requests ``{"endpoint", "data",
"api_token"}``, replies ``[action, info]`` or ``{"error": str}``."""
from __future__ import annotations

import io
from dataclasses import dataclass

import msgpack
import numpy as np
import zmq


def _encode(obj):
    if isinstance(obj, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, obj, allow_pickle=False)
        return {"__ndarray_class__": True, "as_npy": buf.getvalue()}
    return obj


def _decode(obj):
    if "__ndarray_class__" in obj:
        return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
    return obj


@dataclass
class ModalityConfig:  # the fields GR00T N1.6's client builds from get_modality_config's as_json
    delta_indices: list
    modality_keys: list


def _decode_n16(obj):
    if "__ModalityConfig_class__" in obj:
        return ModalityConfig(**obj["as_json"])  # what N1.6's decoder does; a JSON string fails here
    return _decode(obj)


class Gr00tClient:
    """REQ socket; requests and replies exactly as GR00T N1.6's PolicyClient encodes them."""

    def __init__(self, address: str, api_token: str | None = None):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)
        self.api_token = api_token

    def raw(self, payload: bytes, hook=_decode):
        self.sock.send(payload)
        assert self.sock.poll(60000), "no reply within 60 s"
        return msgpack.unpackb(self.sock.recv(), object_hook=hook)

    def call(self, endpoint: str, data=None, requires_input: bool = True, hook=_decode):
        request = {"endpoint": endpoint}
        if requires_input:
            request["data"] = data
        if self.api_token:
            request["api_token"] = self.api_token
        return self.raw(msgpack.packb(request, default=_encode), hook)

    def get_action(self, observation, options=None):
        return self.call("get_action", {"observation": observation, "options": options})

    def reset(self, options=None):
        return self.call("reset", {"options": options})

    def ping(self):
        return self.call("ping", requires_input=False)

    def get_modality_config(self):
        return self.call("get_modality_config", requires_input=False, hook=_decode_n16)

    def close(self):
        self.sock.close(0)
        self.ctx.term()


# ----------------------------------------------------------------------------------- inputs
