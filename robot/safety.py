"""The safety filter: the one gate between any command source and the motors (docs/CONTROL.md, "The safety filter").

Every command the policy (``lara-robot``) or teleop (``lara-teleop``) wants to send goes through
:meth:`SafetyFilter.step`, which sends what is safe to the :class:`lara_g1.robot.interface.Robot` and
returns it. In this order it:

1. rejects a command with any non-finite value (the whole command; the last safe target holds),
2. clamps the command to the embodiment's joint limits,
3. ramps in from the measured pose: the first command *is* the measured pose, the target is
   reached after ``ramp_in_s``, and the arm_sdk blend weight rises 0 → 1 over the same time,
4. clamps the change per command step (per joint group; Unitree's teleop allows the arms
   0.08 rad per 4 ms, i.e. 20 rad/s, scaled here by the command period),
5. runs a watchdog: a stale command or stale robot state holds the last command, and if that
   lasts ``hold_s`` the blend weight fades to 0 within ``fade_s`` (<= 3 s). Gains are never
   zeroed: at blend 0 the G1's own controller owns the arms again,
6. an e-stop (keyboard, dashboard, SIGINT, :meth:`SafetyFilter.estop`) starts the same fade-out,
   latched; and leaving the filter (``with`` block, :meth:`close`) always fades out.

The ramp comes before the step clamp so that the clamp bounds what actually reaches the motors.
Each intervention is counted by kind (:attr:`SafetyFilter.interventions`) and logged.
"""
from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable

import numpy as np
from pydantic import Field, model_validator

from lara_g1.core.config import ConfigModel, config_dataclass, load_config
from lara_g1.core.embodiment import Embodiment
from lara_g1.core.enums import StrEnum
from lara_g1.core.errors import ConfigError, LaraError
from lara_g1.robot.interface import Robot

log = logging.getLogger(__name__)

# Interventions that happen continuously while a condition lasts: logged once per streak.
_CONTINUOUS = ("joint_limit", "step_clamp")


class SafetyError(LaraError):
    """Base of the safety filter's errors: :class:`SafetyConfigError` or :class:`SafetyStateError`."""


class SafetyConfigError(SafetyError, ConfigError):
    """A safety setting that is not acceptable (a control config's ``safety:`` section)."""


class SafetyStateError(SafetyError, RuntimeError):
    """A state in which the filter will not start or step: the e-stop is engaged, it was started
    twice or stepped before its start, or the measured pose it should start from is unusable."""


CONTROL_CONFIGS = "control/{name}.yaml"   # bundled control configs, by name (``default``)


@config_dataclass
class SafetyConfig(ConfigModel):
    """Safety settings (``safety:`` in ``configs/control/*.yaml``). Times in seconds."""

    config_error = SafetyConfigError

    command_hz: float = Field(100.0, ge=100.0)   # docs/CONTROL.md: >= 100 Hz
    # Per joint group, the largest change per second; one command step may move
    # max_velocity / command_hz. Units of the group (rad/s, open-fraction/s).
    max_velocity: dict[str, Annotated[float, Field(gt=0.0)]] = Field(default_factory=dict, min_length=1)
    ramp_in_s: float = Field(2.0, ge=1.0, le=3.0)
    command_timeout_s: float = Field(0.2, gt=0.0, le=0.2)
    state_timeout_s: float = Field(0.15, gt=0.0, le=0.2)
    hold_s: float = Field(0.25, ge=0.0)
    fade_s: float = Field(2.0, gt=0.0, le=3.0)

    @model_validator(mode="after")
    def _fades_out_within_3_s(self) -> SafetyConfig:
        if self.hold_s + self.fade_s + max(self.command_timeout_s, self.state_timeout_s) > 3.0:
            raise ValueError("hold_s + fade_s + the watchdog timeout must fit in 3 s (fade out within 3 s)")
        return self

    @classmethod
    def load(cls, name_or_path: str | Path = "default") -> SafetyConfig:
        """The ``safety:`` section of ``configs/control/<name>.yaml`` (or of a YAML file path).

        The one entry point for every command source (lara-robot, lara-teleop)."""
        return load_config(cls, name_or_path, bundled=CONTROL_CONFIGS, kind="control config",
                           section="safety")

    def max_step(self, embodiment: Embodiment) -> np.ndarray:
        """Largest change per command step for every joint, from the per-group rates."""
        names = {g.name for g in embodiment.groups}
        missing = sorted(names - set(self.max_velocity))
        extra = sorted(set(self.max_velocity) - names)
        if missing or extra:
            raise SafetyConfigError(f"max_velocity must name exactly the joint groups of embodiment "
                                    f"{embodiment.name!r}: missing {missing}, unknown {extra}")
        step = np.zeros(embodiment.dim, dtype=np.float64)
        for g in embodiment.groups:
            step[g.slice] = self.max_velocity[g.name] / self.command_hz
        return step


class Phase(str, enum.Enum):
    IDLE = "idle"          # not started: nothing is sent
    RAMP = "ramp"          # ramping in from the measured pose
    RUN = "run"            # following commands
    HOLD = "hold"          # watchdog: holding the last command
    FADE = "fade"          # blend weight going to 0 (latched)
    STOPPED = "stopped"    # faded out: nothing more is sent


class StopReason(StrEnum):
    """Why commanding stopped: the safety filter's fade-out (:attr:`SafetyFilter.fade_reason`), and
    the end of a policy run (``robot.control.RunResult.reason``)."""

    ESTOP = "e-stop"                          # the e-stop latch (EStop.source says who pressed it)
    STALE_STATE = "watchdog: stale state"     # no fresh robot state for hold_s
    STALE_COMMANDS = "watchdog: stale commands"   # no fresh command for hold_s
    EXIT = "exit"                             # the command source is done (fade_out(), close(), the with block)
    ERROR = "exit on error"                   # the with block was left by an exception
    END_OF_DURATION = "end of duration"       # a policy run's duration ran out
    STOPPED = "stopped"                       # a policy run's stop event was set
    NOT_STARTED = "stopped before start"      # a policy run stopped before it commanded anything


class EStopSource(StrEnum):
    """Who triggered the e-stop."""

    KEYBOARD = "keyboard"     # SPACE, e or Esc on the operator's terminal
    DASHBOARD = "dashboard"   # the status page's E-STOP button
    SIGINT = "SIGINT"         # Ctrl-C
    SIGTERM = "SIGTERM"       # a termination request (a supervisor, a script)
    FAULT = "fault"           # a command source that failed (the detail says how)


@dataclass(frozen=True)
class Intervention:
    t: float
    kind: str
    detail: str


class EStop:
    """A latched e-stop that several sources share (keyboard, dashboard, signal handlers).

    Setting it is safe from any thread and from a signal handler; every filter built with it
    fades out at its next step. The first trigger is kept: :attr:`source` and :attr:`detail`.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.source: EStopSource | None = None
        self.detail = ""

    def trigger(self, source: EStopSource, detail: str = "") -> None:
        if not self._event.is_set():
            self.source = EStopSource(source)
            self.detail = detail
            self._event.set()

    def describe(self) -> str:
        """``"keyboard"``, ``"fault: teleop control failed: ..."``; ``""`` while not triggered."""
        if self.source is None:
            return ""
        return f"{self.source}: {self.detail}" if self.detail else str(self.source)

    @property
    def triggered(self) -> bool:
        return self._event.is_set()


class SafetyFilter:
    """Filter commands and send them to ``robot`` (see the module docstring for the rules).

    ``SafetyFilter(embodiment, config, robot)``, then :meth:`start` with the measured pose and
    :meth:`step` at the command rate. ``step(None, now)`` means "no new command" (the last one
    stays, and ages). Use it as a context manager, or call :meth:`close`, so that every exit
    path fades out.
    """

    def __init__(self, embodiment: Embodiment, config: SafetyConfig, robot: Robot, *,
                 estop: EStop | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.embodiment = embodiment
        self.config = config
        self.robot = robot
        self.estop_latch = estop if estop is not None else EStop()
        self._clock = clock
        self._sleep = sleep
        self._max_step = config.max_step(embodiment)
        self._period = 1.0 / config.command_hz
        self._lock = threading.RLock()
        self._phase = Phase.IDLE
        self._counts: collections.Counter[str] = collections.Counter()
        self._events: collections.deque[Intervention] = collections.deque(maxlen=200)
        self._streak: set[str] = set()
        self._stale: set[str] = set()                # watchdog conditions in force
        self._q0: np.ndarray | None = None          # measured pose at start
        self._target: np.ndarray | None = None      # latest safe (finite, in-limit) target
        self._last_cmd: np.ndarray | None = None    # what was last sent
        self._blend = 0.0
        self._t_start: float | None = None
        self._cmd_stamp: float | None = None
        self._hold_since = 0.0
        self._fade_start = 0.0
        self._fade_from = 0.0
        self._fade_reason: StopReason | None = None
        self._fade_detail = ""

    # -- public state -------------------------------------------------------------------------
    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def active(self) -> bool:
        """True while the filter is sending commands (started and not yet faded out)."""
        return self._phase not in (Phase.IDLE, Phase.STOPPED)

    @property
    def stopped(self) -> bool:
        return self._phase is Phase.STOPPED

    @property
    def blend(self) -> float:
        return self._blend

    @property
    def last_command(self) -> np.ndarray | None:
        with self._lock:
            return None if self._last_cmd is None else self._last_cmd.astype(np.float32)

    @property
    def interventions(self) -> dict[str, int]:
        """Counts of every intervention so far, by kind."""
        with self._lock:
            return dict(self._counts)

    @property
    def events(self) -> list[Intervention]:
        """The most recent interventions (up to 200), oldest first."""
        with self._lock:
            return list(self._events)

    @property
    def fade_reason(self) -> StopReason | None:
        """Why the filter is fading or faded out (None while it is not)."""
        return self._fade_reason

    @property
    def fade_detail(self) -> str:
        """The fade-out's reason for people: ``"e-stop: dashboard"``, ``"exit on ValueError"``."""
        return self._fade_detail

    # -- control ------------------------------------------------------------------------------
    def start(self, measured_q: np.ndarray, now: float | None = None) -> None:
        """Begin the ramp-in from ``measured_q`` (the robot's measured pose)."""
        now = self._clock() if now is None else now
        q = np.asarray(measured_q, dtype=np.float64)
        with self._lock:
            if self._phase is not Phase.IDLE:
                raise SafetyStateError(f"start() called twice (phase {self._phase.value})")
            if self.estop_latch.triggered:
                raise SafetyStateError(f"e-stop engaged ({self.estop_latch.describe()}); not starting")
            if q.shape != (self.embodiment.dim,):
                raise SafetyStateError(f"measured pose has shape {q.shape}, expected ({self.embodiment.dim},)")
            if not np.all(np.isfinite(q)):
                raise SafetyStateError("measured pose has non-finite values; not starting")
            clipped = self.embodiment.clip(q).astype(np.float64)
            if not np.array_equal(clipped, q):
                self._intervene("joint_limit", f"measured pose outside limits at start: "
                                f"{self._joint_list(clipped != q)}", now)
            self._q0 = clipped
            self._target = clipped.copy()
            self._last_cmd = clipped.copy()
            self._t_start = None
            self._cmd_stamp = now
            self._blend = 0.0
            self._phase = Phase.RAMP
            log.info("safety: ramp-in from the measured pose over %.1f s", self.config.ramp_in_s)

    def estop(self, source: EStopSource, detail: str = "") -> None:
        """Latch the e-stop: the next step starts the fade-out. Safe from any thread."""
        self.estop_latch.trigger(source, detail)

    def step(self, q_target: np.ndarray | None, now: float | None = None,
             command_stamp: float | None = None) -> tuple[np.ndarray, float]:
        """Filter one command, send it, and return ``(q_cmd, blend)`` as sent.

        ``now`` and ``command_stamp`` are ``time.monotonic()`` seconds, the clock of
        :attr:`lara_g1.robot.interface.RobotState.stamp` (``now`` defaults to it); step at the
        config's ``command_hz``, the per-step clamp assumes that period.
        ``command_stamp``: when the data behind ``q_target`` was fresh (e.g. when the policy's
        chunk arrived); defaults to ``now``. ``q_target=None`` sends no new command.
        Once stopped, nothing is sent and the last command returns with blend 0.
        """
        now = self._clock() if now is None else now
        with self._lock:
            if self._phase is Phase.IDLE:
                raise SafetyStateError("step() before start(): the filter needs the measured pose first")
            if self._phase is Phase.STOPPED:
                return self._last_cmd.astype(np.float32), 0.0
            assert self._last_cmd is not None and self._q0 is not None and self._target is not None
            if self.estop_latch.triggered and self._phase is not Phase.FADE:
                who = self.estop_latch.describe()
                self._intervene("estop", who, now)
                self._begin_fade(now, StopReason.ESTOP, f"{StopReason.ESTOP}: {who}")

            if self._t_start is None:
                self._t_start = now      # the ramp starts at the first command: it is exactly q0
            if q_target is not None:
                self._accept(q_target, now, now if command_stamp is None else command_stamp)
            self._watchdog(now)

            if self._phase in (Phase.RAMP, Phase.RUN):
                alpha = min(1.0, max(0.0, (now - self._t_start) / self.config.ramp_in_s))
                desired = self._q0 + alpha * (self._target - self._q0)
                if alpha >= 1.0 and self._phase is Phase.RAMP:
                    self._phase = Phase.RUN
                    log.info("safety: ramp-in complete")
                blend = alpha
            elif self._phase is Phase.HOLD:
                desired, blend = self._last_cmd, self._blend
            else:  # FADE
                desired = self._last_cmd
                blend = max(0.0, self._fade_from - (now - self._fade_start) / self.config.fade_s)

            delta = desired - self._last_cmd
            limited = np.clip(delta, -self._max_step, self._max_step)
            over = np.abs(delta - limited) > 1e-12
            if over.any():
                self._intervene("step_clamp", f"per-step change limited on "
                                f"{self._joint_list(over)}", now)
            else:
                self._streak.discard("step_clamp")
            q_cmd = self._last_cmd + limited
            if self._phase is Phase.FADE and blend <= 0.0:
                self._phase = Phase.STOPPED
                log.warning("safety: faded out (%s)", self._fade_detail)
            self._last_cmd = q_cmd
            self._blend = float(blend)
            out = q_cmd.astype(np.float32)
            # Sent under the lock so that a fade-out from another thread never reorders sends.
            self.robot.send(out, self._blend)
            return out.copy(), self._blend

    def fade_out(self, reason: StopReason = StopReason.EXIT, detail: str = "") -> None:
        """Fade the blend weight to 0 now, holding the pose, sending at the command rate.

        Blocks until faded (<= ``fade_s``). Does nothing before start or after a fade-out.
        ``detail``: the reason for people (default: the reason's own words).
        """
        reason = StopReason(reason)
        detail = detail or str(reason)
        with self._lock:
            if not self.active:
                return
            if self._phase is not Phase.FADE:
                now = self._clock()
                self._intervene("fade_out", detail, now)
                self._begin_fade(now, reason, detail)
        next_t = self._clock()
        while self.active:
            self.step(None, self._clock())
            next_t += self._period
            delay = next_t - self._clock()
            if delay > 0:
                self._sleep(delay)

    def close(self) -> None:
        self.fade_out(StopReason.EXIT)

    def __enter__(self) -> "SafetyFilter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.fade_out(StopReason.EXIT)
        else:
            self.fade_out(StopReason.ERROR, f"exit on {exc_type.__name__}")

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly view for status pages."""
        with self._lock:
            return {
                "phase": self._phase.value,
                "blend": self._blend,
                "fade_reason": self._fade_reason,
                "fade_detail": self._fade_detail or None,
                "estop": self.estop_latch.source,
                "interventions": dict(self._counts),
                "recent": [{"t": e.t, "kind": e.kind, "detail": e.detail} for e in list(self._events)[-20:]],
            }

    # -- internals ----------------------------------------------------------------------------
    def _accept(self, q_target: np.ndarray, now: float, stamp: float) -> None:
        q = np.asarray(q_target, dtype=np.float64)
        if q.shape != (self.embodiment.dim,):
            self._intervene("malformed", f"command of shape {q.shape} rejected, expected "
                            f"({self.embodiment.dim},)", now)
            return
        finite = np.isfinite(q)
        if not finite.all():
            self._intervene("non_finite", f"command rejected: non-finite values on "
                            f"{self._joint_list(~finite)}", now)
            return
        clipped = self.embodiment.clip(q).astype(np.float64)
        out = clipped != q
        if out.any():
            self._intervene("joint_limit", f"clamped to limits: {self._joint_list(out)}", now)
        else:
            self._streak.discard("joint_limit")
        self._target = clipped
        self._cmd_stamp = stamp

    def _watchdog(self, now: float) -> None:
        if self._phase not in (Phase.RAMP, Phase.RUN, Phase.HOLD):
            return
        state = self.robot.read_state()
        state_age = float("inf") if state is None else now - state.stamp
        cmd_age = float("inf") if self._cmd_stamp is None else now - self._cmd_stamp
        stale = {"stale_state": state_age > self.config.state_timeout_s,
                 "stale_command": cmd_age > self.config.command_timeout_s}
        for kind, age, what in (("stale_state", state_age, "no robot state"),
                                ("stale_command", cmd_age, "no fresh command")):
            if stale[kind] and kind not in self._stale:     # each condition counted as it begins
                self._stale.add(kind)
                self._intervene(kind, f"{what} for {1e3 * age:.0f} ms; holding", now)
            elif not stale[kind]:
                self._stale.discard(kind)
        if not self._stale:
            if self._phase is Phase.HOLD:
                self._phase = Phase.RAMP if now - self._t_start < self.config.ramp_in_s else Phase.RUN
                self._event(now, "resumed", "fresh commands and state again")
                log.warning("safety: resumed after a %.0f ms hold", 1e3 * (now - self._hold_since))
            return
        if self._phase is not Phase.HOLD:
            self._hold_since = now
            self._phase = Phase.HOLD
        elif now - self._hold_since >= self.config.hold_s:
            self._begin_fade(now, StopReason.STALE_STATE if "stale_state" in self._stale
                             else StopReason.STALE_COMMANDS)

    def _begin_fade(self, now: float, reason: StopReason, detail: str = "") -> None:
        self._phase = Phase.FADE
        self._fade_start = now
        self._fade_from = self._blend
        self._fade_reason = reason
        self._fade_detail = detail or str(reason)
        log.warning("safety: fading out over <= %.1f s (%s)", self.config.fade_s * self._fade_from,
                    self._fade_detail)

    def _intervene(self, kind: str, detail: str, now: float) -> None:
        self._counts[kind] += 1
        if kind in _CONTINUOUS:
            if kind in self._streak:
                log.debug("safety %s: %s", kind, detail)
                return
            self._streak.add(kind)
        self._event(now, kind, detail)
        log.warning("safety %s: %s", kind, detail)

    def _event(self, now: float, kind: str, detail: str) -> None:
        self._events.append(Intervention(now, kind, detail))

    def _joint_list(self, mask: np.ndarray) -> str:
        names = [self.embodiment.joint_names[i] for i in np.flatnonzero(mask)]
        return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
