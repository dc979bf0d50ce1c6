"""The teleop record loop: tracking -> retargeting -> safety filter -> G1, recorded at a fixed fps.

Three threads of one process:

- control (:class:`TeleopControl`, at the safety filter's command rate, >= 100 Hz): takes the
  newest tracking sample; if it is fresh, retargets it (only when new) and steps the safety filter
  with it, stamped with the sample's time; if tracking is stale or lost, steps the filter with no
  command, so the filter holds and then fades the arms. It keeps a short history of (time,
  measured state, command sent).
- camera (:class:`lara_g1.robot.cameras.stream.FrameStream`): keeps the last few frames with their capture times.
- recorder (the caller's thread, :class:`RecordSession`): at every tick k of the fps grid of an
  episode, takes the state and command in effect at t0 + k/fps and the newest frame captured by
  then, and appends them with timestamp k/fps. A tick whose newest frame is older than 1.5 frame
  periods is a dropped frame (the image repeats); a recorder that falls behind (a slow video
  encoder) catches up from the histories (10 s of state, 5 s of frames), so the time base stays
  exact; ticks beyond those buffers count as dropped too.

The action recorded is the command the safety filter sent (what the policy must learn to output:
its commands go through the same filter). Episodes end after ``episode_time_s``, when a scripted
source says so, or on a key; between episodes a reset phase keeps teleoperation running.
"""
from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Callable

import numpy as np

from lara_g1.core.enums import StrEnum
from lara_g1.core.errors import LaraError
from lara_g1.robot.cameras.base import Camera
from lara_g1.robot.cameras.stream import FrameStream
from lara_g1.robot.interface import Robot
from lara_g1.robot.safety import EStopSource, Phase, SafetyFilter, StopReason
from lara_g1.teleop.keys import Key, RecordKeys
from lara_g1.teleop.retarget.retargeter import Retargeter
from lara_g1.teleop.sources.base import TrackingSample, TrackingSource
from lara_g1.teleop.sources.replay import TrackingRecorder

if TYPE_CHECKING:  # the writer needs pyarrow and av, which the robot side does without
    from lara_g1.lara.data.writer import LeRobotWriter

log = logging.getLogger(__name__)


class SessionError(LaraError, RuntimeError):
    pass


class SessionOutcome(StrEnum):
    """How a recording session ended (:attr:`SessionReport.outcome`; ``outcome`` in
    ``lara-teleop record --report``'s JSON)."""

    COMPLETE = "complete"                   # every requested episode was saved
    STOPPED = "stopped"                     # the operator pressed stop
    SOURCE_FINISHED = "source finished"     # a scripted source ran out (a replay file's end)
    TOO_MANY_FAILED = "too many failed"     # as many judged failures as episodes asked for (discard_failed)
    INTERRUPTED = "interrupted"             # Ctrl-C or SIGTERM
    ERROR = "error"                         # an error ended it (the report's ``error`` says which)


class EpisodeEnd(StrEnum):
    """How one recorded episode ended."""

    NEXT = "next"                           # time up, a scripted end, or the next key: save it
    RERECORD = "rerecord"                   # the re-record key: discard it, record it again
    STOP = "stop"                           # the stop key: discard it, end the session
    SOURCE_FINISHED = "source finished"     # the scripted source ran out


_KEY_ENDS = {Key.NEXT: EpisodeEnd.NEXT, Key.RERECORD: EpisodeEnd.RERECORD, Key.STOP: EpisodeEnd.STOP}


@dataclass(frozen=True)
class ControlTick:
    """One tick of :class:`TeleopControl`'s history."""

    t: float                                # clock time of the tick
    state: np.ndarray | None                # measured joints (None: no robot state at that tick)
    command: np.ndarray                     # what the safety filter sent
    episode_end: bool                       # the tracking sample in effect marks a scripted episode end
    sample_stamp: float | None              # that sample's timestamp (None: no sample yet)


# ----------------------------------------------------------------------------- control thread
class TeleopControl:
    def __init__(self, source: TrackingSource, retargeter: Retargeter, safety: SafetyFilter,
                 robot: Robot, *, hz: float, tracking_timeout_s: float,
                 tracking_recorder: TrackingRecorder | None = None,
                 clock: Callable[[], float] = time.monotonic, history_s: float = 10.0):
        self.source, self.retargeter, self.safety, self.robot = source, retargeter, safety, robot
        self.period = 1.0 / hz
        self.tracking_timeout_s = tracking_timeout_s
        self.tracking_recorder = tracking_recorder
        self._clock = clock
        self._lock = threading.Lock()
        self._history: collections.deque[ControlTick] = collections.deque(maxlen=int(history_s * hz) + 1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._target: np.ndarray | None = None
        self._target_stamp = 0.0
        self._last_stamp: float | None = None
        self.last_sample: TrackingSample | None = None
        self.tracking_ok = False
        self.stale_ticks = 0
        self.ticks = 0
        self.ik_unconverged = 0
        self.retarget_s: collections.deque = collections.deque(maxlen=20000)   # CPU s per retarget
        self.error: BaseException | None = None

    def start(self) -> "TeleopControl":
        self._thread = threading.Thread(target=self._run, name="teleop-control", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        next_t = self._clock()
        try:
            while not self._stop.is_set():
                self.tick(self._clock())
                next_t += self.period
                delay = next_t - self._clock()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_t = self._clock()          # overran: do not try to catch up
        except BaseException as exc:  # noqa: BLE001 - the recorder reports it and stops
            self.error = exc
            log.exception("teleop control loop failed")
            self.safety.estop(EStopSource.FAULT, f"teleop control failed: {exc}")

    def tick(self, now: float) -> None:
        sample = self.source.latest()
        fresh = (sample is not None and now - sample.timestamp <= self.tracking_timeout_s
                 and sample.is_finite())
        if fresh and sample.timestamp != self._last_stamp:
            self._last_stamp = sample.timestamp
            if self.tracking_recorder is not None:
                self.tracking_recorder.add(sample)
            cpu = time.thread_time()
            result = self.retargeter(sample)
            self.retarget_s.append(time.thread_time() - cpu)
            if result is not None:
                self._target, self._target_stamp = result.q, sample.timestamp
                self.ik_unconverged += sum(not r.converged for r in result.ik.values())
        if sample is not None:
            self.last_sample = sample
        self.tracking_ok = bool(fresh)
        if fresh and self._target is not None:
            q_cmd, blend = self.safety.step(self._target, now, command_stamp=self._target_stamp)
        else:
            self.stale_ticks += 1
            q_cmd, blend = self.safety.step(None, now)
        state = self.robot.read_state()
        ended = sample is not None and sample.episode_end
        with self._lock:
            self._history.append(ControlTick(now, None if state is None else np.asarray(state.q, np.float32),
                                             q_cmd, ended, None if sample is None else sample.timestamp))
        self.ticks += 1

    def episode_ended(self, t: float, since: float) -> bool:
        """Whether the sample in effect at ``t`` is a scripted episode end taken after ``since``."""
        tick = self._tick_at(t)
        return (tick is not None and tick.episode_end and tick.sample_stamp is not None
                and tick.sample_stamp > since)

    def _tick_at(self, t: float) -> ControlTick | None:
        with self._lock:
            hist = list(self._history)
        return next((e for e in reversed(hist) if e.t <= t), hist[0] if hist else None)

    def covers(self, t: float) -> bool:
        """Whether the history still reaches back to ``t``."""
        with self._lock:
            return bool(self._history) and self._history[0].t <= t

    def at(self, t: float) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(measured state, command) in effect at time ``t`` (the last tick at or before it).

        A tick without robot state takes the newest state known before it.
        """
        with self._lock:
            hist = list(self._history)
        if not hist:
            return None, None
        i = len(hist) - 1
        while i > 0 and hist[i].t > t:
            i -= 1
        state = next((e.state for e in reversed(hist[:i + 1]) if e.state is not None), None)
        return state, hist[i].command


# ----------------------------------------------------------------------------- camera ring
# ----------------------------------------------------------------------------- progress
class Progress:
    """One status line: rewritten in place on a terminal, printed at events otherwise.

    :meth:`log_handler` gives a logging handler that prints above the status line instead of
    through it.
    """

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = RecordKeys.interactive(self.stream)
        self._width = 0

    def status(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self.stream.flush()
            self._width = len(text)

    def line(self, text: str) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def log_handler(self) -> logging.Handler:
        progress = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    progress.line(self.format(record))
                except Exception:  # noqa: BLE001 - logging must never raise
                    self.handleError(record)
        handler = _Handler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        return handler


# ----------------------------------------------------------------------------- the session
def _stages_text(stages: dict) -> str:
    return " ".join(f"{name}={'y' if ok else 'n'}" for name, ok in stages.items())


@dataclass
class SessionConfig:
    task: str                              # the instruction stored with every episode
    episodes: int
    fps: int = 30
    camera: str = "head"
    episode_time_s: float | None = None    # None: until a key or a scripted end
    reset_time_s: float = 3.0
    calibration_s: float = 0.5             # tracking averaged for the operator calibration
    start_timeout_s: float = 15.0
    interactive: bool = False              # keys and prompts (stdin is a terminal)
    calibrate_hands: bool = False          # also capture the operator's open hands and fists
    discard_failed: bool = False           # with a judge: drop episodes that did not reach "Full"


@dataclass
class EpisodeReport:
    index: int
    frames: int
    dropped: int
    late: int
    duration_s: float
    cpu_load: float                        # process CPU time / wall time while recording
    tracking_stale_ticks: int
    camera_fps: float                      # frames the camera delivered per second
    behind_s: float = 0.0                  # the most the recorder lagged behind the clock
    stages: dict | None = None             # the judge's per-stage success at the episode's end
    kept: bool = True                      # False: discarded as failed (discard_failed)


@dataclass
class SessionReport:
    episodes: list[EpisodeReport] = field(default_factory=list)
    rerecorded: int = 0
    failed: list[EpisodeReport] = field(default_factory=list)   # judged failed and discarded
    attempts: list[EpisodeReport] = field(default_factory=list)  # saved or failed, in order
    outcome: SessionOutcome = SessionOutcome.COMPLETE
    interventions: dict = field(default_factory=dict)


class RecordSession:
    """Record ``config.episodes`` episodes (or until stopped).

    ``writer_factory((height, width))`` returns the :class:`lara_g1.lara.data.writer.LeRobotWriter`
    once the camera's first frame gives its size; ``on_reset(k)`` runs at the start of every reset
    phase and before the first episode (the simulated G1 resets its scene there). ``judge()``, if
    given, returns the task's per-stage success flags at the end of each episode (the simulated
    G1's detectors); they go into the episode's report, and with ``discard_failed`` an episode
    whose ``Full`` stage is not reached is discarded instead of saved (at most ``episodes``
    such failures, then the session stops).
    """

    def __init__(self, config: SessionConfig, source: TrackingSource, retargeter: Retargeter,
                 safety: SafetyFilter, robot: Robot, camera: Camera,
                 writer_factory: Callable[[tuple[int, int]], LeRobotWriter],
                 *, command_hz: float, tracking_timeout_s: float,
                 tracking_recorder: TrackingRecorder | None = None,
                 on_reset: Callable[[int], None] | None = None,
                 judge: Callable[[], dict] | None = None, keys: RecordKeys | None = None,
                 progress: Progress | None = None, clock: Callable[[], float] = time.monotonic):
        self.config, self.source, self.retargeter = config, source, retargeter
        self.safety, self.robot, self.camera = safety, robot, camera
        self.writer_factory, self.on_reset, self.judge = writer_factory, on_reset, judge
        self.keys = keys or RecordKeys()
        self.progress = progress or Progress()
        self._clock = clock
        self.control = TeleopControl(source, retargeter, safety, robot, hz=command_hz,
                                     tracking_timeout_s=tracking_timeout_s,
                                     tracking_recorder=tracking_recorder, clock=clock)
        self.frames = FrameStream(camera, keep=150, read_timeout_s=0.5, name="teleop-camera")
        self.writer: LeRobotWriter | None = None
        self.report = SessionReport()
        self._saved: list[int] = []            # dataset indices of the episodes saved
        self._attempt = 0                      # the episode being recorded (0-based)

    # -- phases -------------------------------------------------------------------------------
    def _wait_for(self, what: str, cond: Callable[[], bool], timeout_s: float) -> None:
        deadline = self._clock() + timeout_s
        while not cond():
            self._check_alive()
            if self._clock() > deadline:
                raise SessionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            time.sleep(0.01)

    def _check_alive(self) -> None:
        if self.control.error is not None:
            raise SessionError(f"teleop control failed: {self.control.error}; "
                               f"{self._episodes_text()}") from self.control.error
        if self.safety.stopped:
            raise SessionError(self._stopped_text())

    def _stopped_text(self) -> str:
        """Why recording stopped after a fade-out: whose tracking stopped (when it did), what the
        filter did, and what became of the episodes."""
        text = f"the safety filter faded the arms out ({self.safety.fade_detail}); recording stopped"
        if self.safety.fade_reason is StopReason.STALE_COMMANDS or not self.control.tracking_ok:
            last = self.control.last_sample
            age = "" if last is None else f" {self._clock() - last.timestamp:.1f} s ago"
            error = self.source.status().get("error")
            text = (f"tracking from {self.source.describe()} stopped{age}"
                    + (f" (last error: {error})" if error else "")
                    + f": the arms held the last command, then {text}")
        return f"{text}. {self._episodes_text()}"

    def _episodes_text(self) -> str:
        """The episodes saved so far and the one in progress (discarded on the way out)."""
        n = len(self._saved)
        text = f"{n} episode{'' if n == 1 else 's'} saved"
        if n and self.writer is not None:
            text += f" to {self.writer.root} (#{', #'.join(map(str, self._saved))})"
        if self.writer is not None and self.writer.recording:
            text += (f"; the episode in progress (episode {self._attempt + 1} of {self.config.episodes}) "
                     "is discarded")
        else:
            text += "; no episode was in progress"
        if self.report.failed:
            text += f"; {len(self.report.failed)} failed attempt(s) were discarded"
        return text

    def _fresh_sample(self) -> TrackingSample | None:
        s = self.source.latest()
        if s is None or self._clock() - s.timestamp > 0.5 or not s.is_finite():
            return None
        return s

    def _wait_next_key(self) -> None:
        """Block until the operator presses next; stop (q/Esc) ends the session."""
        while True:
            key = self.keys.poll()
            if key is Key.NEXT:
                return
            if key is Key.STOP:
                raise SessionError("stopped by the operator before recording")
            time.sleep(0.02)

    def _calibrate(self) -> None:
        """Average ``calibration_s`` of samples with both hands tracked; waits (at most
        ``start_timeout_s``) for the tracker to see both hands: an untracked hand's pose is no pose."""
        cfg = self.config
        self._wait_for(f"the first tracking sample from {self.source.describe()}",
                       lambda: self._fresh_sample() is not None, cfg.start_timeout_s)
        if cfg.interactive:
            self.progress.line("calibration: take the robot's calibration pose (upper arms down, "
                               "forearms turned out ~45°, hands pointing forward and open), look straight ahead, "
                               "then press n or →")
            self._wait_next_key()
        samples, last = [], None
        deadline = None                           # calibration_s after the first sample with both hands
        give_up = self._clock() + cfg.start_timeout_s
        missing: tuple[str, ...] = ()
        while deadline is None or self._clock() < deadline:
            s = self._fresh_sample()
            if s is not None and s is not last and (last is None or s.timestamp != last.timestamp):
                last = s
                unseen = tuple(side for side in ("left", "right") if not s.tracked(side))
                if not unseen:
                    samples.append(s)
                    if deadline is None:
                        deadline = self._clock() + cfg.calibration_s
                elif unseen != missing and not samples:
                    self.progress.line(f"calibration: waiting for {self.source.describe()} to see the "
                                       f"{' and '.join(unseen)} hand{'s' if len(unseen) > 1 else ''}: hold "
                                       "both hands in front of the headset, in the calibration pose")
                missing = unseen
            if deadline is None and self._clock() > give_up:
                what = (f"did not see the {' and '.join(missing)} hand{'s' if len(missing) > 1 else ''}"
                        if missing else "sent no fresh sample with both hands tracked")
                raise SessionError(f"no calibration: {self.source.describe()} {what} within "
                                   f"{cfg.start_timeout_s:.0f} s (a hand it has not seen has no pose); "
                                   "nothing was recorded and the robot did not move")
            time.sleep(0.005)
        cal = self.retargeter.calibrate(samples)
        self.progress.line(f"calibrated from {len(samples)} samples (heading {np.degrees(cal.heading):.0f} deg)")
        if cfg.interactive and cfg.calibrate_hands:
            hands = {}
            for what in ("open", "closed"):
                self.progress.line("hands: open both hands fully, fingers straight, then press n or →"
                                   if what == "open" else "hands: make two firm fists, then press n or →")
                self._wait_next_key()
                hands[what] = self._fresh_sample()
                if hands[what] is None or not (hands[what].left_tracked and hands[what].right_tracked):
                    raise SessionError("no fresh tracking sample with both hands tracked for the hand "
                                       f"calibration (from {self.source.describe()})")
            for side in ("left", "right"):
                self.retargeter.hands.calibrate(side, getattr(hands["open"], f"{side}_hand"),
                                                getattr(hands["closed"], f"{side}_hand"))
            self.progress.line("hands calibrated")

    def _status(self, phase: str, episode: int, elapsed: float, frames: int, dropped: int) -> None:
        track = "ok" if self.control.tracking_ok else "LOST"
        sample = self.control.last_sample
        unseen = [side for side in ("left", "right") if sample is not None and not sample.tracked(side)]
        if unseen and self.control.tracking_ok:
            track = f"ok, {' and '.join(unseen)} hand not seen (arm holds)"
        self.progress.status(f"episode {episode + 1}/{self.config.episodes} | {phase} {elapsed:5.1f} s | "
                             f"frames {frames} | dropped {dropped} | tracking {track} | "
                             f"safety {self.safety.phase.value}")

    def _reset_phase(self, episode: int) -> Key | None:
        """Teleop keeps running; returns ``Key.STOP`` if the operator stopped during the reset.

        After the scene reset the IK warm-starts from the measured pose: a simulated G1 resets
        its arms to the ready pose, and the solutions must start from where the arms are."""
        if self.on_reset is not None:
            self.on_reset(episode)
            state = self.robot.read_state()
            if state is not None:
                self.retargeter.reset(state.q)
        start = self._clock()
        if self.config.interactive:
            self.progress.line(f"reset the scene for episode {episode + 1}; n/→ starts it "
                               f"(at most {self.config.reset_time_s:.0f} s), q/Esc stops")
        while self._clock() - start < self.config.reset_time_s:
            self._check_alive()
            key = self.keys.poll()
            if key is Key.STOP:
                return Key.STOP
            if key is Key.NEXT:
                break
            self._status("reset", episode, self._clock() - start, 0, 0)
            time.sleep(0.02)
        return None

    def _record_episode(self, episode: int) -> tuple[EpisodeEnd, EpisodeReport]:
        """Record one episode; returns how it ended and its report."""
        cfg = self.config
        self._attempt = episode
        self.writer.start_episode(cfg.task)
        self.source.next_episode()
        fps = cfg.fps
        period = 1.0 / fps
        began = t0 = self._clock()    # a scripted end counts only from samples taken after this
        cpu0 = time.process_time()
        stale0, frames0 = self.control.stale_ticks, self.frames.count
        k = dropped = late = 0
        behind = 0.0
        ended = EpisodeEnd.NEXT
        while True:
            t_k = t0 + k * period
            delay = t_k - self._clock()
            if delay > 0:
                time.sleep(delay)
            elif -delay > period:
                late += 1
                behind = max(behind, -delay)
            self._check_alive()
            key = self.keys.poll()
            if key in _KEY_ENDS:
                ended = _KEY_ENDS[key]
                break
            if cfg.episode_time_s is not None and k >= round(cfg.episode_time_s * fps):
                break
            if self.control.episode_ended(t_k, began):
                break
            if self.source.finished:
                ended = EpisodeEnd.SOURCE_FINISHED
                break
            state, action = self.control.at(t_k)
            frame = self.frames.at(t_k)
            if state is None or action is None or frame is None:
                raise SessionError("no robot state, command or camera frame to record")
            if t_k - frame.stamp > 1.5 * period or not self.control.covers(t_k):
                dropped += 1          # no fresh image (or the recorder fell behind its buffers)
            self.writer.add_frame(state, action, {cfg.camera: frame.image}, timestamp=k / fps)
            k += 1
            if k % 5 == 0:
                self._status("recording", episode, k / fps, k, dropped)
        wall = max(self._clock() - t0, 1e-6)
        report = EpisodeReport(episode, k, dropped, late, wall, (time.process_time() - cpu0) / wall,
                               self.control.stale_ticks - stale0, (self.frames.count - frames0) / wall,
                               behind)
        if self.judge is not None and ended not in (EpisodeEnd.RERECORD, EpisodeEnd.STOP):
            report.stages = {str(name): bool(ok) for name, ok in self.judge().items()}
        return ended, report

    # -- main ---------------------------------------------------------------------------------
    def run(self) -> SessionReport:
        cfg = self.config
        with self.keys:
            try:
                return self._run()
            except KeyboardInterrupt:
                self.report.outcome = SessionOutcome.INTERRUPTED
                raise
            except BaseException:
                self.report.outcome = SessionOutcome.ERROR
                raise
            finally:
                self.control.stop()
                self.frames.stop()
                if self.writer is not None and self.writer.recording:
                    self.writer.discard_episode()
                self.safety.close()            # fade out on every exit path
                self.report.interventions = self.safety.interventions
                if cfg.interactive:
                    self.progress.line("")

    def _run(self) -> SessionReport:
        cfg = self.config
        if self.on_reset is not None:
            self.on_reset(0)
        self._wait_for("the robot's state", lambda: self.robot.read_state() is not None,
                       cfg.start_timeout_s)
        state = self.robot.read_state()
        self.frames.start()
        first, _ = self.frames.wait_next(0, cfg.start_timeout_s)
        if first is None:
            raise SessionError(f"no camera frame within {cfg.start_timeout_s:.0f} s")
        self.writer = self.writer_factory(tuple(first.image.shape[:2]))
        self._calibrate()
        self.retargeter.reset(state.q)
        self.safety.start(state.q)
        self.control.start()
        self.progress.line(f"ramping in from the measured pose ({self.safety.config.ramp_in_s:.1f} s)")
        self._wait_for("the safety ramp-in", lambda: self.safety.phase is Phase.RUN,
                       self.safety.config.ramp_in_s + cfg.start_timeout_s)
        episode = 0
        while episode < cfg.episodes:
            ended, rep = self._record_episode(episode)
            if ended is EpisodeEnd.RERECORD:
                self.writer.discard_episode()
                self.report.rerecorded += 1
                self.progress.line(f"episode {episode + 1}: discarded, re-recording")
            elif rep.frames == 0:
                self.writer.discard_episode()
            elif cfg.discard_failed and rep.stages is not None and not rep.stages.get("Full", False):
                self.writer.discard_episode()
                rep.kept = False
                self.report.failed.append(rep)
                self.report.attempts.append(rep)
                self.progress.line(f"episode {episode + 1}: failed ({_stages_text(rep.stages)}), discarded")
                if len(self.report.failed) >= cfg.episodes:
                    self.report.outcome = SessionOutcome.TOO_MANY_FAILED
                    break
            else:
                index = self.writer.save_episode()
                self._saved.append(index)
                self.report.episodes.append(rep)
                self.report.attempts.append(rep)
                self.progress.line(f"episode {episode + 1}/{cfg.episodes} saved as #{index}: {rep.frames} frames, "
                                   f"{rep.dropped} dropped, {rep.late} late (<= {rep.behind_s:.2f} s), {rep.duration_s:.1f} s, camera "
                                   f"{rep.camera_fps:.0f} fps, CPU {100 * rep.cpu_load:.0f}%"
                                   + (f", {_stages_text(rep.stages)}" if rep.stages is not None else ""))
                episode += 1
            if ended in (EpisodeEnd.STOP, EpisodeEnd.SOURCE_FINISHED):
                self.report.outcome = (SessionOutcome.STOPPED if ended is EpisodeEnd.STOP
                                       else SessionOutcome.SOURCE_FINISHED)
                break
            if episode < cfg.episodes and self._reset_phase(episode) is Key.STOP:
                self.report.outcome = SessionOutcome.STOPPED
                break
        return self.report
