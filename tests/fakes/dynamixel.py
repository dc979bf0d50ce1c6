"""DYNAMIXEL X-series servos on a pseudo-terminal, speaking Protocol 2.0, for the head mount tests.

Written from ROBOTIS' public Protocol 2.0 description (e-Manual, "DYNAMIXEL Protocol 2.0"):

- packet: ``FF FF FD 00`` (header + reserved), ID, length (2 bytes, little-endian: instruction,
  parameters and CRC, counted after byte stuffing), instruction, parameters, CRC-16 (low byte
  first);
- CRC-16: polynomial 0x8005 (x^16 + x^15 + x^2 + 1), initial value 0, not reflected, no final xor,
  over everything from the header to the last parameter, stuffing included;
- byte stuffing: in the instruction and parameters, every ``FF FF FD`` is sent as ``FF FF FD FD``;
- status packet: instruction 0x55, then the error byte, then the parameters;
- instructions: PING 0x01 (model number, firmware), READ 0x02, WRITE 0x03, SYNC READ 0x82 (each
  listed servo answers in turn), SYNC WRITE 0x83 (no answer); broadcast ID 0xFE;
- errors: 0x03 CRC, 0x02 instruction, 0x06 data limit, 0x07 access (read-only item, or the EEPROM
  area while the torque is on).

:class:`FakeDynamixelBus` opens a pty (``os.openpty()``), serves it on a thread, and holds one
control table per ID (XM430-W350 layout: Operating Mode 11, Max/Min Position Limit 48/52, Torque
Enable 64, Goal Position 116, Present Position 132). With the torque on, Present Position moves
towards Goal Position at ``speed`` ticks/s; with it off, it stays, or goes where a test puts it
(:meth:`FakeDynamixelBus.turn_by_hand`).
"""
from __future__ import annotations

import contextlib
import os
import select
import struct
import sys
import threading
import time
import tty

HEADER = b"\xff\xff\xfd\x00"
BROADCAST = 0xFE
PING, READ, WRITE, SYNC_READ, SYNC_WRITE, STATUS = 0x01, 0x02, 0x03, 0x82, 0x83, 0x55
ERR_INSTRUCTION, ERR_CRC, ERR_DATA_LIMIT, ERR_ACCESS = 0x02, 0x03, 0x06, 0x07

MODEL_XM430_W350 = 1020
TABLE_SIZE = 662
OPERATING_MODE, MAX_POSITION_LIMIT, MIN_POSITION_LIMIT = 11, 48, 52
TORQUE_ENABLE, GOAL_POSITION, PRESENT_POSITION = 64, 116, 132
EEPROM_END = 64
READ_ONLY = [(0, 7), (69, 71), (120, 148)]   # model/firmware, registered/hw error, present values


def crc16(data: bytes, crc: int = 0) -> int:
    """CRC-16 with polynomial 0x8005, MSB first (bit by bit, as the protocol describes it)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def stuff(body: bytes) -> bytes:
    """Byte stuffing over instruction + parameters: FF FF FD -> FF FF FD FD."""
    out = bytearray()
    for b in body:
        out.append(b)
        if len(out) >= 3 and out[-3:] == b"\xff\xff\xfd":
            out.append(0xFD)
    return bytes(out)


def unstuff(body: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(body):
        out.append(body[i])
        if len(out) >= 3 and out[-3:] == b"\xff\xff\xfd" and i + 1 < len(body) and body[i + 1] == 0xFD:
            i += 1          # drop the stuffed FD
        i += 1
    return bytes(out)


def packet(servo_id: int, instruction: int, params: bytes = b"") -> bytes:
    """A complete packet: header, ID, length, stuffed instruction + parameters, CRC."""
    body = stuff(bytes([instruction]) + bytes(params))
    head = HEADER + bytes([servo_id]) + struct.pack("<H", len(body) + 2)
    crc = crc16(head + body)
    return head + body + struct.pack("<H", crc)


def status_packet(servo_id: int, error: int = 0, params: bytes = b"") -> bytes:
    return packet(servo_id, STATUS, bytes([error]) + bytes(params))


def parse(buffer: bytearray) -> tuple[int, int, bytes, bool] | None:
    """Take one packet off the front of ``buffer``: ``(id, instruction, params, crc_ok)``, or None
    while incomplete. Bytes before a header are dropped."""
    start = buffer.find(HEADER)
    if start < 0:
        del buffer[: max(0, len(buffer) - 3)]
        return None
    del buffer[:start]
    if len(buffer) < 7:
        return None
    length = struct.unpack_from("<H", buffer, 5)[0]
    total = 7 + length
    if length < 3 or len(buffer) < total:
        if length < 3:
            del buffer[:4]
        return None
    raw = bytes(buffer[:total])
    del buffer[:total]
    ok = crc16(raw[:-2]) == struct.unpack_from("<H", raw, total - 2)[0]
    body = unstuff(raw[7:-2])
    return raw[4], body[0], body[1:], ok


class Servo:
    def __init__(self, servo_id: int, position: int, model: int = MODEL_XM430_W350) -> None:
        self.id = servo_id
        self.table = bytearray(TABLE_SIZE)
        struct.pack_into("<H", self.table, 0, model)
        self.table[6] = 46                         # firmware version
        self.table[7] = servo_id
        self.table[8] = 3                          # Baud Rate(8): 1 Mbps
        self.table[OPERATING_MODE] = 3             # position control (factory default)
        struct.pack_into("<i", self.table, MAX_POSITION_LIMIT, 4095)
        struct.pack_into("<i", self.table, MIN_POSITION_LIMIT, 0)
        self.set4(PRESENT_POSITION, position)
        self.set4(GOAL_POSITION, position % 4096)
        self.exact = float(position)

    def get4(self, address: int) -> int:
        return struct.unpack_from("<i", self.table, address)[0]

    def set4(self, address: int, value: int) -> None:
        struct.pack_into("<i", self.table, address, int(value))

    @property
    def torque(self) -> int:
        return self.table[TORQUE_ENABLE]


class FakeDynamixelBus:
    """Servos behind a pty; ``port`` is the path to open (as /dev/ttyUSB0 would be)."""

    def __init__(self, positions: dict[int, int], speed: float = 4000.0, switch_interval: float = 2e-4) -> None:
        self.servos = {i: Servo(i, p) for i, p in positions.items()}
        self.speed = speed                          # ticks per second with the torque on
        self.lock = threading.RLock()
        self.log: list[tuple[float, int, int]] = []         # (time, id, instruction) received
        self.torque_log: list[tuple[float, int, int]] = []  # (time, id, value) Torque Enable writes
        self.goal_log: list[tuple[float, int, int]] = []    # (time, id, ticks) Goal Position writes sent
        self.bad_crc = 0
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._last = time.monotonic()
        # The SDK polls the port in a busy loop holding the GIL; a short switch interval lets this
        # thread answer within a fraction of a millisecond, as a servo on its own MCU would.
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(switch_interval)
        self._thread = threading.Thread(target=self._serve, name="fake-dynamixel", daemon=True)
        self._thread.start()

    # -- what tests read and do ----------------------------------------------------------------
    def present(self, servo_id: int) -> int:
        with self.lock:
            self._advance()
            return self.servos[servo_id].get4(PRESENT_POSITION)

    def goal(self, servo_id: int) -> int:
        with self.lock:
            return self.servos[servo_id].get4(GOAL_POSITION)

    def torque(self, servo_id: int) -> int:
        with self.lock:
            return self.servos[servo_id].torque

    def item(self, servo_id: int, address: int, size: int = 4) -> int:
        with self.lock:
            s = self.servos[servo_id]
            return s.table[address] if size == 1 else s.get4(address)

    def turn_by_hand(self, servo_id: int, position: int) -> None:
        """Move a limp servo (torque off) to a raw position, as a hand would."""
        with self.lock:
            s = self.servos[servo_id]
            assert not s.torque, "a servo with the torque on holds its position"
            s.set4(PRESENT_POSITION, position)
            s.exact = float(position)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        sys.setswitchinterval(self._switch)

    def __enter__(self) -> FakeDynamixelBus:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the servos ----------------------------------------------------------------------------
    def _advance(self) -> None:
        now = time.monotonic()
        dt, self._last = now - self._last, now
        for s in self.servos.values():
            if s.torque:
                goal = s.get4(GOAL_POSITION)
                delta = goal - s.exact
                s.exact += max(-self.speed * dt, min(self.speed * dt, delta))
                s.set4(PRESENT_POSITION, int(round(s.exact)))

    def _serve(self) -> None:
        buffer = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            buffer.extend(data)
            while (pkt := parse(buffer)) is not None:
                reply = self._handle(*pkt)
                if reply:
                    os.write(self.master, reply)

    def _handle(self, servo_id: int, instruction: int, params: bytes, crc_ok: bool) -> bytes:
        with self.lock:
            self._advance()
            now = time.monotonic()
            self.log.append((now, servo_id, instruction))
            if not crc_ok:
                self.bad_crc += 1
                return status_packet(servo_id, ERR_CRC) if servo_id in self.servos else b""
            if instruction == PING:
                targets = sorted(self.servos) if servo_id == BROADCAST else [servo_id]
                return b"".join(status_packet(i, 0, self.servos[i].table[0:2] + self.servos[i].table[6:7])
                                for i in targets if i in self.servos)
            if instruction == SYNC_READ:
                address, size = struct.unpack_from("<HH", params)
                return b"".join(status_packet(i, 0, self.servos[i].table[address:address + size])
                                for i in params[4:] if i in self.servos)
            if instruction == SYNC_WRITE:
                address, size = struct.unpack_from("<HH", params)
                for k in range(4, len(params), 1 + size):
                    i = params[k]
                    if i in self.servos:
                        self._write(self.servos[i], address, params[k + 1:k + 1 + size], now)
                return b""
            if instruction == WRITE and servo_id == BROADCAST:
                address = struct.unpack_from("<H", params)[0]
                for s in self.servos.values():
                    self._write(s, address, params[2:], now)
                return b""                          # a broadcast gets no status
            if servo_id not in self.servos:
                return b""                          # no such servo on the bus: silence
            s = self.servos[servo_id]
            if instruction == READ:
                address, size = struct.unpack_from("<HH", params)
                return status_packet(servo_id, 0, s.table[address:address + size])
            if instruction == WRITE:
                address = struct.unpack_from("<H", params)[0]
                return status_packet(servo_id, self._write(s, address, params[2:], now))
            return status_packet(servo_id, ERR_INSTRUCTION)

    def _write(self, s: Servo, address: int, data: bytes, now: float) -> int:
        end = address + len(data)
        if any(address < hi and lo < end for lo, hi in READ_ONLY):
            return ERR_ACCESS
        if address < EEPROM_END and s.torque:
            return ERR_ACCESS                       # the EEPROM area is locked while the torque is on
        if address == GOAL_POSITION and len(data) == 4:
            goal = struct.unpack("<i", data)[0]
            self.goal_log.append((now, s.id, goal))     # every goal sent, also one the servo refuses
            if not s.get4(MIN_POSITION_LIMIT) <= goal <= s.get4(MAX_POSITION_LIMIT):
                return ERR_DATA_LIMIT
        s.table[address:end] = data
        if address <= TORQUE_ENABLE < end:
            self.torque_log.append((now, s.id, s.torque))
            if s.torque and s.table[OPERATING_MODE] == 3:
                # Position mode: turning the torque on folds Present Position into one turn.
                s.set4(PRESENT_POSITION, s.get4(PRESENT_POSITION) % 4096)
                s.exact = float(s.get4(PRESENT_POSITION))
        return 0
