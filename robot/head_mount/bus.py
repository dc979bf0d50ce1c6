"""The servos on the wire: DYNAMIXEL Protocol 2.0 through ``dynamixel-sdk`` (the ``head`` extra).

:class:`ServoBus` is what the controller needs; :class:`DynamixelBus` implements it with the SDK's
``PortHandler``/``PacketHandler(2.0)``, one Sync Read of Present Position and one Sync Write of
Goal Position per control step. Positions are raw ticks; a servo that does not answer, or answers
with an error, raises :class:`ServoBusError`.
"""
from __future__ import annotations

import contextlib
import logging
import termios
from typing import Callable, Protocol, TypeVar

from lara_g1.core.errors import LaraError
from lara_g1.core.extras import require

log = logging.getLogger(__name__)
T = TypeVar("T")

PROTOCOL_VERSION = 2.0
# X-series control table (ROBOTIS e-Manual, e.g. XM430-W350 "Control Table").
ADDR_OPERATING_MODE = 11      # 1 byte, EEPROM (written only with the torque off); 3 = position mode
ADDR_MAX_POSITION_LIMIT = 48  # 4 bytes, EEPROM
ADDR_MIN_POSITION_LIMIT = 52  # 4 bytes, EEPROM
ADDR_TORQUE_ENABLE = 64       # 1 byte; 0 off, 1 on (locks the EEPROM area)
ADDR_GOAL_POSITION = 116      # 4 bytes
ADDR_PRESENT_POSITION = 132   # 4 bytes, signed (multi-turn while the torque is off)
POSITION_MODE = 3


class ServoBusError(LaraError, RuntimeError):
    """A servo that does not answer, answers with an error, or a port that cannot be opened."""


class ServoPortError(ServoBusError):
    """The serial port itself failed (the adapter unplugged): nothing on the bus can be reached."""


class ServoBus(Protocol):
    """The servo operations the head controller uses (positions in raw ticks)."""

    def ping(self, servo_id: int) -> int:
        """The servo's model number; raises :class:`ServoBusError` if it does not answer."""

    def read1(self, servo_id: int, address: int) -> int: ...

    def write1(self, servo_id: int, address: int, value: int) -> None: ...

    def read4(self, servo_id: int, address: int) -> int: ...

    def write4(self, servo_id: int, address: int, value: int) -> None: ...

    def read_positions(self, ids: list[int]) -> dict[int, int]:
        """Present Position of every servo in ``ids`` (one Sync Read); raises ServoBusError."""

    def write_goals(self, goals: dict[int, int]) -> None:
        """Goal Position per servo (one Sync Write, no reply)."""

    def close(self) -> None: ...


# Bring-up (ping, configuration, calibration) is not time-critical: a servo that has just been
# powered, or a USB adapter behind a busy host, gets more chances there than in a control step.
SETUP_TRIES = 10


def retry(call: Callable[[], T], tries: int = 3) -> T:
    """``call()``, tried again after a :class:`ServoBusError` (a lost or garbled packet: the SDK
    waits about 34 ms for an answer), up to ``tries`` times; a port failure is not retried."""
    for attempt in range(tries):
        try:
            return call()
        except ServoPortError:
            raise
        except ServoBusError:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _le32(value: int) -> list[int]:
    value &= 0xFFFFFFFF
    return [value & 0xFF, (value >> 8) & 0xFF, (value >> 16) & 0xFF, (value >> 24) & 0xFF]


class DynamixelBus:
    """Protocol 2.0 servos on a serial port through dynamixel-sdk (imported here, lazily)."""

    def __init__(self, port: str, baudrate: int) -> None:
        sdk = require("dynamixel_sdk", "head", "The Dynamixel head mount (lara-head)")
        self._sdk = sdk
        self.port_name = port
        self._port = sdk.PortHandler(port)
        self._ph = sdk.PacketHandler(PROTOCOL_VERSION)
        try:
            opened = self._port.openPort()
        except Exception as exc:  # pyserial raises SerialException (an OSError) or others
            raise ServoBusError(f"cannot open {port}: {exc}") from exc
        if not opened:
            raise ServoBusError(f"cannot open {port}")
        if not self._port.setBaudRate(baudrate):
            self._port.closePort()
            raise ServoBusError(f"cannot set {port} to {baudrate} baud")
        self._sync_read = sdk.GroupSyncRead(self._port, self._ph, ADDR_PRESENT_POSITION, 4)
        self._sync_ids: tuple[int, ...] = ()
        self._sync_write = sdk.GroupSyncWrite(self._port, self._ph, ADDR_GOAL_POSITION, 4)

    @contextlib.contextmanager
    def _port_errors(self, what: str):
        """pyserial's errors (SerialException is an OSError; termios.error from its flushes) as
        :class:`ServoPortError`. The SDK leaves its port marked busy when a transfer raises: cleared
        here, so that the torque-off that follows is at least tried."""
        try:
            yield
        except (OSError, termios.error) as exc:
            if self._port is not None:
                self._port.is_using = False
            raise ServoPortError(f"{what}: the serial port {self.port_name} failed: {exc}") from exc

    def _check(self, what: str, result: int, error: int = 0) -> None:
        if result != self._sdk.COMM_SUCCESS:
            raise ServoBusError(f"{what}: {self._ph.getTxRxResult(result)}")
        if error & 0x7F:   # bit 7 is the hardware alert, reported by Hardware Error Status(70)
            raise ServoBusError(f"{what}: {self._ph.getRxPacketError(error)}")
        if error & 0x80:
            log.warning("%s: the servo reports a hardware error (see its Hardware Error Status(70))", what)

    def ping(self, servo_id: int) -> int:
        what = f"ping ID {servo_id} on {self.port_name}"
        with self._port_errors(what):
            model, result, error = self._ph.ping(self._port, servo_id)
        self._check(what, result, error)
        return int(model)

    def read1(self, servo_id: int, address: int) -> int:
        what = f"read ID {servo_id} address {address}"
        with self._port_errors(what):
            value, result, error = self._ph.read1ByteTxRx(self._port, servo_id, address)
        self._check(what, result, error)
        return int(value)

    def write1(self, servo_id: int, address: int, value: int) -> None:
        what = f"write ID {servo_id} address {address}"
        with self._port_errors(what):
            result, error = self._ph.write1ByteTxRx(self._port, servo_id, address, int(value))
        self._check(what, result, error)

    def read4(self, servo_id: int, address: int) -> int:
        what = f"read ID {servo_id} address {address}"
        with self._port_errors(what):
            value, result, error = self._ph.read4ByteTxRx(self._port, servo_id, address)
        self._check(what, result, error)
        return _signed32(int(value))

    def write4(self, servo_id: int, address: int, value: int) -> None:
        what = f"write ID {servo_id} address {address}"
        with self._port_errors(what):
            result, error = self._ph.write4ByteTxRx(self._port, servo_id, address, int(value) & 0xFFFFFFFF)
        self._check(what, result, error)

    def read_positions(self, ids: list[int]) -> dict[int, int]:
        if tuple(ids) != self._sync_ids:
            self._sync_read.clearParam()
            for i in ids:
                self._sync_read.addParam(i)
            self._sync_ids = tuple(ids)
        with self._port_errors("sync read Present Position"):
            result = self._sync_read.txRxPacket()
        self._check("sync read Present Position", result)
        out = {}
        for i in ids:
            if not self._sync_read.isAvailable(i, ADDR_PRESENT_POSITION, 4):
                raise ServoBusError(f"sync read Present Position: no data from ID {i}")
            out[i] = _signed32(self._sync_read.getData(i, ADDR_PRESENT_POSITION, 4))
        return out

    def write_goals(self, goals: dict[int, int]) -> None:
        self._sync_write.clearParam()
        for i, ticks in goals.items():
            self._sync_write.addParam(i, _le32(ticks))
        with self._port_errors("sync write Goal Position"):
            result = self._sync_write.txPacket()
        self._check("sync write Goal Position", result)

    def close(self) -> None:
        if self._port is not None:
            self._port.closePort()
            self._port = None
