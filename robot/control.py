"""The policy control loop: camera + robot state → lara-serve → chunk scheduler → safety → robot.

A :class:`ControlLoop` runs one episode: it starts the safety filter from the measured pose
(ramp-in) towards the ready pose (the embodiment's default pose, where every demonstration
starts) and waits until the arms are there, so that the policy's first observation looks like
its data; then it starts asynchronous inference, holds the pose until the first chunk arrives,
and at the command rate asks the scheduler for the target of the instant and passes it through
the safety filter, which sends it. (With ``run.start_at_ready: false`` the ramp-in goes straight
to the policy's first chunk, from wherever the arms are.) It ends at the end of the duration, on a stop request, or when
the safety filter has faded out (e-stop, lost server, stale state); every exit path fades out.

It measures the control period (between consecutive commands) and the end-to-end latency from
a camera frame to the first command computed from it. It keeps the last seconds of its ticks
(:class:`TickHistory`: measured pose, the command sent after the safety filter, the policy's
target) and of its camera frames, which the status page plots and a
:class:`lara_g1.robot.recording.TrialRecorder` records on its own thread.
"""
from __future__ import annotations

import bisect
import collections
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from pydantic import Field, StrictBool

from lara_g1.core.config import ConfigModel, config_dataclass, find_config, load_config
from lara_g1.core.embodiment import Embodiment
from lara_g1.core.errors import ConfigError, LaraError
from lara_g1.robot.cameras.base import Camera, Frame
from lara_g1.robot.cameras.stream import FrameStream
from lara_g1.robot.interface import Robot
from lara_g1.robot.safety import CONTROL_CONFIGS, EStop, EStopSource, Phase, SafetyConfig, SafetyFilter, StopReason
from lara_g1.robot.scheduler import ChunkRequester, ChunkScheduler, SchedulerConfig, percentile_ms

log = logging.getLogger(__name__)


class ControlError(LaraError, RuntimeError):
    """The control loop cannot run (bad settings, no robot state, no chunk from the server)."""


class ControlConfigError(ControlError, ConfigError):
    """A control config (``configs/control/<name>.yaml``, a camera config) that is missing or invalid."""


@config_dataclass
class RunConfig(ConfigModel):
    config_error = ControlConfigError

    client_timeout_s: float = Field(1.0, gt=0.0)
    first_chunk_timeout_s: float = Field(30.0, gt=0.0)
    state_wait_s: float = Field(5.0, gt=0.0)
    frame_wait_s: float = Field(0.05, gt=0.0)     # a request waits this long for a new frame, else takes the newest
    frame_max_age_s: float = Field(0.5, gt=0.0)   # an older newest frame means the camera stalled
    stats_window: int = Field(6000, ge=10)
    start_at_ready: StrictBool = True             # move to the ready pose before the policy starts
    ready_tolerance: float = Field(0.1, gt=0.0)   # largest |measured - ready| per joint (rad / open fraction)
    ready_timeout_s: float = Field(10.0, gt=0.0)  # the ready pose must be reached within this (ramp-in included)


@config_dataclass
class ControlConfig(ConfigModel):
    """``configs/control/<name>.yaml``: ``safety``, ``scheduler`` and ``run`` sections; ``source``
    is the file it was loaded from."""

    config_error = ControlConfigError

    safety: SafetyConfig
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    source: str = "<dict>"

    @classmethod
    def load(cls, name_or_path: str | Path = "default") -> ControlConfig:
        """A bundled config by name (``default``) or a YAML file by path."""
        path = find_config(name_or_path, bundled=CONTROL_CONFIGS, kind="control config", error=cls.config_error)
        return dataclasses.replace(load_config(cls, path, kind="control config"), source=str(path))


@config_dataclass(extra="allow")
class CameraConfig(ConfigModel):
    """A camera for :func:`lara_g1.robot.cameras.make_camera` (``lara-robot --camera-config``): its
    ``type``, and the keys of that type, which ``make_camera`` reads (``vars(config)`` has them all)."""

    config_error = ControlConfigError

    type: Literal["realsense", "sim", "replay"]


@dataclass
class Observation:
    """What the requester sends to the policy: the newest frame and the state with it."""

    state: np.ndarray
    images: dict[str, np.ndarray]
    stamp: float


@dataclass(frozen=True)
class Tick:
    """One control tick: what was measured, what the safety filter sent, what the policy asked."""

    t: float                           # clock time of the tick
    measured: np.ndarray | None        # measured joints (None: no robot state then)
    command: np.ndarray                # what the safety filter sent (float32 [dim])
    target: np.ndarray | None          # the chunk scheduler's target (the raw policy action; None before a chunk)
    blend: float                       # the arm_sdk blend weight sent
    running: bool                      # the policy drives (False: moving to the ready pose)


class TickHistory:
    """The last ``maxlen`` ticks, appended by the control thread, read by any other (thread-safe)."""

    def __init__(self, maxlen: int) -> None:
        self._ticks: collections.deque[Tick] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def append(self, tick: Tick) -> None:
        with self._lock:
            self._ticks.append(tick)

    def snapshot(self) -> list[Tick]:
        with self._lock:
            return list(self._ticks)

    @property
    def last(self) -> Tick | None:
        with self._lock:
            return self._ticks[-1] if self._ticks else None

    def at(self, t: float) -> Tick | None:
        """The tick in effect at ``t``: the newest at or before it (the oldest kept if none is)."""
        ticks = self.snapshot()
        if not ticks:
            return None
        i = bisect.bisect_right([k.t for k in ticks], t)
        return ticks[max(0, i - 1)]


class FrameGrabber(FrameStream):
    """The camera on its own thread, for the policy requests.

    A request then never waits on a slow camera longer than ``wait_s``: it takes the next new
    frame if one comes within ``wait_s``, else the newest it has. A frame older than
    ``max_age_s`` is refused (the camera stalled): no new chunks, so the safety filter's command
    watchdog holds and fades out.
    """

    def __init__(self, camera: Camera, max_age_s: float, clock: Callable[[], float] = time.monotonic,
                 keep: int = 1) -> None:
        super().__init__(camera, keep=keep, name="frame-grabber")
        self.max_age_s = max_age_s
        self._clock = clock

    def next(self, after_seq: int, wait_s: float) -> tuple[Frame, int]:
        """A frame newer than ``after_seq`` if one comes within ``wait_s``, else the newest."""
        frame, seq = self.wait_next(after_seq, wait_s)
        if frame is None:
            raise ControlError("no camera frame yet")
        age = self._clock() - float(frame.stamp)
        if age > self.max_age_s:
            raise ControlError(f"the newest camera frame is {1e3 * age:.0f} ms old: the camera stalled")
        return frame, seq


@dataclass
class RunResult:
    reason: StopReason                 # why the run ended
    ticks: int
    duration_s: float
    period_ms_p50: float | None
    period_ms_p99: float | None
    e2e_ms_p50: float | None
    e2e_ms_p99: float | None
    infer_rtt_ms_p50: float | None
    infer_rtt_ms_p99: float | None
    interventions: dict[str, int]
    scheduler: dict[str, Any]
    request_errors: dict[str, int]
    estop: EStopSource | None = None   # who pressed the e-stop, if it was pressed

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ControlLoop:
    """One policy episode on ``robot`` (see the module docstring).

    ``infer(observation) -> actions [H, dim]`` asks the policy; ``camera`` gives the frames.
    """

    def __init__(self, robot: Robot, camera: Camera, infer: Callable[[Observation], np.ndarray],
                 embodiment: Embodiment, config: ControlConfig, *, camera_name: str = "head",
                 estop: EStop | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, keep_frames: int = 1,
                 history_s: float = 10.0) -> None:
        """``keep_frames``: camera frames kept (1 is all the policy needs; a recorder that samples
        frames by time needs a second or so); ``history_s``: seconds of ticks kept."""
        self.robot = robot
        self.camera = camera
        self.embodiment = embodiment
        self.config = config
        self.camera_name = camera_name
        self.estop = estop if estop is not None else EStop()
        self._infer = infer
        self._clock = clock
        self._sleep = sleep
        self.scheduler = ChunkScheduler(config.scheduler, clock=clock)
        self.filter: SafetyFilter | None = None
        self.requester: ChunkRequester | None = None
        window = config.run.stats_window
        self._periods: collections.deque[float] = collections.deque(maxlen=window)
        self._e2e: collections.deque[float] = collections.deque(maxlen=window)
        self._ticks = 0
        self._t_begin: float | None = None
        self._last_target: np.ndarray | None = None
        self._phase_note = "idle"
        self._grabber: FrameGrabber | None = None
        self._frame_seq = 0
        self._keep_frames = max(1, int(keep_frames))
        self.history = TickHistory(max(2, int(history_s * config.safety.command_hz)))
        self.run_end: float | None = None         # when the policy stopped driving (clock time)
        self.ended = threading.Event()            # run() has returned (faded out)

    # -- observation --------------------------------------------------------------------------
    def observe(self) -> tuple[Observation, float]:
        """The newest frame and robot state, stamped with the older of the two."""
        assert self._grabber is not None
        frame, self._frame_seq = self._grabber.next(self._frame_seq, self.config.run.frame_wait_s)
        state = self.robot.read_state()
        if state is None:
            raise ControlError("no robot state")
        image = np.asarray(frame.image)
        stamp = min(float(frame.stamp), float(state.stamp))
        return Observation(np.asarray(state.q, dtype=np.float32), {self.camera_name: image}, stamp), stamp

    # -- the loop -----------------------------------------------------------------------------
    def run(self, duration_s: float | None = None, stop: threading.Event | None = None) -> RunResult:
        stop = stop if stop is not None else threading.Event()
        clock = self._clock
        self._t_begin = clock()
        self._phase_note = "waiting for robot state"
        state = self._wait(lambda: self.robot.read_state(), self.config.run.state_wait_s, stop,
                           "no robot state (rt/lowstate) within {:.1f} s: is the robot (or lara-sim) up "
                           "on this DDS domain and interface?")
        if state is None:
            self.ended.set()
            return self._result(StopReason.NOT_STARTED)
        run = self.config.run
        self._grabber = FrameGrabber(self.camera, run.frame_max_age_s, clock, keep=self._keep_frames).start()
        self.requester = ChunkRequester(self.scheduler, self.observe, self._infer, clock=clock)
        self.filter = SafetyFilter(self.embodiment, self.config.safety, self.robot, estop=self.estop,
                                   clock=clock, sleep=self._sleep)
        reason = StopReason.EXIT
        hold = None
        try:
            if run.start_at_ready:
                hold = self.embodiment.default_pose.astype(np.float64)
                self.filter.start(state.q, clock())
                self._phase_note = "moving to the ready pose"
                ready = self._wait(self._at_ready, run.ready_timeout_s, stop,
                                   "the robot did not reach the ready pose within {:.1f} s ({detail})",
                                   hold=hold)
                if ready is None:
                    return self._result(self.filter.fade_reason or StopReason.NOT_STARTED)
            self.requester.start()
            self._phase_note = "waiting for the first chunk"
            first = self._wait(lambda: self.scheduler.target(clock()), run.first_chunk_timeout_s,
                               stop, "no action chunk from the policy server within {:.1f} s "
                               "(request errors: {errors})", hold=hold)
            if first is None:
                return self._result(self.filter.fade_reason or StopReason.NOT_STARTED)
            if not self.filter.active:
                state = self.robot.read_state()
                if state is None:
                    raise ControlError("the robot state was lost before the start")
                self.filter.start(state.q, clock())
            self._phase_note = "running"
            reason = self._loop(duration_s, stop)
        finally:
            self.run_end = clock()
            self.requester.stop()
            self._grabber.stop()
            self.filter.fade_out(reason)
            self._phase_note = "finished"
            self.ended.set()
        return self._result(self.filter.fade_reason or reason)

    @property
    def frames(self) -> FrameGrabber | None:
        """The camera stream the policy's observations come from (None before run() starts it)."""
        return self._grabber

    def latest_frame(self) -> Frame | None:
        """The newest frame of the policy's camera stream (None before the first)."""
        grabber = self._grabber
        return None if grabber is None else grabber.at(float("inf"))

    def _record_tick(self, now: float, sent: tuple[np.ndarray, float], target: np.ndarray | None,
                     running: bool) -> None:
        state = self.robot.read_state()
        self.history.append(Tick(now, None if state is None else np.asarray(state.q, dtype=np.float32),
                                 sent[0], target, float(sent[1]), running))

    @property
    def running(self) -> bool:
        """True while the policy drives the robot (after the ready pose and the first chunk)."""
        return self._phase_note == "running" and self.filter is not None and not self.filter.stopped

    def _at_ready(self) -> bool | None:
        """True once the ramp-in is over and every joint is within the tolerance of the ready pose."""
        state = self.robot.read_state()
        if state is None or self.filter.phase is not Phase.RUN:
            return None
        off = np.abs(np.asarray(state.q, dtype=np.float64) - self.embodiment.default_pose)
        return True if off.max() <= self.config.run.ready_tolerance else None

    def _ready_detail(self) -> str:
        state = self.robot.read_state()
        if state is None:
            return "no robot state"
        off = np.abs(np.asarray(state.q, dtype=np.float64) - self.embodiment.default_pose)
        worst = int(np.argmax(off))
        return (f"{self.embodiment.joint_names[worst]} is {off[worst]:.3f} off, tolerance "
                f"{self.config.run.ready_tolerance}; safety phase {self.filter.phase.value}")

    def _loop(self, duration_s: float | None, stop: threading.Event) -> StopReason:
        assert self.filter is not None
        clock = self._clock
        period = 1.0 / self.config.safety.command_hz
        t_start = clock()
        next_t = t_start
        last_send: float | None = None
        last_source: float | None = None
        while True:
            now = clock()
            if stop.is_set():
                return StopReason.STOPPED
            if duration_s is not None and now - t_start >= duration_s:
                return StopReason.END_OF_DURATION
            target = self.scheduler.target(now)
            self._last_target = target
            out = self.filter.step(target, now, command_stamp=self.scheduler.last_received)
            sent = clock()
            self._record_tick(now, out, target, True)
            self._ticks += 1
            if last_send is not None:
                self._periods.append(sent - last_send)
            last_send = sent
            source = self.scheduler.source_stamp
            if source is not None and source != last_source:
                self._e2e.append(sent - source)
                last_source = source
            if self.filter.stopped:
                return self.filter.fade_reason or StopReason.EXIT
            next_t += period
            delay = next_t - clock()
            if delay > 0:
                self._sleep(delay)
            elif delay < -period:
                next_t = clock()   # fell behind by more than a period: do not burst to catch up

    def _wait(self, get: Callable[[], Any], timeout: float, stop: threading.Event, message: str,
              hold: np.ndarray | None = None) -> Any:
        """Poll ``get`` until it returns a value (returned), the timeout (ControlError with
        ``message``), a stop or an e-stop (None). With ``hold`` the safety filter (started) is
        stepped towards that pose at the command rate meanwhile; a fade-out ends the wait (None)."""
        deadline = self._clock() + timeout
        period = 1.0 / self.config.safety.command_hz if hold is not None else 0.01
        while not stop.is_set():
            if hold is not None:
                now = self._clock()
                out = self.filter.step(hold, now)
                self._record_tick(now, out, None, False)
                if self.filter.stopped:
                    return None
            value = get()
            if value is not None:
                return value
            if self.estop.triggered and hold is None:
                return None
            if self._clock() > deadline:
                errors = dict(self.requester.errors) if self.requester else {}
                detail = self._ready_detail() if self.filter is not None and self.filter.active else ""
                raise ControlError(message.format(timeout, errors=errors or "none", detail=detail))
            self._sleep(period)
        return None

    # -- reporting ----------------------------------------------------------------------------
    def _result(self, reason: StopReason) -> RunResult:
        return RunResult(
            reason=reason,
            estop=self.estop.source,
            ticks=self._ticks,
            duration_s=0.0 if self._t_begin is None else self._clock() - self._t_begin,
            period_ms_p50=percentile_ms(self._periods, 50),
            period_ms_p99=percentile_ms(self._periods, 99),
            e2e_ms_p50=percentile_ms(self._e2e, 50),
            e2e_ms_p99=percentile_ms(self._e2e, 99),
            infer_rtt_ms_p50=percentile_ms(self.requester.round_trips, 50) if self.requester else None,
            infer_rtt_ms_p99=percentile_ms(self.requester.round_trips, 99) if self.requester else None,
            interventions=self.filter.interventions if self.filter else {},
            scheduler=self.scheduler.stats(),
            request_errors=dict(self.requester.errors) if self.requester else {},
        )

    def status(self) -> dict[str, Any]:
        """A JSON-friendly view of the loop for the status page."""
        state = self.robot.read_state()
        now = self._clock()
        f = self.filter
        cmd = f.last_command if f is not None else None
        target = self._last_target
        periods = list(self._periods)[-1000:]
        rtt = list(self.requester.round_trips) if self.requester else []
        return {
            "phase": f.phase.value if f is not None else "idle",
            "note": self._phase_note,
            "uptime_s": 0.0 if self._t_begin is None else now - self._t_begin,
            "ticks": self._ticks,
            "joints": {
                "names": list(self.embodiment.joint_names),
                "measured": None if state is None else np.asarray(state.q, dtype=float).tolist(),
                "command": None if cmd is None else cmd.astype(float).tolist(),
                "target": None if target is None else target.astype(float).tolist(),
                "state_age_ms": None if state is None else 1e3 * (now - state.stamp),
            },
            "safety": f.snapshot() if f is not None else None,
            "loop": {
                "command_hz": self.config.safety.command_hz,
                "period_ms_p50": percentile_ms(periods, 50),
                "period_ms_p99": percentile_ms(periods, 99),
            },
            "latency": {
                "e2e_ms_p50": percentile_ms(list(self._e2e)[-200:], 50),
                "e2e_ms_p99": percentile_ms(list(self._e2e)[-200:], 99),
                "infer_rtt_ms_p50": percentile_ms(rtt, 50),
                "infer_rtt_ms_p99": percentile_ms(rtt, 99),
            },
            "chunks": self.scheduler.stats(),
            "request_errors": dict(self.requester.errors) if self.requester else {},
        }
