"""PolicyClient: the robot's side of the lara-serve protocol (used by lara-robot).

Every call is bounded by ``timeout_s`` (polled, not a blocking recv). After a timeout the REQ
socket is in a state where it can neither send nor receive, so it is closed and a fresh one is
connected before the next call; a late reply to the old request can never be mistaken for the
answer to a new one. Server errors are raised as :class:`ServerError` carrying the code.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import zmq

from lara_g1.core.errors import LaraError
from lara_g1.runtime import protocol as P


class ServerError(LaraError, RuntimeError):
    """The server answered with an error (``code`` is one of runtime.protocol.ERROR_CODES)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ServerTimeout(LaraError, TimeoutError):
    """No reply within the timeout (the server is down, unreachable or overloaded)."""


@dataclass
class InferReply:
    actions: np.ndarray            # float32 [H, 28]
    timing_ms: dict[str, float]
    model: str


class PolicyClient:
    """A REQ-socket client. Not thread-safe: give each thread (robot) its own client."""

    def __init__(self, address: str = "tcp://127.0.0.1:5555", token: str | None = None, timeout_s: float = 2.0):
        self.address = address
        self.token = token
        self.timeout_s = timeout_s
        self._ctx = zmq.Context()
        self._socket: zmq.Socket | None = None
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}-{id(self) & 0xFFFFFF:x}-"
        self._connect()

    def _connect(self) -> None:
        sock = self._ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        if "[" in self.address:  # an IPv6 literal such as tcp://[::1]:5555
            sock.setsockopt(zmq.IPV6, 1)
        sock.connect(self.address)
        self._socket = sock

    def _reconnect(self) -> None:
        if self._socket is not None:
            self._socket.close(0)
        self._connect()

    def call(self, endpoint: str, data: Mapping[str, Any] | None = None, timeout_s: float | None = None) -> dict:
        """One request/reply round trip; returns the reply's ``result`` map."""
        if self._socket is None:
            raise RuntimeError("client is closed")
        request_id = f"{self._prefix}{next(self._ids)}"
        payload = P.pack(P.make_request(endpoint, request_id, dict(data or {}), self.token))
        timeout_ms = int(1000 * (self.timeout_s if timeout_s is None else timeout_s))
        try:
            if not self._socket.poll(timeout_ms, zmq.POLLOUT):
                raise ServerTimeout(f"could not send to {self.address} within {timeout_ms} ms")
            self._socket.send(payload, zmq.NOBLOCK)
            if not self._socket.poll(timeout_ms, zmq.POLLIN):
                raise ServerTimeout(f"no reply from {self.address} to {endpoint!r} within {timeout_ms} ms")
            raw = self._socket.recv(zmq.NOBLOCK)
        except (ServerTimeout, zmq.ZMQError):
            self._reconnect()
            raise
        try:
            reply = P.unpack(raw, max_bytes=1 << 31)
        except P.ProtocolError as exc:
            raise ServerError(P.BAD_REQUEST, f"unreadable reply from the server: {exc.message}") from None
        if not isinstance(reply, dict) or "ok" not in reply:
            raise ServerError(P.INTERNAL, f"reply is not a lara-serve v{P.PROTOCOL_VERSION} reply: {reply!r:.200}")
        if not reply["ok"]:
            err = reply.get("error") or {}
            raise ServerError(str(err.get("code", P.INTERNAL)), str(err.get("message", "")))
        if reply.get("id") != request_id:
            raise ServerError(P.INTERNAL, f"reply id {reply.get('id')!r} does not match request id {request_id!r}")
        return reply["result"]

    def ping(self) -> float:
        """The server's wall-clock time (seconds since the epoch)."""
        return float(self.call("ping")["server_time"])

    def metadata(self) -> dict:
        return self.call("metadata")

    def reset(self) -> None:
        self.call("reset")

    def infer(self, state: np.ndarray, images: Mapping[str, np.ndarray | bytes], instruction: str | None = None,
              noise_seed: int | None = None, deadline_ms: float | None = None) -> InferReply:
        """One action chunk. ``images``: camera -> uint8 [H, W, 3] RGB, or JPEG bytes."""
        frames = {cam: ({"jpeg": bytes(img)} if isinstance(img, (bytes, bytearray)) else np.asarray(img))
                  for cam, img in images.items()}
        data: dict[str, Any] = {"state": np.asarray(state, dtype=np.float32), "images": frames}
        if instruction is not None:
            data["instruction"] = instruction
        if noise_seed is not None:
            data["noise_seed"] = int(noise_seed)
        if deadline_ms is not None:
            data["deadline_ms"] = deadline_ms
        result = self.call("infer", data)
        actions = np.array(result["actions"], dtype=np.float32)  # own the memory (not a view of the message)
        return InferReply(actions, dict(result.get("timing_ms", {})), str(result.get("model", "")))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None
        self._ctx.term()

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
