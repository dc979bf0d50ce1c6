"""Inspire hands: the one mapping onto the 28-D layout, and the FTP variant over real Modbus TCP."""
from __future__ import annotations

import socketserver
import struct
import threading
import time

import numpy as np
import pytest

from lara_g1.core.embodiment import load_embodiment
from lara_g1.robot.hands import (
    FTP_ANGLE_ACT,
    FTP_ANGLE_SET,
    HandError,
    HandMapping,
    InspireFTP,
    ModbusError,
    ModbusTcpClient,
    make_hands,
)

EMB = load_embodiment("g1")
MAP = HandMapping.from_embodiment(EMB)


def q_with_hands(left, right) -> np.ndarray:
    q = EMB.default_pose.copy()
    q[EMB.group("left_hand").slice] = left
    q[EMB.group("right_hand").slice] = right
    return q


class ModbusHand(socketserver.ThreadingTCPServer):
    """A tiny Modbus TCP server standing in for one Inspire FTP hand: ANGLE_ACT follows ANGLE_SET."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self):
        self.registers: dict[int, int] = {FTP_ANGLE_ACT + i: 1000 for i in range(6)}
        self.writes: list[tuple[int, list[int]]] = []
        super().__init__(("127.0.0.1", 0), _ModbusHandler)


class _ModbusHandler(socketserver.BaseRequestHandler):
    def handle(self):
        srv: ModbusHand = self.server
        while True:
            head = self._read(7)
            if head is None:
                return
            tid, proto, length, unit = struct.unpack(">HHHB", head)
            pdu = self._read(length - 1)
            fn = pdu[0]
            if fn == 0x03:
                addr, count = struct.unpack(">HH", pdu[1:5])
                values = [srv.registers.get(addr + i, 0) for i in range(count)]
                body = struct.pack(f">BB{count}h", 0x03, 2 * count, *values)
            elif fn == 0x10:
                addr, count, nbytes = struct.unpack(">HHB", pdu[1:6])
                values = list(struct.unpack(f">{count}h", pdu[6:6 + nbytes]))
                srv.writes.append((addr, values))
                for i, v in enumerate(values):
                    srv.registers[addr + i] = v
                    if addr == FTP_ANGLE_SET:
                        srv.registers[FTP_ANGLE_ACT + i] = v
                body = struct.pack(">BHH", 0x10, addr, count)
            else:
                body = struct.pack(">BB", fn | 0x80, 1)
            self.request.sendall(struct.pack(">HHHB", tid, proto, len(body) + 1, unit) + body)

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf


@pytest.fixture()
def hands():
    servers = [ModbusHand(), ModbusHand()]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield servers
    for s in servers:
        s.shutdown()
        s.server_close()


def test_dfx_order_is_right_hand_first():
    left = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], dtype=np.float32)
    right = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.55], dtype=np.float32)
    entries = MAP.to_dfx(q_with_hands(left, right))
    np.testing.assert_allclose(entries[:6], right)
    np.testing.assert_allclose(entries[6:], left)
    back_left, back_right = MAP.from_dfx(entries)
    np.testing.assert_allclose(back_left, left)
    np.testing.assert_allclose(back_right, right)
    with pytest.raises(HandError, match="12 entries"):
        MAP.from_dfx(entries[:11])


def test_ftp_scale_and_clipping():
    assert MAP.to_ftp([1.0, 0.0, 0.5, 1.5, -0.2, 0.1234]) == [1000, 0, 500, 1000, 0, 123]
    np.testing.assert_allclose(MAP.from_ftp([1000, 0, 500, -1, 1200, 250]), [1, 0, 0.5, 0, 1, 0.25])


def test_ftp_hands_over_modbus_tcp(hands):
    left_srv, right_srv = hands
    ftp = InspireFTP(MAP, ("127.0.0.1", left_srv.server_address[1]), ("127.0.0.1", right_srv.server_address[1]),
                     rate_hz=100.0)
    try:
        left = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
        right = np.array([1.0, 1.0, 1.0, 0.5, 0.5, 0.25])
        ftp.send(q_with_hands(left, right))
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            st = ftp.state()
            if st is not None and np.allclose(st[0], left, atol=1e-3) and np.allclose(st[1], right, atol=1e-3):
                break
            time.sleep(0.01)
        assert any(w == (FTP_ANGLE_SET, [0, 200, 400, 600, 800, 1000]) for w in left_srv.writes)
        assert any(w == (FTP_ANGLE_SET, [1000, 1000, 1000, 500, 500, 250]) for w in right_srv.writes)
        st = ftp.state()
        np.testing.assert_allclose(st[0], left, atol=1e-3)
        np.testing.assert_allclose(st[1], right, atol=1e-3)
        assert ftp.errors == 0
    finally:
        ftp.close()


def test_modbus_client_errors_are_clear(hands):
    client = ModbusTcpClient("127.0.0.1", hands[0].server_address[1])
    assert client.read_holding_registers(FTP_ANGLE_ACT, 6) == [1000] * 6
    client.close()
    free = socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    port = free.server_address[1]
    free.server_close()
    with pytest.raises(ModbusError, match="cannot reach the Inspire hand"):
        ModbusTcpClient("127.0.0.1", port, timeout_s=0.2).read_holding_registers(FTP_ANGLE_ACT, 6)


def test_make_hands_validates_the_variant():
    with pytest.raises(ValueError, match="dfx' or 'ftp"):
        make_hands({"variant": "serial"}, MAP, 150, "lo")
    with pytest.raises(ValueError, match="hands.ftp.left.host"):
        make_hands({"variant": "ftp", "ftp": {}}, MAP, 150, "lo")
