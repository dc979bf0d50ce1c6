"""Inspire hands on the G1: the DFX variant over DDS and the FTP variant over Modbus TCP.

:class:`HandMapping` is the ONE place where the 28-D embodiment layout (left hand, right hand,
0..1 with 1 = open, order pinky, ring, middle, index, thumb bend, thumb rotation) meets the
hands' wire formats:

- DFX (``rt/inspire/cmd`` / ``rt/inspire/state``, ``unitree_go`` ``MotorCmds_``/``MotorStates_``):
  12 entries, the RIGHT hand in entries 0-5 and the LEFT hand in 6-11, q in 0..1 (1 = open).
- FTP (Ethernet): one Modbus TCP server per hand (port 6000), 6 registers from ANGLE_SET (1486)
  written and from ANGLE_ACT (1546) read, values 0..1000 (1000 = open), same actuator order.
"""
from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np

from lara_g1.core.embodiment import Embodiment
from lara_g1.core.errors import LaraError
from lara_g1.robot.dds import participant as dds
from lara_g1.robot.dds.messages import GoMotorCmd_, MotorCmds_, MotorStates_

log = logging.getLogger(__name__)

FINGERS_PER_HAND = 6
DFX_RIGHT = slice(0, 6)    # rt/inspire/* entries of the right hand
DFX_LEFT = slice(6, 12)    # ... and of the left hand
FTP_PORT = 6000
FTP_ANGLE_SET = 1486
FTP_ANGLE_ACT = 1546
FTP_FULL_SCALE = 1000      # register value of a fully open actuator


class HandError(LaraError, RuntimeError):
    """A hand that cannot be reached or answers something we cannot use."""


@dataclass(frozen=True)
class HandMapping:
    """Embodiment hand slices <-> DFX entries and FTP register values."""

    left: slice
    right: slice

    @classmethod
    def from_embodiment(cls, emb: Embodiment) -> "HandMapping":
        left, right = emb.group("left_hand"), emb.group("right_hand")
        for g in (left, right):
            if g.size != FINGERS_PER_HAND:
                raise ValueError(f"embodiment group {g.name} has {g.size} joints; Inspire hands have "
                                 f"{FINGERS_PER_HAND}")
        return cls(left.slice, right.slice)

    def split(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(left6, right6) from a full embodiment vector, clipped to 0..1."""
        q = np.asarray(q, dtype=np.float32)
        return np.clip(q[self.left], 0.0, 1.0), np.clip(q[self.right], 0.0, 1.0)

    def to_dfx(self, q: np.ndarray) -> np.ndarray:
        left, right = self.split(q)
        out = np.empty(2 * FINGERS_PER_HAND, dtype=np.float32)
        out[DFX_RIGHT], out[DFX_LEFT] = right, left
        return out

    @staticmethod
    def from_dfx(entries) -> tuple[np.ndarray, np.ndarray]:
        """(left6, right6) from 12 DFX entries (right first on the wire)."""
        v = np.asarray(entries, dtype=np.float32)
        if v.shape != (2 * FINGERS_PER_HAND,):
            raise HandError(f"an Inspire DFX message must carry 12 entries, got {v.shape[0]}")
        return v[DFX_LEFT].copy(), v[DFX_RIGHT].copy()

    @staticmethod
    def to_ftp(values: np.ndarray) -> list[int]:
        """0..1 (1 = open) -> Modbus register values 0..1000 (1000 = open)."""
        v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
        return [int(x) for x in np.rint(v * FTP_FULL_SCALE)]

    @staticmethod
    def from_ftp(registers) -> np.ndarray:
        """Modbus register values (0..1000, read as signed 16-bit) -> 0..1."""
        r = np.asarray(registers, dtype=np.float64)
        return np.clip(r / FTP_FULL_SCALE, 0.0, 1.0).astype(np.float32)

    def join(self, q: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
        """Write (left6, right6) into a full embodiment vector in place."""
        q[self.left], q[self.right] = left, right


# ----------------------------------------------------------------------------- DFX over DDS
class InspireDFX:
    """Unitree's Inspire DFX service: ``MotorCmds_`` out, ``MotorStates_`` in (12 entries each)."""

    def __init__(self, mapping: HandMapping, domain_id: int, interface: str | None,
                 cmd_topic: str = "rt/inspire/cmd", state_topic: str = "rt/inspire/state"):
        self.mapping = mapping
        self._writer = dds.writer(domain_id, cmd_topic, MotorCmds_, interface)
        self.reader = dds.reader(domain_id, state_topic, MotorStates_, interface)
        self._state: tuple[np.ndarray, np.ndarray, float] | None = None

    def send(self, q: np.ndarray) -> None:
        entries = self.mapping.to_dfx(q)
        self._writer.write(MotorCmds_(cmds=[GoMotorCmd_(mode=1, q=float(v)) for v in entries]))

    def poll(self) -> None:
        """Take new state samples (called by the robot's receive thread)."""
        for msg in self.reader.take(N=8):
            if not isinstance(msg, MotorStates_):
                continue
            try:
                left, right = self.mapping.from_dfx([s.q for s in msg.states])
            except HandError as exc:
                log.warning("ignoring rt/inspire/state: %s", exc)
                continue
            self._state = (left, right, time.monotonic())

    def state(self) -> tuple[np.ndarray, np.ndarray, float] | None:
        return self._state

    def close(self) -> None:
        self._writer = None


# ----------------------------------------------------------------------------- FTP over Modbus TCP
class ModbusError(HandError):
    pass


class ModbusTcpClient:
    """The two Modbus TCP requests the Inspire FTP hand needs (function 0x03 and 0x10)."""

    def __init__(self, host: str, port: int = FTP_PORT, unit_id: int = 1, timeout_s: float = 0.2):
        self.host, self.port, self.unit_id, self.timeout_s = host, int(port), int(unit_id), timeout_s
        self._sock: socket.socket | None = None
        self._tid = 0

    def connect(self) -> None:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as exc:
            raise ModbusError(f"cannot reach the Inspire hand at {self.host}:{self.port}: {exc}") from exc
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ModbusError(f"{self.host}:{self.port} closed the connection")
            buf += chunk
        return buf

    def _request(self, pdu: bytes) -> bytes:
        if self._sock is None:
            self.connect()
        self._tid = (self._tid + 1) & 0xFFFF
        mbap = struct.pack(">HHHB", self._tid, 0, len(pdu) + 1, self.unit_id)
        try:
            self._sock.sendall(mbap + pdu)
            tid, proto, length, _unit = struct.unpack(">HHHB", self._recv_exact(7))
            body = self._recv_exact(length - 1)
        except OSError as exc:
            self.close()
            raise ModbusError(f"Modbus request to {self.host}:{self.port} failed: {exc}") from exc
        if tid != self._tid or proto != 0:
            self.close()
            raise ModbusError(f"Modbus reply out of step (transaction {tid}, expected {self._tid})")
        if body[0] & 0x80:
            raise ModbusError(f"Modbus exception {body[1] if len(body) > 1 else '?'} for function "
                              f"{pdu[0]:#04x} at {self.host}:{self.port}")
        if body[0] != pdu[0]:
            raise ModbusError(f"Modbus reply for function {body[0]:#04x}, expected {pdu[0]:#04x}")
        return body

    def read_holding_registers(self, address: int, count: int) -> list[int]:
        """Function 0x03; values decoded as signed 16-bit (the hand reports -1 for 'unknown')."""
        body = self._request(struct.pack(">BHH", 0x03, address, count))
        if len(body) < 2 or body[1] != 2 * count or len(body) != 2 + 2 * count:
            raise ModbusError(f"Modbus read of {count} registers returned {len(body) - 2} bytes")
        return list(struct.unpack(f">{count}h", body[2:]))

    def write_multiple_registers(self, address: int, values: list[int]) -> None:
        """Function 0x10."""
        n = len(values)
        pdu = struct.pack(f">BHHB{n}h", 0x10, address, n, 2 * n, *values)
        body = self._request(pdu)
        if struct.unpack(">BHH", body[:5]) != (0x10, address, n):
            raise ModbusError(f"Modbus write reply does not confirm {n} registers at {address}")


class InspireFTP:
    """Both FTP hands, driven from one background thread at ``rate_hz`` (latest target wins).

    Modbus round trips take milliseconds, so they never run on the caller's control thread:
    :meth:`send` only stores the target. A hand that stops answering keeps its last state
    stamp, so staleness shows in :meth:`state`; the thread reconnects on its own.
    """

    def __init__(self, mapping: HandMapping, left: tuple[str, int], right: tuple[str, int],
                 unit_id: int = 1, rate_hz: float = 50.0, timeout_s: float = 0.2):
        self.mapping = mapping
        self.clients = {"left": ModbusTcpClient(left[0], left[1], unit_id, timeout_s),
                        "right": ModbusTcpClient(right[0], right[1], unit_id, timeout_s)}
        self.period = 1.0 / float(rate_hz)
        self._target: dict[str, list[int] | None] = {"left": None, "right": None}
        self._actual: dict[str, tuple[np.ndarray, float] | None] = {"left": None, "right": None}
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inspire-ftp", daemon=True)
        self._thread.start()

    def send(self, q: np.ndarray) -> None:
        left, right = self.mapping.split(q)
        with self._lock:
            self._target = {"left": self.mapping.to_ftp(left), "right": self.mapping.to_ftp(right)}

    def poll(self) -> None:
        """Nothing to do: the FTP thread polls the hands."""

    def _cycle(self, side: str) -> None:
        client = self.clients[side]
        with self._lock:
            target = self._target[side]
        if target is not None:
            client.write_multiple_registers(FTP_ANGLE_SET, target)
        actual = client.read_holding_registers(FTP_ANGLE_ACT, FINGERS_PER_HAND)
        self._actual[side] = (self.mapping.from_ftp(actual), time.monotonic())

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            for side in ("left", "right"):
                try:
                    self._cycle(side)
                except HandError as exc:
                    self.errors += 1
                    if self.errors in (1, 10) or self.errors % 500 == 0:
                        log.warning("Inspire FTP %s hand: %s (%d errors so far)", side, exc, self.errors)
            self._stop.wait(max(0.0, self.period - (time.monotonic() - t0)))

    def state(self) -> tuple[np.ndarray, np.ndarray, float] | None:
        left, right = self._actual["left"], self._actual["right"]
        if left is None or right is None:
            return None
        return left[0], right[0], min(left[1], right[1])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        for c in self.clients.values():
            c.close()


def make_hands(config: dict, mapping: HandMapping, domain_id: int, interface: str | None):
    """The hand driver named by a robot config's ``hands`` section (variant dfx | ftp)."""
    variant = config.get("variant", "dfx")
    if variant == "dfx":
        return InspireDFX(mapping, domain_id, interface, config.get("cmd_topic", "rt/inspire/cmd"),
                          config.get("state_topic", "rt/inspire/state"))
    if variant == "ftp":
        ftp = config.get("ftp") or {}
        try:
            left = (str(ftp["left"]["host"]), int(ftp["left"].get("port", FTP_PORT)))
            right = (str(ftp["right"]["host"]), int(ftp["right"].get("port", FTP_PORT)))
        except (KeyError, TypeError, AttributeError):
            raise ValueError("hands.variant ftp needs hands.ftp.left.host and hands.ftp.right.host") from None
        return InspireFTP(mapping, left, right, unit_id=int(ftp.get("unit_id", 1)),
                          rate_hz=float(ftp.get("rate_hz", 50.0)), timeout_s=float(ftp.get("timeout_s", 0.2)))
    raise ValueError(f"hands.variant must be 'dfx' or 'ftp', got {variant!r}")
