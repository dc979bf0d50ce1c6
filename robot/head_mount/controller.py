"""The head mount's control loop: ``lara/head/cmd`` -> servos -> ``lara/head/state``.

:class:`HeadController` owns the servos (a :class:`~lara_g1.robot.head_mount.bus.ServoBus`). Each
:meth:`~HeadController.step`, at the control rate, it

1. reads Present Position (one Sync Read) and converts it to radians (the state),
2. runs the arms' watchdog rule with the arms' numbers (the control config's ``safety`` section,
   :class:`lara_g1.robot.safety.SafetyConfig`): no fresh command for ``command_timeout_s`` (or no
   servo reading for ``state_timeout_s``) holds the last goal; a hold that lasts ``hold_s``
   stops. Where the arms fade the arm_sdk weight to 0, the servos have no weight to fade: the stop
   is torque off (the mount goes limp, as the G1's arms return to their own controller),
3. moves the goal towards the latest command, clipped to the joint limits and by at most the
   control config's head velocity per step (``safety.max_velocity.head / rate``), and writes it
   (one Sync Write).

The servos start with the torque off. The first fresh command (or the first after a watchdog stop)
arms them: goal = the measured pose, then torque on, then the goal walks to the command; the robot
side's safety filter ramps in from the measured pose too, so nothing jumps. Leaving (Ctrl-C,
SIGTERM, an error, :meth:`HeadController.close`) turns the torque off.

:class:`HeadServer` is the DDS side: it takes ``HeadCmd_`` and publishes ``HeadState_`` (rad, the
embodiment's head order) at every step that read the servos.
"""
from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from typing import Callable

import numpy as np

from lara_g1.core.errors import LaraError
from lara_g1.robot.dds import participant as dds
from lara_g1.robot.dds.messages import HeadCmd_, HeadState_
from lara_g1.robot.head_mount.bus import (
    ADDR_MAX_POSITION_LIMIT,
    ADDR_MIN_POSITION_LIMIT,
    ADDR_OPERATING_MODE,
    ADDR_TORQUE_ENABLE,
    POSITION_MODE,
    SETUP_TRIES,
    ServoBus,
    ServoBusError,
    ServoPortError,
    retry,
)
from lara_g1.robot.head_mount.config import HeadMountConfig, HeadMountConfigError
from lara_g1.robot.safety import SafetyConfig, StopReason

log = logging.getLogger(__name__)

TORQUE_OFF_TRIES = 3


class HeadMountError(LaraError, RuntimeError):
    """The mount cannot be brought up (a servo missing, a setting that cannot be written)."""


class Phase(str, enum.Enum):
    OFF = "off"      # torque off: at start, and after a stop; the next fresh command arms
    RUN = "run"      # following the commands
    HOLD = "hold"    # watchdog: holding the last goal (stale commands or no servo reading)


class HeadController:
    """Commands -> servo goals, servo positions -> state; see the module docstring for the rules."""

    def __init__(self, config: HeadMountConfig, bus: ServoBus, safety: SafetyConfig, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if "head" not in safety.max_velocity:
            raise HeadMountConfigError(f"control config {config.control!r}: safety.max_velocity has no 'head' rate")
        self.config = config
        self.bus = bus
        self.safety = safety
        self.rate_hz = float(config.rate_hz or safety.command_hz)
        self._clock = clock
        self._ids = config.ids
        self._joints = config.joints
        self._lower = np.array([j.lower for j in config.joints])
        self._upper = np.array([j.upper for j in config.joints])
        self._max_step = safety.max_velocity["head"] / self.rate_hz
        self._lock = threading.RLock()
        self._phase = Phase.OFF
        self._target: np.ndarray | None = None
        self._cmd_stamp: float | None = None
        self._goal: np.ndarray | None = None
        self._q: np.ndarray | None = None
        self._state_stamp: float | None = None
        self._hold_since = 0.0
        self._read_failing = False
        self.counts: collections.Counter[str] = collections.Counter()
        self.stop_reason: StopReason | None = None   # why the torque was last turned off

    # -- state --------------------------------------------------------------------------------
    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def torque_on(self) -> bool:
        return self._phase is not Phase.OFF

    @property
    def size(self) -> int:
        return len(self._ids)

    def measured(self) -> tuple[np.ndarray, float] | None:
        """The latest servo reading (rad, joint order) and when it was read; None before any."""
        with self._lock:
            return None if self._q is None else (self._q.copy(), self._state_stamp)

    # -- bring-up -----------------------------------------------------------------------------
    def start(self) -> None:
        """Find every servo, turn the torque off, set position mode and the position limits."""
        for j in self._joints:
            try:
                model = retry(lambda j=j: self.bus.ping(j.id), SETUP_TRIES)
            except ServoBusError as exc:
                raise HeadMountError(
                    f"{j.name}: no servo with ID {j.id} answers on {self.config.port} at {self.config.baudrate} "
                    f"baud ({exc}). Check the 12 V supply, the cable chain, the servo's ID and Baud Rate "
                    f"(DYNAMIXEL Wizard 2.0), and --port/--ids.") from exc
            log.info("%s: servo ID %d (model %d) found", j.name, j.id, model)
        try:
            self._torque_off_all()
            bus = self.bus
            for j in self._joints:
                if retry(lambda j=j: bus.read1(j.id, ADDR_OPERATING_MODE), SETUP_TRIES) != POSITION_MODE:
                    log.info("%s: setting Operating Mode(11) to position control", j.name)
                    retry(lambda j=j: bus.write1(j.id, ADDR_OPERATING_MODE, POSITION_MODE), SETUP_TRIES)
                lo, hi = sorted(j.limit_ticks())
                # The servo's own limits (EEPROM) as a second guard: it refuses goals beyond them.
                for address, value in ((ADDR_MIN_POSITION_LIMIT, lo), (ADDR_MAX_POSITION_LIMIT, hi)):
                    if retry(lambda j=j, a=address: bus.read4(j.id, a), SETUP_TRIES) != value:
                        retry(lambda j=j, a=address, v=value: bus.write4(j.id, a, v), SETUP_TRIES)
        except ServoBusError as exc:
            raise HeadMountError(f"cannot configure the head servos: {exc}") from exc
        for _ in range(3):
            self.step()
            if self._q is not None:
                break
        if self._q is None:
            raise HeadMountError("the head servos answer pings but their positions cannot be read")
        log.info("head mount ready at %s rad (torque off until the first command)",
                 np.array2string(self._q, precision=3))

    # -- commands -----------------------------------------------------------------------------
    def command(self, q, stamp: float | None = None) -> bool:
        """Accept a target (rad, joint order); False (and counted) if malformed or non-finite.
        ``stamp``: when it was fresh (default: now)."""
        arr = np.asarray(q, dtype=np.float64)
        with self._lock:
            if arr.shape != (self.size,):
                self._count("malformed", f"command of shape {arr.shape} rejected, expected ({self.size},)")
                return False
            if not np.all(np.isfinite(arr)):
                self._count("non_finite", "command with non-finite values rejected")
                return False
            clipped = np.clip(arr, self._lower, self._upper)
            if not np.array_equal(clipped, arr):
                self._count("joint_limit", f"command {np.array2string(arr, precision=3)} clipped to "
                            f"{np.array2string(clipped, precision=3)}", every=100)
            self._target = clipped
            self._cmd_stamp = self._clock() if stamp is None else stamp
            return True

    # -- the loop -----------------------------------------------------------------------------
    def step(self, now: float | None = None) -> np.ndarray | None:
        """One control step; returns the measured pose (rad) if the servos were read, else None."""
        with self._lock:
            q = self._read()
            now = self._clock() if now is None else now
            if q is not None:
                self._q, self._state_stamp = q, now
            self._watchdog(now)
            if self._phase is not Phase.OFF:
                desired = self._target if self._phase is Phase.RUN else self._goal
                self._goal = self._goal + np.clip(desired - self._goal, -self._max_step, self._max_step)
                self._write_goal()
            return q

    def stop(self, reason: StopReason = StopReason.EXIT, detail: str = "") -> None:
        """Turn the torque off now (nothing more moves until a fresh command arms again)."""
        with self._lock:
            was_on = self._phase is not Phase.OFF
            self._phase = Phase.OFF
            self._goal = None
            self.stop_reason = StopReason(reason)
            self._torque_off_all()
            if was_on:
                log.warning("head: torque off (%s)", detail or reason)

    def close(self) -> None:
        """Torque off (always, also if it was never armed) and close the bus."""
        try:
            self.stop(StopReason.EXIT)
        finally:
            self.bus.close()

    def __enter__(self) -> HeadController:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------
    def _read(self) -> np.ndarray | None:
        try:
            raw = self.bus.read_positions(self._ids)
        except ServoPortError:
            raise                       # the adapter is gone: nothing to wait for (HeadServer stops)
        except ServoBusError as exc:
            self.counts["read_error"] += 1
            if not self._read_failing:
                log.warning("head: cannot read the servos: %s", exc)
            self._read_failing = True
            return None
        if self._read_failing:
            log.info("head: the servos answer again")
            self._read_failing = False
        return np.array([j.to_rad(raw[j.id]) for j in self._joints])

    def _watchdog(self, now: float) -> None:
        cmd_age = float("inf") if self._cmd_stamp is None else now - self._cmd_stamp
        state_age = float("inf") if self._state_stamp is None else now - self._state_stamp
        stale_cmd = cmd_age > self.safety.command_timeout_s
        stale_state = state_age > self.safety.state_timeout_s
        if self._phase is Phase.OFF:
            if not stale_cmd and not stale_state and self._target is not None:
                self._arm()
            return
        if not (stale_cmd or stale_state):
            if self._phase is Phase.HOLD:
                self._phase = Phase.RUN
                log.warning("head: resumed after a %.0f ms hold", 1e3 * (now - self._hold_since))
            return
        if self._phase is Phase.RUN:
            self._phase = Phase.HOLD
            self._hold_since = now
            what = "no fresh command" if stale_cmd else "no servo reading"
            self._count("stale_command" if stale_cmd else "stale_state",
                        f"{what} for {1e3 * (cmd_age if stale_cmd else state_age):.0f} ms; holding")
        elif now - self._hold_since >= self.safety.hold_s:
            self.stop(StopReason.STALE_STATE if stale_state else StopReason.STALE_COMMANDS)

    def _arm(self) -> None:
        """Torque on where the mount is: goal = the measured pose (within the limits) first."""
        goal = np.clip(self._q, self._lower, self._upper)
        try:
            self.bus.write_goals({j.id: j.to_ticks(g) for j, g in zip(self._joints, goal)})
            for j in self._joints:
                retry(lambda j=j: self.bus.write1(j.id, ADDR_TORQUE_ENABLE, 1))
        except ServoPortError:
            raise
        except ServoBusError as exc:
            self._count("arm_error", f"cannot turn the torque on: {exc}")
            self._torque_off_all()
            return
        self._goal = goal
        self._phase = Phase.RUN
        self.stop_reason = None
        log.info("head: torque on at %s rad", np.array2string(goal, precision=3))

    def _write_goal(self) -> None:
        try:
            self.bus.write_goals({j.id: j.to_ticks(g) for j, g in zip(self._joints, self._goal)})
        except ServoPortError:
            raise
        except ServoBusError as exc:
            self._count("write_error", str(exc), every=100)

    def _torque_off_all(self) -> None:
        failed = []
        for j in self._joints:
            for attempt in range(TORQUE_OFF_TRIES):
                try:
                    self.bus.write1(j.id, ADDR_TORQUE_ENABLE, 0)
                    break
                except ServoBusError as exc:
                    if attempt == TORQUE_OFF_TRIES - 1:
                        failed.append(f"{j.name} (ID {j.id}): {exc}")
        if failed:
            self.counts["torque_off_error"] += 1
            log.error("head: could not turn the torque off on %s; cut the servos' 12 V supply", "; ".join(failed))

    def _count(self, kind: str, detail: str, every: int = 1) -> None:
        self.counts[kind] += 1
        if (self.counts[kind] - 1) % every == 0:
            log.warning("head %s: %s", kind, detail)


class HeadServer:
    """``lara/head/cmd`` -> :class:`HeadController` -> ``lara/head/state``, at the control rate."""

    def __init__(self, controller: HeadController, domain_id: int, interface: str | None,
                 cmd_topic: str = "lara/head/cmd", state_topic: str = "lara/head/state") -> None:
        self.controller = controller
        self.reader = dds.reader(domain_id, cmd_topic, HeadCmd_, interface)
        self.writer = dds.writer(domain_id, state_topic, HeadState_, interface)
        self.steps = 0
        self.published = 0
        self.overruns = 0

    def poll_commands(self) -> None:
        latest = None
        for msg in self.reader.take(N=32):
            if isinstance(msg, HeadCmd_):
                latest = msg
        if latest is not None:
            self.controller.command(list(latest.q))

    def run(self, stop: threading.Event, duration_s: float | None = None) -> None:
        """Serve until ``stop`` is set (or ``duration_s`` passed); the torque is off when it returns."""
        period = 1.0 / self.controller.rate_hz
        start = next_t = time.monotonic()
        try:
            while not stop.is_set() and (duration_s is None or time.monotonic() - start < duration_s):
                self.poll_commands()
                q = self.controller.step()
                self.steps += 1
                if q is not None:
                    self.writer.write(HeadState_(q=[float(v) for v in q]))
                    self.published += 1
                next_t += period
                delay = next_t - time.monotonic()
                if delay < 0:
                    self.overruns += 1
                    if self.overruns == 1 or self.overruns % 1000 == 0:
                        log.warning("head: control step overran its %.1f ms period (%d times); a lower "
                                    "rate_hz or a higher baud rate helps", 1e3 * period, self.overruns)
                    next_t = time.monotonic()
                else:
                    stop.wait(delay)
        except BaseException as exc:
            self.controller.stop(StopReason.ERROR, f"exit on {type(exc).__name__}")
            raise
        self.controller.stop(StopReason.EXIT)
