"""runtime.client.PolicyClient against a hand-driven ROUTER socket (real ZMQ over loopback).

The peer here is a bare ROUTER so the tests control exactly when (and whether) a reply comes;
tests against the real server and engine are in test_server.py.
"""
from __future__ import annotations

from threading import Thread

import msgpack
import numpy as np
import pytest
import zmq

from lara_g1.runtime.client import PolicyClient, ServerError, ServerTimeout


@pytest.fixture
def router():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(0)
    ctx.term()


def _recv(sock):
    assert sock.poll(5000), "the client's request never arrived"
    identity, empty, body = sock.recv_multipart()
    assert empty == b""
    return identity, msgpack.unpackb(body, raw=False)


def _send(sock, identity, reply):
    sock.send_multipart([identity, b"", msgpack.packb(reply, use_bin_type=True)])


@pytest.mark.timeout(30)
def test_timeout_is_applied_and_next_call_uses_a_fresh_socket(router):
    sock, addr = router
    client = PolicyClient(addr, timeout_s=0.3)
    with pytest.raises(ServerTimeout):
        client.ping()
    old_identity, old_req = _recv(sock)

    # The next call must not be stuck behind the unanswered one (a REQ socket would refuse to send).
    result = {}
    t = Thread(target=lambda: result.setdefault("r", client.call("ping", timeout_s=5)))
    t.start()
    new_identity, new_req = _recv(sock)
    assert new_identity != old_identity, "the client reused the socket that timed out"
    assert new_req["id"] != old_req["id"]
    # A late answer to the old request goes nowhere; the new request gets its own answer.
    _send(sock, old_identity, {"v": 1, "id": old_req["id"], "ok": True, "result": {"server_time": -1.0}})
    _send(sock, new_identity, {"v": 1, "id": new_req["id"], "ok": True, "result": {"server_time": 42.0}})
    t.join(10)
    assert result["r"] == {"server_time": 42.0}
    client.close()


@pytest.mark.timeout(30)
def test_server_errors_are_typed_and_carry_the_code(router):
    sock, addr = router
    client = PolicyClient(addr, token="secret", timeout_s=5)
    errors = []

    def call():
        try:
            client.infer(np.zeros(28, np.float32), {"head": np.zeros((4, 4, 3), np.uint8)}, noise_seed=3,
                         deadline_ms=40)
        except ServerError as exc:
            errors.append(exc)

    t = Thread(target=call)
    t.start()
    identity, req = _recv(sock)
    assert req["v"] == 1 and req["endpoint"] == "infer" and req["token"] == "secret"
    assert req["data"]["noise_seed"] == 3 and req["data"]["deadline_ms"] == 40
    state = req["data"]["state"]
    assert state["__nd__"] is True and state["dtype"] == "<f4" and state["shape"] == [28]
    _send(sock, identity, {"v": 1, "id": req["id"], "ok": False, "error": {"code": "busy", "message": "full"}})
    t.join(10)
    assert len(errors) == 1 and errors[0].code == "busy" and errors[0].message == "full"
    assert not isinstance(errors[0], ServerTimeout)
    client.close()


@pytest.mark.timeout(30)
def test_jpeg_bytes_are_sent_as_jpeg_frames_and_reply_ids_are_checked(router):
    sock, addr = router
    client = PolicyClient(addr, timeout_s=5)
    errors = []

    def call():
        try:
            client.infer(np.zeros(28, np.float32), {"head": b"\xff\xd8fakejpeg"})
        except ServerError as exc:
            errors.append(exc)

    t = Thread(target=call)
    t.start()
    identity, req = _recv(sock)
    assert req["data"]["images"]["head"] == {"jpeg": b"\xff\xd8fakejpeg"}
    _send(sock, identity, {"v": 1, "id": "someone-else", "ok": True, "result": {}})
    t.join(10)
    assert errors and errors[0].code == "internal" and "does not match" in errors[0].message
    client.close()
